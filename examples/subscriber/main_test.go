package main

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// pipeline is an embedded NATS with the DEFENDER stream and a gate
// publishing to it.
func pipeline(t *testing.T) (url string, g *gate.Gate) {
	t.Helper()
	srv := testenv.NATS(t)
	ctx := t.Context()
	nc, js, err := events.Connect(ctx, srv.URL, "subscriber-test")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	_, err = events.EnsureStream(ctx, js, events.StreamConfig{})
	require.NoError(t, err)
	p, err := events.NewPublisher(js, events.PublisherOptions{Gate: "test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	g, err = gate.New(gate.DefaultConfig(), gate.NewMemoryStore(gate.MemoryOptions{}), gate.WithEmitter(p))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	return srv.URL, g
}

// start runs the subscriber until the test ends and waits until it listens.
func start(t *testing.T, url, durable string) *testenv.SyncBuffer {
	t.Helper()
	out := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, url, durable, out) }()
	t.Cleanup(func() { cancel(); assert.NoError(t, <-done) })
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "listening on") },
		30*time.Second, 10*time.Millisecond)
	return out
}

func lockOut(t *testing.T, g *gate.Gate) {
	t.Helper()
	a := gate.Attempt{IP: netip.MustParseAddr("203.0.113.9"), Username: "alice"}
	for range 4 { // limit 3: the 4th failure blocks the IP and the username
		g.Record(t.Context(), a, false)
	}
	ok, err := g.Unblock(t.Context(), gate.KindIP, "203.0.113.9")
	require.NoError(t, err)
	require.True(t, ok)
}

func waitLines(t *testing.T, out *testenv.SyncBuffer, want ...string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "want %q in:\n%s", want, out)
}

// TestLive: the subscriber prints the blocks and the unblock a gate
// publishes after it started.
func TestLive(t *testing.T) {
	url, g := pipeline(t)
	out := start(t, url, "")
	lockOut(t, g)
	waitLines(t, out, "block ip 203.0.113.9 until ", "block username alice until ", "(auto, 4 failures)",
		"unblock ip 203.0.113.9 (admin)")
}

// TestDurable: with -durable, the events published before it started are
// printed too.
func TestDurable(t *testing.T) {
	url, g := pipeline(t)
	lockOut(t, g)
	out := start(t, url, "firewall")
	waitLines(t, out, "block ip 203.0.113.9 until ", "block username alice until ", "unblock ip 203.0.113.9 (admin)")
}

// TestREADMEShowsThisProgram: the README's subscriber example is this
// file, which the tests build, so the code a newcomer copies compiles.
func TestREADMEShowsThisProgram(t *testing.T) {
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, body, ok := strings.Cut(string(src), "package main\n")
	require.True(t, ok)
	assert.True(t, strings.Contains(string(readme), "```go\npackage main\n"+body+"```"),
		"README.md shows examples/subscriber/main.go from package main on, verbatim")
}
