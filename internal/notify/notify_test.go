package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify"
	"github.com/defender-go/defender/internal/notify/mail"
	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// TestOneMailPerBlock: 1000 failures on one account make exactly one
// mail, to the address the site's lookup gives, with the block's event id
// in its Message-ID; a username the lookup does not know makes none; a
// second block within the hour makes no second mail.
func TestOneMailPerBlock(t *testing.T) {
	r := newRig(t, nil)
	r.lookup.add("alice", "alice@example.com")
	r.fail(t, "alice", 1000)
	r.fail(t, "mallory", 10) // unknown to the site
	r.settled(t)

	got := r.mailsTo("alice@example.com")
	require.Len(t, got, 1, "1000 failures, one block, one mail")
	blocks := r.blockEvents(t, "alice")
	require.Len(t, blocks, 1)
	assert.Equal(t, mail.MessageID(blocks[0].ID, r.from), got[0].Header("Message-Id"), "the Message-ID comes from the event id")
	assert.Len(t, r.smtp.Messages(), 1, "nothing for the user the site does not know")
	require.NotEmpty(t, r.blockEvents(t, "mallory"), "mallory was blocked too")

	// Unblocked by an admin, blocked again within the hour: no mail.
	_, err := r.gate.Unblock(context.Background(), gate.KindUsername, "alice")
	require.NoError(t, err)
	r.fail(t, "alice", 5)
	r.settled(t)
	require.Len(t, r.blockEvents(t, "alice"), 2, "blocked a second time")
	assert.Len(t, r.mailsTo("alice@example.com"), 1, "at most one mail per user per hour")
}

// TestMailAgainAfterTheWindow: a second block within DEFENDER_MAIL_EVERY
// mails nothing; once the window has passed, the next block mails again.
func TestMailAgainAfterTheWindow(t *testing.T) {
	const every = 3 * time.Second
	r := newRig(t, func(o *notify.Options) { o.MailEvery = every })
	r.lookup.add("bob", "bob@example.com")
	start := time.Now()
	r.fail(t, "bob", 5)
	r.settled(t)
	require.Len(t, r.mailsTo("bob@example.com"), 1)
	// blockAgain lifts bob's block and blocks him again, from new
	// addresses each round.
	round := 0
	blockAgain := func() {
		round++
		_, err := r.gate.Unblock(context.Background(), gate.KindUsername, "bob")
		require.NoError(t, err)
		r.failFrom(t, "bob", 5, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(round*5 + i)}) })
		r.settled(t)
	}
	blockAgain()
	require.Less(t, time.Since(start), every, "the second block came within the window (too slow a machine?)")
	assert.Equal(t, 1, len(r.mailsTo("bob@example.com")), "no second mail within the window")
	// Blocked again until the window has passed and a block mails.
	deadline := time.Now().Add(20 * time.Second)
	for len(r.mailsTo("bob@example.com")) < 2 {
		require.True(t, time.Now().Before(deadline), "a block after the window mails again")
		time.Sleep(300 * time.Millisecond)
		blockAgain()
	}
	assert.Len(t, r.mailsTo("bob@example.com"), 2)
}

// TestUnlockLinkWorksOnce follows the link of the mail: the GET only
// shows a button, the POST lifts the username's block (not the
// address's), publishes an unblock with reason user, and a second POST,
// an altered link or a link for another user changes nothing.
func TestUnlockLinkWorksOnce(t *testing.T) {
	r := newRig(t, nil)
	r.lookup.add("carol", "carol@example.com")
	r.failFrom(t, "carol", 5, func(int) netip.Addr { return ipOf(4) })
	r.settled(t)
	got := r.mailsTo("carol@example.com")
	require.Len(t, got, 1)
	link := unlockURL.FindString(strings.ReplaceAll(string(got[0].Data), "=\r\n", ""))
	require.NotEmpty(t, link, "the mail carries an unlock link")
	link = strings.ReplaceAll(link, "=3D", "=") // quoted-printable
	u, err := url.Parse(link)
	require.NoError(t, err)
	token := u.Query().Get("t")

	blocked := func() bool {
		return !r.gate.Check(context.Background(), gate.Attempt{IP: ipOf(240), Username: "carol"}).Allowed
	}
	require.True(t, blocked())

	res, body := get(t, link)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, body, `<button type="submit" id="unlock">`)
	assert.True(t, blocked(), "opening the link (as a mail scanner does) unlocks nothing")

	// Altered, or signed for another user with a key we do not hold.
	for name, bad := range map[string]string{
		"altered":    token[:5] + flip(token[5]) + token[6:],
		"other user": forged(t, "carol"),
		"truncated":  token[:len(token)/2],
	} {
		res, body := post(t, r.unlock.URL+"/unlock", bad)
		assert.Equal(t, http.StatusBadRequest, res.StatusCode, name)
		assert.Contains(t, body, "not one we sent", name)
		assert.True(t, blocked(), "%s: nothing changes", name)
	}

	res, body = post(t, r.unlock.URL+"/unlock", token)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, body, "<h1>Your account is unlocked</h1>")
	assert.False(t, blocked(), "the user gets in from elsewhere")
	d := r.gate.Check(context.Background(), gate.Attempt{IP: ipOf(4), Username: "someone else"})
	assert.False(t, d.Allowed, "the addresses that failed stay blocked")
	// And the page says so: the account's lock is lifted, the address's
	// may not be.
	assert.Contains(t, body, "The lock on this account is lifted.")
	assert.Contains(t, body, "If sign-in is still refused from this network, its address is blocked as well")
	assert.NotContains(t, body, "You can sign in again", "not a promise the address's block may break")

	res, body = post(t, r.unlock.URL+"/unlock", token)
	assert.Equal(t, http.StatusConflict, res.StatusCode, "a link works once")
	assert.Contains(t, body, "used already")

	var unblocks []events.Block
	require.Eventually(t, func() bool {
		unblocks = readBlocks(t, r.js, events.Subjects{}.Unblock("username"), "carol")
		return len(unblocks) == 1
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, string(gate.ReasonUser), unblocks[0].Reason)
}

// TestHostileUsernameMail: a block event whose username carries CR/LF
// and a header, markup and 10 KB of name reaches the notifier as
// published (straight on the block subject: a gate would have folded the
// line breaks), and the mail it makes holds the name in its bodies only,
// cleaned, escaped and cut.
func TestHostileUsernameMail(t *testing.T) {
	r := newRig(t, nil)
	user := "eve\r\nBcc: victim@example.com\r\n<script>alert(1)</script>" + strings.Repeat("x", 10<<10)
	r.lookup.add(user, "eve@example.com")
	r.publishBlock(t, nil, user)
	r.settled(t)
	got := r.mailsTo("eve@example.com")
	require.Len(t, got, 1)
	assert.Len(t, r.smtp.Messages(), 1, "nobody else is mailed")
	m := got[0].Parse(t)
	assert.Empty(t, m.Header["Bcc"])
	for _, piece := range []string{"victim", "script", "xxxx"} {
		assert.NotContains(t, m.RawHeader, piece, "the username reached a header")
	}
	assert.Contains(t, m.Text, `"eveBcc: victim@example.com<script>alert(1)</script>xxx`, "line breaks dropped, in the text part")
	assert.NotContains(t, m.Text, "\r", "mail line ends are CRLF, so a lone CR is the name's")
	for _, line := range strings.Split(m.Text, "\n") {
		assert.False(t, strings.HasPrefix(line, "Bcc:"), "a line of the name's own: %q", line)
	}
	assert.NotContains(t, m.HTML, "<script>", "markup in the name is escaped")
	assert.Contains(t, m.HTML, "&lt;script&gt;")
	assert.NotContains(t, m.Text, strings.Repeat("x", 1000), "a 10 KB name is cut")
	assert.Empty(t, linkOf(got[0]), "no link: its token would be longer than the unlock page takes")
	assert.Less(t, len(got[0].Data), 10<<10, "the mail is not the name's size")
}

func get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	res, err := http.Get(u)
	require.NoError(t, err)
	return res, readAll(t, res)
}

func post(t *testing.T, u, token string) (*http.Response, string) {
	t.Helper()
	res, err := http.PostForm(u, url.Values{"t": {token}})
	require.NoError(t, err)
	return res, readAll(t, res)
}

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(b)
}

// flip changes one character of a token.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// forged is a well-formed link for user signed with a key the notifier
// does not hold.
func forged(t *testing.T, user string) string {
	t.Helper()
	l, err := notify.NewLinks([][]byte{[]byte(strings.Repeat("k", 32))}, time.Hour, "https://example.com/unlock")
	require.NoError(t, err)
	u, err := url.Parse(l.URL(user, "some-event", time.Now().Add(time.Hour)))
	require.NoError(t, err)
	return u.Query().Get("t")
}

// TestWebhookOnBlock: every block reaches the admins' webhook once,
// signed; a webhook that always fails ends in a dead letter the admin
// can read, and the event is acknowledged either way.
func TestWebhookOnBlock(t *testing.T) {
	secret := []byte("webhook-secret-0123456789")
	var mu sync.Mutex
	var got []events.Block
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify([][]byte{secret}, r.Header, body, time.Minute, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var call struct{ Blocks []events.Block }
		if err := json.Unmarshal(body, &call); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, call.Blocks...)
		mu.Unlock()
	}))
	t.Cleanup(good.Close)
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	t.Cleanup(bad.Close)

	var n *notify.Notifier
	r := newRig(t, func(o *notify.Options) {
		o.Mail = nil // webhooks only
		var err error
		o.Hooks, err = webhook.New(webhook.Options{
			Endpoints: []webhook.Endpoint{{URL: good.URL, Format: webhook.FormatJSON}, {URL: bad.URL, Format: webhook.FormatJSON}},
			Secrets:   [][]byte{secret}, Interval: 50 * time.Millisecond, Attempts: 3, Backoff: 10 * time.Millisecond,
			Log:        slog.New(slog.DiscardHandler),
			DeadLetter: func(ctx context.Context, dl webhook.DeadLetter) error { return n.DeadLetter(ctx, dl) },
		})
		require.NoError(t, err)
	})
	n = r.n
	r.fail(t, "dave", 5)
	r.settled(t)
	mu.Lock()
	require.Len(t, got, 1, "one call per block event, not per attempt")
	assert.Equal(t, "dave", got[0].Subject)
	assert.Equal(t, "username", got[0].Kind)
	mu.Unlock()
	dead, err := notify.DeadLetters(context.Background(), r.js)
	require.NoError(t, err)
	require.Len(t, dead, 1, "the failing webhook's call is kept")
	assert.Equal(t, strings.TrimPrefix(bad.URL, "http://"), dead[0].Endpoint, "named by its host: a webhook's path may be a secret")
	require.Len(t, dead[0].Blocks, 1)
	assert.Equal(t, "dave", dead[0].Blocks[0].Subject)
	assert.Equal(t, 3, dead[0].Attempts)
}

// TestUnlockMakesTheBrowserFamiliar: with smart lockout, the browser that
// unlocked gets a device cookie its user's logins keep: when the attacker
// blocks the username again, that browser still gets in.
func TestUnlockMakesTheBrowserFamiliar(t *testing.T) {
	r := newRig(t, nil, func(c *gate.Config) { c.SmartLockout = true })
	r.lookup.add("erin", "erin@example.com")
	r.failFrom(t, "erin", 5, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}) })
	r.settled(t)
	got := r.mailsTo("erin@example.com")
	require.Len(t, got, 1)
	link := strings.ReplaceAll(unlockURL.FindString(strings.ReplaceAll(string(got[0].Data), "=\r\n", "")), "=3D", "=")
	u, err := url.Parse(link)
	require.NoError(t, err)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browser := &http.Client{Jar: jar}
	res, err := browser.PostForm(r.unlock.URL+"/unlock", url.Values{"t": {u.Query().Get("t")}})
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var device string
	for _, c := range jar.Cookies(u) {
		if c.Name == gate.DeviceCookie {
			device = c.Value
		}
	}
	require.NotEmpty(t, device, "the unlock gives the browser a device cookie")

	// The attacker blocks erin again, from other addresses.
	r.failFrom(t, "erin", 5, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 50)}) })
	home := netip.MustParseAddr("192.0.2.77")
	assert.False(t, r.gate.Check(context.Background(), gate.Attempt{IP: home, Username: "erin"}).Allowed, "blocked again")
	d := r.gate.Check(context.Background(), gate.Attempt{IP: home, Username: "erin", Device: device})
	assert.True(t, d.Allowed, "the browser that unlocked gets in: %+v", d)
}

// TestUnlockInABrowser follows the mail's link in headless chromium: the
// page shows the account and a button, and pressing it shows that the
// account is unlocked; the gate lets the user in again.
func TestUnlockInABrowser(t *testing.T) {
	ctx := testenv.Chromium(t)
	r := newRig(t, nil)
	r.lookup.add("grace", "grace@example.com")
	r.failFrom(t, "grace", 5, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}) })
	r.settled(t)
	got := r.mailsTo("grace@example.com")
	require.Len(t, got, 1)
	link := strings.ReplaceAll(unlockURL.FindString(strings.ReplaceAll(string(got[0].Data), "=\r\n", "")), "=3D", "=")
	require.NotEmpty(t, link)

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitReady(chromedp.CSS("#unlock"))))
	title, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.querySelector('h1').textContent"))
	require.NoError(t, err)
	assert.Equal(t, "Unlock your account", title)
	home := gate.Attempt{IP: netip.MustParseAddr("192.0.2.50"), Username: "grace"}
	assert.False(t, r.gate.Check(context.Background(), home).Allowed, "showing the page unlocks nothing")

	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#unlock"))))
	for {
		h1, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.querySelector('h1') ? document.querySelector('h1').textContent : ''"))
		if err == nil && h1 == "Your account is unlocked" {
			break
		}
		require.NoError(t, ctx.Err(), "the result page never showed (last: %q, %v)", h1, err)
		time.Sleep(50 * time.Millisecond)
	}
	assert.True(t, r.gate.Check(context.Background(), home).Allowed, "grace gets in again")
}

// TestOnlyRealBlocksMail: observe mode's would-be blocks and a gate's
// local blocks mail nobody, even on the block subjects; the hourly cap
// holds back the mails past it, counted.
func TestOnlyRealBlocksMail(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newRig(t, func(o *notify.Options) { o.MailsPerHour = 1; o.Registerer = reg })
	for _, u := range []string{"ivan", "judy", "kim", "leo"} {
		r.lookup.add(u, u+"@example.com")
	}
	// On the block subject even when observed: only the flag tells.
	r.publishBlock(t, func(b *events.Block) { b.Observe = true }, "ivan")
	r.publishBlock(t, func(b *events.Block) { b.Local = true }, "judy")
	r.publishBlock(t, nil, "kim")
	r.settled(t)
	r.publishBlock(t, nil, "leo")
	r.settled(t)
	var to []string
	for _, m := range r.smtp.Messages() {
		to = append(to, m.To...)
	}
	assert.Equal(t, []string{"kim@example.com"}, to, "a real block mails; the hourly cap of 1 holds leo's back")
	assert.Equal(t, 1.0, testenv.Metric(t, reg, "defender_notifier_mails_total", "result", "rate_limited_global"))
	assert.Equal(t, 2.0, testenv.Metric(t, reg, "defender_notifier_events_total", "outcome", "skipped"))
}

// TestInstancesShareTheWork: two notifiers on the same consumer split the
// block events between them, and each user is mailed once.
func TestInstancesShareTheWork(t *testing.T) {
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	r := newRig(t, func(o *notify.Options) { o.Registerer = regs[0] })
	log := slog.New(slog.DiscardHandler)
	sender, err := mail.NewSender(mail.Options{Host: r.smtp.Host, Port: r.smtp.Port, TLS: "none", From: r.from, Log: log})
	require.NoError(t, err)
	lookup, err := mail.NewLookup(mail.LookupOptions{URL: r.lookup.URL + "/email?username={username}"})
	require.NoError(t, err)
	second, err := notify.New(context.Background(), r.js, notify.Options{Mail: sender, Lookup: lookup, AckWait: 3 * time.Second, Log: log, Registerer: regs[1]})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- second.Run(ctx, time.Second) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })

	// Each instance keeps one pull of one message waiting, and the server
	// serves the waiting pulls in turn: both get some of the 40.
	const users = 40
	for i := range users {
		user := "user" + strconv.Itoa(i)
		r.lookup.add(user, user+"@example.com")
		r.publishBlock(t, nil, user)
	}
	r.settled(t)
	seen := map[string]int{}
	for _, m := range r.smtp.Messages() {
		seen[strings.Join(m.To, ",")]++
	}
	assert.Len(t, seen, users, "every user mailed")
	for to, n := range seen {
		assert.Equal(t, 1, n, "%s mailed once", to)
	}
	for i, reg := range regs {
		assert.Positive(t, testenv.Metric(t, reg, "defender_notifier_mails_total", "result", "sent"), "instance %d sent some", i+1)
	}
}

// TestOneMailPerAddress: two usernames with one address (a site that
// signs in by name or by address) make one mail per interval.
func TestOneMailPerAddress(t *testing.T) {
	r := newRig(t, nil)
	r.lookup.add("olga", "olga@example.com")
	r.lookup.add("olga@example.com", "olga@example.com")
	r.fail(t, "olga", 5)
	r.fail(t, "olga@example.com", 5)
	r.settled(t)
	assert.Len(t, r.mailsTo("olga@example.com"), 1)
}

// TestUnlockWhenNotLocked: a valid link for an account that is not
// locked (its lock ended) says so and is not used up.
func TestUnlockWhenNotLocked(t *testing.T) {
	r := newRig(t, nil)
	link, err := url.Parse(r.links.URL("pat", "ev-pat", time.Now().Add(time.Minute)))
	require.NoError(t, err)
	for range 2 {
		res, body := post(t, r.unlock.URL+"/unlock", link.Query().Get("t"))
		assert.Equal(t, http.StatusOK, res.StatusCode)
		assert.Contains(t, body, "Your account is not locked")
	}
}

// TestExpiredUnlockLink: a link past its time, for a block still on,
// gets a page that says so on its GET (no button) and on the button's
// POST, and changes nothing.
func TestExpiredUnlockLink(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newRig(t, func(o *notify.Options) { o.Registerer = reg })
	r.failFrom(t, "hank", 5, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}) })
	blocks := r.blockEvents(t, "hank")
	require.Len(t, blocks, 1)
	// The rig's key, a link valid for a second (expiries are whole
	// seconds: it is over within two).
	short, err := notify.NewLinks([][]byte{rigKey}, time.Second, r.unlock.URL+"/unlock")
	require.NoError(t, err)
	link := short.URL("hank", blocks[0].ID, *blocks[0].Until)
	time.Sleep(2 * time.Second)

	res, body := get(t, link)
	assert.Equal(t, http.StatusGone, res.StatusCode)
	assert.Contains(t, body, "<h1>This link does not work</h1>")
	assert.Contains(t, body, "The link has expired.")
	assert.NotContains(t, body, `id="unlock"`, "no button")
	res, body = post(t, r.unlock.URL+"/unlock", tokenIn(t, link))
	assert.Equal(t, http.StatusGone, res.StatusCode)
	assert.Contains(t, body, "The link has expired.")

	home := gate.Attempt{IP: netip.MustParseAddr("192.0.2.12"), Username: "hank"}
	assert.False(t, r.gate.Check(context.Background(), home).Allowed, "still locked")
	assert.Equal(t, 2.0, testenv.Metric(t, reg, "defender_notifier_unlocks_total", "result", "expired"))
	assert.Zero(t, testenv.Metric(t, reg, "defender_notifier_unlocks_total", "result", "unlocked"))
	assert.Empty(t, readBlocks(t, r.js, events.Subjects{}.Unblock("username"), "hank"), "no unblock published")
}

// TestMailToUsername: without a lookup, the opt-in
// (DEFENDER_MAIL_TO_USERNAME) mails a username that is a bare address,
// and no other; without the opt-in, a username that looks like an address
// gets no mail: an attacker would choose whom the site mails.
func TestMailToUsername(t *testing.T) {
	for _, optIn := range []bool{true, false} {
		t.Run("opt-in "+strconv.FormatBool(optIn), func(t *testing.T) {
			r := newRig(t, func(o *notify.Options) { o.Lookup, o.MailToUsername = nil, optIn })
			for _, user := range []string{"ines@example.com", "ines", "Ines <victim@example.com>", "a@b@example.com"} {
				r.publishBlock(t, nil, user)
			}
			r.settled(t)
			var to []string
			for _, m := range r.smtp.Messages() {
				to = append(to, m.To...)
			}
			if optIn {
				assert.Equal(t, []string{"ines@example.com"}, to, "only the username that is a bare address")
			} else {
				assert.Empty(t, to, "no mail without the opt-in")
			}
		})
	}
}
