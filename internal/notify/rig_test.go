package notify_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify"
	"github.com/defender-go/defender/internal/notify/mail"
	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// rig is the whole path of a notification, real servers only: a gate on
// a real Redis publishing to an embedded NATS JetStream, the notifier,
// an in-process SMTP server, the site's address lookup and the unlock
// page (with a gate of its own on the same Redis, as cmd/notifier runs
// it), each on its own port.
type rig struct {
	// js reads and publishes for the test itself (the inspector's
	// connection under the README's permissions).
	js     jetstream.JetStream
	gate   *gate.Gate
	smtp   *testenv.SMTPServer
	lookup *lookupSite
	unlock *httptest.Server
	n      *notify.Notifier
	links  *notify.Links
	from   string
	// stop stops the notifier and waits for it.
	stop func()
}

// rigKey signs the rig's unlock links; rigDeviceKey the gates' device
// tokens, as every gate and the notifier share it.
var (
	rigKey       = []byte("0123456789abcdef0123456789abcdef")
	rigDeviceKey = []byte("rig-device-key-0123456789")
)

// rigNATS are the JetStream connections of a rig's parts.
type rigNATS struct {
	gate, notifier, test jetstream.JetStream
}

// newRig starts it all on one NATS server without permissions; tune
// adjusts the notifier's options before it starts, gateTune the gates'
// configuration.
func newRig(t *testing.T, tune func(*notify.Options), gateTune ...func(*gate.Config)) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, js, err := events.Connect(ctx, testenv.NATS(t).URL, "notify-test", nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return newRigOn(t, rigNATS{gate: js, notifier: js, test: js}, tune, gateTune...)
}

// newRigOn is newRig with each part on its own connection.
func newRigOn(t *testing.T, conns rigNATS, tune func(*notify.Options), gateTune ...func(*gate.Config)) *rig {
	t.Helper()
	ctx := context.Background()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := events.EnsureStream(cctx, conns.gate, events.StreamConfig{})
	require.NoError(t, err)

	r := &rig{js: conns.test, smtp: testenv.SMTP(t, testenv.SMTPOptions{}), lookup: newLookupSite(t), from: "Defender <no-reply@example.com>"}
	// The unlock page's URL is needed before the page exists.
	var page http.Handler = http.NotFoundHandler()
	var pageMu sync.Mutex
	r.unlock = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		pageMu.Lock()
		h := page
		pageMu.Unlock()
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(r.unlock.Close)

	log := slog.New(slog.DiscardHandler)
	sender, err := mail.NewSender(mail.Options{Host: r.smtp.Host, Port: r.smtp.Port, TLS: "none", From: r.from, Site: "Example Shop", Log: log})
	require.NoError(t, err)
	lookup, err := mail.NewLookup(mail.LookupOptions{URL: r.lookup.URL + "/email?username={username}"})
	require.NoError(t, err)
	r.links, err = notify.NewLinks([][]byte{rigKey}, 15*time.Minute, r.unlock.URL+"/unlock")
	require.NoError(t, err)
	o := notify.Options{Mail: sender, Lookup: lookup, Links: r.links, AckWait: 3 * time.Second, Log: log}
	if tune != nil {
		tune(&o)
	}
	r.n, err = notify.New(cctx, conns.notifier, o)
	require.NoError(t, err)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- r.n.Run(rctx, 5*time.Second) }()
	runs := 1
	if o.Hooks != nil {
		runs++
		go func() { done <- o.Hooks.Run(rctx) }()
	}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			stop()
			for range runs {
				require.NoError(t, <-done)
			}
		})
	}
	t.Cleanup(r.stop)

	// The gate whose blocks the notifier hears about, and the unlock
	// page's, which publishes the unblocks through the notifier's
	// connection.
	rs := testenv.Redis(t)
	cfg := gate.DefaultConfig()
	cfg.DeviceKey = rigDeviceKey
	for _, f := range gateTune {
		f(&cfg)
	}
	newGate := func(js jetstream.JetStream, name string) *gate.Gate {
		pub, err := events.NewPublisher(js, events.PublisherOptions{Gate: name, Logger: log})
		require.NoError(t, err)
		g, err := gate.New(cfg, gate.NewRedisStore(rs.Client(), cfg.KeyPrefix, cfg.Policy()), gate.WithEmitter(pub), gate.WithLogger(log))
		require.NoError(t, err)
		t.Cleanup(func() {
			require.NoError(t, g.Close(ctx))
			require.NoError(t, pub.Close(ctx))
		})
		return g
	}
	r.gate = newGate(conns.gate, "test")
	pageMu.Lock()
	page = r.n.UnlockPage(newGate(conns.notifier, "notifier"))
	pageMu.Unlock()
	return r
}

// fail makes n failed logins of user, from addresses 198.51.100.x, and
// waits until the block they make is in the stream.
func (r *rig) fail(t *testing.T, user string, n int) {
	t.Helper()
	r.failFrom(t, user, n, func(i int) netip.Addr { return ipOf(i) })
}

// failFrom is fail from the addresses ip(0), ip(1)...
func (r *rig) failFrom(t *testing.T, user string, n int, ip func(int) netip.Addr) {
	t.Helper()
	subject, err := r.gate.Subject(gate.KindUsername, user)
	require.NoError(t, err)
	before := len(r.blockEvents(t, subject))
	for i := range n {
		r.gate.Record(context.Background(), gate.Attempt{IP: ip(i), Username: user}, false)
	}
	require.Eventually(t, func() bool { return len(r.blockEvents(t, subject)) > before }, 10*time.Second, 10*time.Millisecond,
		"the failures block %q", user)
}

// publishBlock publishes a block of username user as a gate does,
// straight to the stream, on the block subject; tune, if set, changes
// the event after its subject is chosen.
func (r *rig) publishBlock(t *testing.T, tune func(*events.Block), user string) events.Block {
	t.Helper()
	b := events.NewBlock(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindUsername, Subject: user, Blocked: true,
		Until: time.Now().Add(5 * time.Minute), Failures: 4, Reason: gate.ReasonAuto}, "test")
	subject := b.NATSSubject(events.Subjects{})
	if tune != nil {
		tune(&b)
	}
	data, err := json.Marshal(b)
	require.NoError(t, err)
	_, err = r.js.Publish(context.Background(), subject, data)
	require.NoError(t, err)
	return b
}

// mailedOnce checks that users prefix0..prefix<n-1> (at @example.com)
// got one mail each, and logs the duplicates reg counted.
func (r *rig) mailedOnce(t *testing.T, prefix string, n int, reg prometheus.Gatherer) {
	t.Helper()
	total := 0
	for i := range n {
		u := prefix + strconv.Itoa(i)
		got := len(r.mailsTo(u + "@example.com"))
		total += got
		assert.Equal(t, 1, got, "%s mailed once", u)
	}
	t.Logf("%d mails for %d blocks; events handled again and found done: %v", total, n,
		testenv.Metric(t, reg, "defender_notifier_events_total", "outcome", "duplicate"))
}

// mailsTo are the messages received for address to.
func (r *rig) mailsTo(to string) []testenv.SMTPMessage {
	var out []testenv.SMTPMessage
	for _, m := range r.smtp.Messages() {
		if len(m.To) == 1 && m.To[0] == to {
			out = append(out, m)
		}
	}
	return out
}

// settled waits until the notifier has acknowledged every block event
// published so far: whatever it was going to send is sent.
func (r *rig) settled(t *testing.T) {
	t.Helper()
	testenv.ConsumerDone(t, r.js, events.StreamName, notify.DefaultDurable, 30*time.Second)
}

// blockEvents are the block events of username published so far.
func (r *rig) blockEvents(t *testing.T, user string) []events.Block {
	t.Helper()
	return readBlocks(t, r.js, events.Subjects{}.Block("username"), user)
}

// readBlocks reads the events on subject whose subject is user.
func readBlocks(t *testing.T, js jetstream.JetStream, subject, user string) []events.Block {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	require.NoError(t, err)
	var out []events.Block
	for {
		batch, err := c.FetchNoWait(100)
		require.NoError(t, err)
		n := 0
		for m := range batch.Messages() {
			n++
			b, err := events.DecodeBlock(m.Data())
			require.NoError(t, err)
			if b.Subject == user {
				out = append(out, b)
			}
		}
		if n == 0 {
			return out
		}
	}
}

// unlockURL is the unlock link in a mail's text.
var unlockURL = regexp.MustCompile(`https?://[^\s"<>]+/unlock\?t=[A-Za-z0-9_\-.]+`)

// lookupSite is the site's address lookup: known users have an address,
// the others a 404.
type lookupSite struct {
	*httptest.Server
	mu    sync.Mutex
	users map[string]string
	asked int
}

func newLookupSite(t *testing.T) *lookupSite {
	l := &lookupSite{users: map[string]string{}}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.asked++
		addr, ok := l.users[r.URL.Query().Get("username")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"email": addr})
	}))
	t.Cleanup(l.Close)
	return l
}

func (l *lookupSite) add(user, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.users[user] = addr
}

// ipOf is the i-th documentation address, 198.51.100.1 to .250.
func ipOf(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 51, 100, byte(i%250 + 1)})
}
