package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/pkg/events"
)

// secret is the signing secret of the tests' senders.
var secret = []byte("0123456789abcdef-test-secret")

// epoch is the tests' event time.
var epoch = time.Date(2026, 3, 14, 15, 4, 0, 0, time.UTC)

// call is one request a receiver got, and its answer.
type call struct {
	header http.Header
	body   []byte
	status int
}

// receiver is a real HTTP server that records the calls it gets.
type receiver struct {
	srv *httptest.Server
	// answer returns the status for the n-th request (from 1); it may set
	// headers on w and block.
	answer func(n int, w http.ResponseWriter, r *http.Request) int

	mu    sync.Mutex
	calls []call
}

// newReceiver starts a receiver; answer nil answers 200 to every call.
func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	n := len(rc.calls) + 1
	rc.calls = append(rc.calls, call{header: r.Header.Clone(), body: body})
	rc.mu.Unlock()
	status := http.StatusOK
	if rc.answer != nil {
		status = rc.answer(n, w, r)
	}
	rc.mu.Lock()
	rc.calls[n-1].status = status
	rc.mu.Unlock()
	w.WriteHeader(status)
}

// host is the receiver's host:port, as metrics and dead letters name it.
func (rc *receiver) host() string {
	u, _ := url.Parse(rc.srv.URL)
	return u.Host
}

// got returns the calls so far.
func (rc *receiver) got() []call {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make([]call, len(rc.calls))
	copy(out, rc.calls)
	return out
}

// accepted returns the calls answered with a 2xx.
func (rc *receiver) accepted() []call {
	var out []call
	for _, c := range rc.got() {
		if c.status >= 200 && c.status < 300 {
			out = append(out, c)
		}
	}
	return out
}

// jsonBody is the generic body, as a receiver decodes it.
type jsonBody struct {
	Blocks []events.Block `json:"blocks"`
	SentAt string         `json:"sent_at"`
}

// decode parses a generic body.
func decode(t *testing.T, data []byte) jsonBody {
	t.Helper()
	var b jsonBody
	require.NoError(t, json.Unmarshal(data, &b), "body %s", data)
	return b
}

// options are the tests' defaults: fast intervals and retries, a fresh
// registry, no log output.
func options(reg *prometheus.Registry, endpoints ...webhook.Endpoint) webhook.Options {
	return webhook.Options{
		Endpoints:  endpoints,
		Secrets:    [][]byte{secret},
		Interval:   10 * time.Millisecond,
		Backoff:    5 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
		Timeout:    5 * time.Second,
		Log:        slog.New(slog.DiscardHandler),
		Registerer: reg,
	}
}

// start creates a sender and runs it until the test ends or stop is
// called; stop returns once Run has returned.
func start(t *testing.T, o webhook.Options) (s *webhook.Sender, stop func()) {
	t.Helper()
	s, err := webhook.New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			assert.NoError(t, <-ran, "Run")
		})
	}
	t.Cleanup(stop)
	return s, stop
}

// block is the n-th block event of a test.
func block(n int) events.Block {
	until := epoch.Add(15 * time.Minute)
	return events.Block{
		V: events.Version, Type: events.TypeBlock, ID: fmt.Sprintf("block-%04d", n), Time: epoch,
		Kind: "username", Subject: fmt.Sprintf("user%d", n), Until: &until, Failures: 5, Reason: "auto",
	}
}

// requireNoSenderGoroutine waits until no goroutine runs the sender's code.
func requireNoSenderGoroutine(t *testing.T) {
	t.Helper()
	var stacks string
	ok := assert.Eventually(t, func() bool {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(stacks, "notify/webhook.(*Sender)")
	}, 5*time.Second, 5*time.Millisecond)
	if !ok {
		t.Fatalf("sender goroutines left behind:\n%s", stacks)
	}
}
