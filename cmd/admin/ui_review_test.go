package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// TestBrowserBlockedPageAfterNATSRestart: the events published while the
// admin's NATS connection was down never reach its subscriptions, so an
// open Blocked page must reload its list once NATS is back; it showed
// "Live" and stayed without the blocks made meanwhile until a reload.
func TestBrowserBlockedPageAfterNATSRestart(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := newBrowser(t, e)
	b.open("/blocked")
	b.waitFor(`document.getElementById('live').getAttribute('data-state') === 'open'`)

	e.nats.Shutdown()
	require.Eventually(t, func() bool { return e.deps.nc.Status() != nats.CONNECTED }, time.Minute, 50*time.Millisecond)
	// A block whose event this admin never receives (e.gate publishes
	// nothing): what a login service's block looks like to it meanwhile.
	e.block(gate.KindIP, "198.51.100.99", time.Hour)
	e.nats.Start()
	require.Eventually(t, func() bool { return e.deps.nc.Status() == nats.CONNECTED }, time.Minute, 50*time.Millisecond)

	b.waitFor(rowPresent("ip", "198.51.100.99"))
	b.waitFor(`document.getElementById('live').getAttribute('data-state') === 'open'`)
	// And live events flow again.
	require.NoError(t, e.deps.gate.Block(context.Background(), gate.KindIP, "198.51.100.100", time.Hour))
	b.waitFor(rowPresent("ip", "198.51.100.100"))
}

// TestBrowserChartTimesInUTC: every time the admin shows is UTC (the
// tables say so); the charts labelled their buckets in the browser's zone,
// so a spike at 10:00 UTC in the Attempts table was drawn at 15:45 for an
// admin in Kathmandu.
func TestBrowserChartTimesInUTC(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	b := newBrowser(t, e)
	_, err := chromedp.Call(b.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Kathmandu"})
	require.NoError(t, err)
	at := time.Now().UTC().Add(-30 * time.Minute).Truncate(time.Minute)
	e.insertAttempts([]attempt{{ts: at.Add(10 * time.Second), ip: "192.0.2.1", user: "alice", result: "failure"}})

	b.open("/?window=1h")
	b.waitFor(`document.getElementById('chart-attempts').getAttribute('data-state') === 'drawn'`)
	titles := eval[[]string](b, `Array.from(document.querySelectorAll('#chart-attempts svg rect.col title')).map(t => t.textContent)`)
	require.Len(t, titles, 1)
	assert.True(t, strings.HasPrefix(titles[0], at.Format("15:04")+" UTC"), "bucket of %s labelled %q", at.Format("15:04 UTC"), titles[0])
	assert.Contains(t, eval[string](b, `document.querySelector('.charts').innerText`), "UTC", "the page says which zone")
}

// TestSubjectPagePairHistory: a username's page lists the blocks of the
// pairs holding that username, not of pairs whose username merely ends
// with "|<username>" (pair "192.0.2.5|a|b" is username "a|b", not "b").
func TestSubjectPagePairHistory(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	now := time.Now().UTC()
	e.insertBlock(now.Add(-time.Minute), "pair", "192.0.2.5|a|b", true, now.Add(time.Hour), 4)
	e.insertBlock(now.Add(-2*time.Minute), "pair", "192.0.2.6|b", true, now.Add(time.Hour), 4)

	resp, body := e.do("GET", "/username/b", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "192.0.2.6|b")
	assert.NotContains(t, body, "192.0.2.5|a|b")

	resp, body = e.do("GET", "/username/a%7Cb", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "192.0.2.5|a|b")
	assert.NotContains(t, body, "192.0.2.6|b")
}
