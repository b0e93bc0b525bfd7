package main

import (
	"context"
	"crypto/subtle"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// The configurations, in the order of every table and chart.
const (
	cfgBaseline = "no gate"
	cfgMemory   = "gate, memory"
	cfgRedis    = "gate, Redis"
	cfgEvents   = "gate, Redis, events"
)

var configNames = []string{cfgBaseline, cfgMemory, cfgRedis, cfgEvents}

// The password checks; each is a path of every configuration's server.
const (
	checkCheap  = "cheap"
	checkBcrypt = "bcrypt"
)

// bcryptCost is the realistic password hash's cost.
const bcryptCost = 10

// users is the login application's user table: name → credential. Every
// user has the same password; with bcrypt they share one hash (hashing
// 10,000 passwords at cost 10 would take minutes and change nothing).
type users struct {
	cheap  map[string][]byte
	bcrypt map[string][]byte
}

func newUsers() (*users, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(goodPassword), bcryptCost)
	if err != nil {
		return nil, fmt.Errorf("bcrypt: %w", err)
	}
	u := &users{cheap: make(map[string][]byte, numUsers), bcrypt: make(map[string][]byte, numUsers)}
	for i := range numUsers {
		name := "user" + strconv.Itoa(i)
		u.cheap[name] = []byte(goodPassword)
		u.bcrypt[name] = hash
	}
	return u, nil
}

// loginHandler is the login application, the same in every configuration:
// a POST with the right username and password gets a session cookie and a
// redirect (302, which the gate's middleware reads as a success), anything
// else the form again with an error (200, a failure).
func loginHandler(creds map[string][]byte, check func(stored, given []byte) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			user, pw := r.PostFormValue("username"), r.PostFormValue("password")
			if stored, ok := creds[user]; ok && check(stored, []byte(pw)) {
				http.SetCookie(w, &http.Cookie{Name: "session", Value: "s-" + user, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
				http.Redirect(w, r, "/", http.StatusFound)
				return
			}
			loginForm(w, r.PostFormValue("username"), "Please enter a correct username and password.")
			return
		}
		loginForm(w, "", "")
	})
}

func loginForm(w http.ResponseWriter, user, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if msg != "" {
		msg = `<p class="error">` + html.EscapeString(msg) + `</p>`
	}
	fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><title>Sign in</title></head><body>
<h1>Sign in</h1>%s<form method="post" action="/login">
<label>Username <input name="username" value="%s"></label>
<label>Password <input name="password" type="password"></label>
<button>Sign in</button></form></body></html>`, msg, html.EscapeString(user))
}

func cheapCheck(stored, given []byte) bool { return subtle.ConstantTimeCompare(stored, given) == 1 }

// bcryptNanos is the CPU time every bcryptCheck has taken so far, read
// on the hashing thread's own clock: the share pass takes bcrypt's CPU
// out of the difference it measures, because a hash's cost moves by a few
// percent with what else the shared cores and caches run, far more than
// the 1% the pipeline is allowed.
var bcryptNanos atomic.Int64

func bcryptCheck(stored, given []byte) bool {
	runtime.LockOSThread() // the thread's clock counts this hash alone
	defer runtime.UnlockOSThread()
	t0 := threadCPU()
	ok := bcrypt.CompareHashAndPassword(stored, given) == nil
	bcryptNanos.Add(int64(threadCPU() - t0))
	return ok
}

// threadCPU is the calling thread's CPU time (0 if it cannot be read).
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// gateConfig is the gate's configuration in every gated server: the
// defaults, except limits so high that failures never block (the blocked
// workload uses IPs blocked by hand), and client addresses read from
// X-Forwarded-For set by the load generator on loopback.
func gateConfig(prefix string) gate.Config {
	cfg := gate.DefaultConfig()
	cfg.FailureLimit, cfg.IPFailureLimit, cfg.UsernameFailureLimit = 1_000_000, 1_000_000, 1_000_000
	cfg.SprayLimit, cfg.SprayNetLimit = 1_000_000, 1_000_000 // counted, never blocking
	cfg.BehindReverseProxy = true
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.KeyPrefix = prefix
	return cfg
}

// target is one configuration's login server.
type target struct {
	name  string
	gate  *gate.Gate        // nil for the baseline
	redis *redis.Client     // the gate's Redis client, if any
	pub   *events.Publisher // the event publisher, if any
	srv   *http.Server
	base  string // http://127.0.0.1:port

	closers []func(context.Context) error
}

// url is the login URL of the given password check.
func (t *target) url(check string) string { return t.base + "/login/" + check }

// newTarget builds a configuration and starts its server on a free
// loopback port. redisAddr and natsURL are used when the configuration
// needs them.
func newTarget(name string, u *users, redisAddr, natsURL string) (*target, error) {
	t := &target{name: name}
	quiet := slog.New(slog.DiscardHandler)
	mux := http.NewServeMux()
	apps := map[string]http.Handler{
		checkCheap:  loginHandler(u.cheap, cheapCheck),
		checkBcrypt: loginHandler(u.bcrypt, bcryptCheck),
	}
	if name != cfgBaseline {
		var store gate.Store
		var opts []gate.Option
		opts = append(opts, gate.WithLogger(quiet))
		prefix := map[string]string{cfgMemory: "bench-memory", cfgRedis: "bench-redis", cfgEvents: "bench-events"}[name]
		cfg := gateConfig(prefix)
		switch name {
		case cfgMemory:
			m := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy()})
			t.closers = append(t.closers, func(context.Context) error { return m.Close() })
			store = m
		case cfgRedis, cfgEvents:
			t.redis = redis.NewClient(&redis.Options{Addr: redisAddr, PoolSize: 64})
			t.closers = append(t.closers, func(context.Context) error { return t.redis.Close() })
			store = gate.NewRedisStore(t.redis, prefix, cfg.Policy())
		}
		if name == cfgEvents {
			pub, closePub, err := openPublisher(natsURL, quiet)
			if err != nil {
				return nil, err
			}
			t.pub = pub
			t.closers = append(t.closers, closePub)
			opts = append(opts, gate.WithEmitter(pub))
		}
		g, err := gate.New(cfg, store, opts...)
		if err != nil {
			return nil, err
		}
		t.gate = g
		// Closed first (closers run in reverse): outcomes settle and
		// publish before the publisher and the store go.
		t.closers = append(t.closers, g.Close)
		ctx := context.Background()
		for i := range numBlockedIPs {
			if err := g.Block(ctx, gate.KindIP, blockedIP(i), 0); err != nil {
				return nil, fmt.Errorf("%s: block: %w", name, err)
			}
		}
		for check, h := range apps {
			apps[check] = g.Middleware(h)
		}
	}
	for check, h := range apps {
		mux.Handle("/login/"+check, h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 10 * time.Minute}
	t.base = "http://" + ln.Addr().String()
	go func() { _ = t.srv.Serve(ln) }()
	return t, nil
}

// openPublisher publishes the gate's events on the client's NATS, as
// examples/loginapp does with DEFENDER_NATS_URL.
func openPublisher(url string, log *slog.Logger) (*events.Publisher, func(context.Context) error, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, js, err := events.Connect(ctx, url, "bench-gate")
	if err != nil {
		return nil, nil, err
	}
	cfg := events.DefaultConfig()
	if _, err := events.EnsureStream(ctx, js, cfg.Stream()); err != nil {
		nc.Close()
		return nil, nil, err
	}
	pub, err := events.NewPublisher(js, events.PublisherOptions{
		Subjects: cfg.Subjects(), Gate: "bench", Buffer: cfg.EventBuffer, Logger: log,
	})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return pub, func(ctx context.Context) error {
		err := pub.Close(ctx)
		nc.Close()
		return err
	}, nil
}

// flush waits until the gate has written every outcome handed off so far,
// and the publisher has sent every event queued so far (it lets attempts
// gather for up to events.DefaultLinger): a cell's CPU reading then holds
// its own events' publishing.
func (t *target) flush() error {
	if t.gate == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := t.gate.Flush(ctx); err != nil {
		return err
	}
	if t.pub == nil {
		return nil
	}
	for {
		s := t.pub.Stats()
		if s.Published+s.Dropped >= s.Queued {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publisher: %d of %d events sent after a minute", s.Published+s.Dropped, s.Queued)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// close stops the server and the configuration's parts.
func (t *target) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := t.srv.Shutdown(ctx)
	for i := len(t.closers) - 1; i >= 0; i-- {
		if cerr := t.closers[i](ctx); err == nil {
			err = cerr
		}
	}
	return err
}
