package gate_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

// quiet drops the gate's logs in tests.
var quiet = slog.New(slog.DiscardHandler)

// events records what a gate emits.
type events struct {
	mu          sync.Mutex
	attempts    []gate.AttemptRecord
	transitions []gate.TransitionRecord
}

func (e *events) EmitAttempt(a gate.AttemptRecord) {
	e.mu.Lock()
	e.attempts = append(e.attempts, a)
	e.mu.Unlock()
}

func (e *events) EmitTransition(t gate.TransitionRecord) {
	e.mu.Lock()
	e.transitions = append(e.transitions, t)
	e.mu.Unlock()
}

func (e *events) Attempts() []gate.AttemptRecord {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]gate.AttemptRecord(nil), e.attempts...)
}

func (e *events) Transitions() []gate.TransitionRecord {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]gate.TransitionRecord(nil), e.transitions...)
}

func (e *events) blocks(blocked bool) []gate.TransitionRecord {
	var out []gate.TransitionRecord
	for _, t := range e.Transitions() {
		if t.Blocked == blocked {
			out = append(out, t)
		}
	}
	return out
}

// backend makes stores of one kind; stores made by one backend for one
// policy share state the way gate processes sharing one Redis do.
type backend struct {
	name  string
	store func(t *testing.T, p gate.Policy) gate.Store // a new handle on the shared state
}

// backends returns the memory backend, and the Redis backend (a real
// redis-server) unless -short.
func backends(t *testing.T) []backend {
	bs := []backend{memBackend(t)}
	if testing.Short() {
		return bs
	}
	srv := testenv.Redis(t)
	prefix := "t" + randHex(4)
	return append(bs, backend{name: "redis", store: func(t *testing.T, p gate.Policy) gate.Store {
		return gate.NewRedisStore(srv.Client(), prefix, p)
	}})
}

// memBackend is the memory backend: one MemoryStore per policy, the
// state every gate with that policy shares.
func memBackend(t *testing.T) backend {
	var mu sync.Mutex
	stores := map[string]*gate.MemoryStore{}
	return backend{name: "memory", store: func(_ *testing.T, p gate.Policy) gate.Store {
		mu.Lock()
		defer mu.Unlock()
		key := fmt.Sprintf("%+v", p)
		if stores[key] == nil {
			stores[key] = gate.NewMemoryStore(gate.MemoryOptions{Policy: p})
			t.Cleanup(func() { stores[key].Close() })
		}
		return stores[key]
	}}
}

// forEachBackend runs f once per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// newGate builds a gate over a new handle of b with an event recorder.
func newGate(t *testing.T, b backend, cfg gate.Config, opts ...gate.Option) (*gate.Gate, *events) {
	t.Helper()
	if cfg.StoreTimeout == gate.DefaultConfig().StoreTimeout {
		// Semantic tests: a store slowed by -race or a busy machine must
		// not turn into the fail mode. Tests of timeouts set their own.
		cfg.StoreTimeout = 5 * time.Second
	}
	ev := &events{}
	g, err := gate.New(cfg, b.store(t, cfg.Policy()), append([]gate.Option{gate.WithEmitter(ev), gate.WithLogger(quiet)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, g.Close(ctx))
	})
	return g, ev
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// fresh returns a username and an IPv4 address no other test uses.
func fresh() (user string, ip string) {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "user-" + randHex(6), "10." + itoa(int(b[0])) + "." + itoa(int(b[1])) + "." + itoa(int(b[2]))
}

func itoa(n int) string {
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
