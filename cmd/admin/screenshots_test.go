package main

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// screenshotsEnv names the directory TestScreenshots writes the README's
// pictures to (scripts/screenshots.sh sets it to docs/img); without it
// they go to testdata/screenshots, git-ignored.
const screenshotsEnv = "DEFENDER_SCREENSHOTS"

// maxScreenshotBytes keeps the README's pictures light.
const maxScreenshotBytes = 300 << 10

// TestScreenshots seeds an admin with an hour of a small attack (attempts
// in ClickHouse, blocks in Redis and in the history), opens the dashboard,
// the Blocked list and the attempts in headless Chromium, checks each is
// drawn, and saves what a person sees of each as a PNG.
func TestScreenshots(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := newBrowser(t, e)
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		dir = screenshotDir
	}

	now := time.Now().UTC().Truncate(time.Second)
	var rows []attempt
	users := []string{"alice", "bob", "carol", "dave", "erin"}
	for i := range 180 {
		ts := now.Add(-time.Duration(i) * 15 * time.Second) // 45 minutes, well inside the 1h window
		r := attempt{ts: ts, ip: fmt.Sprintf("198.51.100.%d", 10+i%7), user: users[i%len(users)], result: "success",
			path: "/login", userAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"}
		switch {
		case i%9 == 0: // a sprayer
			r.ip, r.user, r.result = "203.0.113.66", fmt.Sprintf("admin%d", i%11), "failure"
		case i%4 == 0: // guessing at root
			r.ip, r.user, r.result = "192.0.2.77", "root", "failure"
			if i%8 == 0 {
				r.result = "blocked"
			}
		case i%6 == 1:
			r.result = "failure"
		}
		rows = append(rows, r)
	}
	e.insertAttempts(rows)
	for i, blk := range []struct {
		kind, subject string
	}{{"ip", "192.0.2.77"}, {"username", "root"}, {"spray", "203.0.113.66"}, {"ip", "203.0.113.66"}, {"username", "admin"}} {
		e.insertBlock(now.Add(-time.Duration(5+i*9)*time.Minute), blk.kind, blk.subject, true, now.Add(time.Duration(10+i*20)*time.Minute), 4)
	}
	e.block(gate.KindIP, "192.0.2.77", 47*time.Minute)
	e.block(gate.KindIP, "2001:db8:ab::1", 0)
	e.block(gate.KindUsername, "root", 2*time.Hour)
	e.storeBlock(gate.KindSpray, "203.0.113.66", 55*time.Minute)
	e.storeBlock(gate.KindSprayShared, "100.64.12.9", 20*time.Minute)

	// shoot saves the viewport, or with whole the whole page.
	shoot := func(name string, whole bool) {
		t.Helper()
		capture := chromedp.CaptureScreenshot()
		if whole {
			capture = chromedp.FullScreenshot(100) // 100: PNG
		}
		img, err := chromedp.Run(b.ctx, capture)
		require.NoError(t, err)
		_, err = png.Decode(bytes.NewReader(img))
		require.NoError(t, err, "%s is a PNG", name)
		assert.LessOrEqual(t, len(img), maxScreenshotBytes, "%s stays light", name)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "admin-"+name+".png"), img, 0o644))
	}

	b.open("/?window=1h")
	for _, id := range []string{"chart-attempts", "chart-blocks", "chart-top-ip", "chart-top-username"} {
		b.waitFor(`document.getElementById('` + id + `').getAttribute('data-state') === 'drawn'`)
	}
	assert.Equal(t, len(rows), eval[int](b, `Array.from(document.querySelectorAll('#chart-attempts svg rect.col')).reduce((s, r) => s + Number(r.getAttribute('data-v')), 0)`))
	shoot("dashboard", true)

	b.open("/blocked")
	b.waitFor(`document.getElementById('live').getAttribute('data-state') === 'open'`)
	for _, r := range []struct{ kind, value string }{{"ip", "192.0.2.77"}, {"username", "root"}, {"spray", "203.0.113.66"}, {"spray_shared", "100.64.12.9"}} {
		assert.True(t, eval[bool](b, rowPresent(r.kind, r.value)), "%s %s listed", r.kind, r.value)
	}
	shoot("blocked", false)

	b.open("/attempts")
	assert.Equal(t, 50, eval[int](b, `document.querySelectorAll('#attempts-table tbody tr[data-id]').length`))
	shoot("attempts", false)
	assert.Empty(t, b.alerts())
}
