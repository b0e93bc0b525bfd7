package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
)

// lockedBuffer is a log destination safe for the nats callback goroutine.
type lockedBuffer struct{ testenv.SyncBuffer }

// captureLog sends the default logger's lines, debug ones included, to
// the returned buffer until t ends.
func captureLog(t *testing.T) *lockedBuffer {
	buf := new(lockedBuffer)
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return buf
}

// lines returns the logged lines of the connection name.
func (l *lockedBuffer) lines(name string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, "name="+name+" ") || strings.HasSuffix(line, "name="+name) {
			out = append(out, line)
		}
	}
	return out
}

// has reports whether a line of the connection name holds every substr.
func (l *lockedBuffer) has(name string, substr ...string) bool {
	for _, line := range l.lines(name) {
		all := true
		for _, s := range substr {
			all = all && strings.Contains(line, s)
		}
		if all {
			return true
		}
	}
	return false
}

// TestConnectLogsRealDisconnectsOnly: closing a connection logs no
// "nats disconnected" warning (there is no error to report); losing the
// server does, with its error.
func TestConnectLogsRealDisconnectsOnly(t *testing.T) {
	buf := captureLog(t)
	srv := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	nc, _, err := events.Connect(ctx, srv.URL, "log-close")
	require.NoError(t, err)
	nc.Close()
	require.Eventually(t, func() bool { return buf.has("log-close", `msg="nats connection closed"`) },
		5*time.Second, 10*time.Millisecond)
	assert.False(t, buf.has("log-close", "level=WARN"), "a close is no warning: %q", buf.lines("log-close"))

	nc, _, err = events.Connect(ctx, srv.URL, "log-lost", nats.ReconnectWait(time.Hour))
	require.NoError(t, err)
	defer nc.Close()
	srv.Shutdown()
	require.Eventually(t, func() bool { return buf.has("log-lost", `level=WARN msg="nats disconnected"`, " err=") },
		5*time.Second, 10*time.Millisecond, "a lost server is: %q", buf.lines("log-lost"))
	assert.False(t, buf.has("log-lost", "err=<nil>"))
}

// TestConnectRefusedCredentials: a server that refuses the credentials
// ends the wait at once with its reason (nats.go gives up and closes the
// connection), where Connect waited for ctx to end and said only
// "context deadline exceeded": the recorder, whose wait has no deadline,
// hung silently for ever. The password is in no error nor log line.
func TestConnectRefusedCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not starting nats-server")
	}
	buf := captureLog(t)
	port := testenv.NATSWithUser(t, "defender", "right-password").Server.Addr().(*net.TCPAddr).Port

	// A deadline far beyond the refusal: the test fails, not hangs, if
	// Connect waits for it.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	_, _, err := events.Connect(ctx, fmt.Sprintf("nats://defender:wrong-password@127.0.0.1:%d", port), "log-refused")
	require.Error(t, err)
	assert.ErrorIs(t, err, events.ErrNotReady)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "gave up at the refusal, not at the deadline")
	assert.Contains(t, err.Error(), "Authorization Violation")
	assert.NotContains(t, err.Error(), "wrong-password")
	assert.True(t, buf.has("log-refused", "level=WARN", "Authorization Violation"), "the refusal is logged: %q", buf.lines("log-refused"))
	assert.NotContains(t, buf.String(), "wrong-password")

	nc, _, err := events.Connect(ctx, fmt.Sprintf("nats://defender:right-password@127.0.0.1:%d", port), "log-accepted")
	require.NoError(t, err)
	nc.Close()
}

// TestConnectSaysWhyItWaits: while no server answers, Connect logs why
// (once per reason, not at every retry), and the error at the deadline
// carries the last reason.
func TestConnectSaysWhyItWaits(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: uses a free port")
	}
	buf := captureLog(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", testenv.FreePort(t)) // nothing listens
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := events.Connect(ctx, url, "log-waiting")
		done <- err
	}()
	require.Eventually(t, func() bool { return buf.has("log-waiting", "level=WARN", "connection refused") },
		30*time.Second, 20*time.Millisecond, "the wait says why: %q", buf.lines("log-waiting"))
	cancel()
	err := <-done
	require.ErrorIs(t, err, events.ErrNotReady)
	assert.Contains(t, err.Error(), "connection refused")
	refused := 0
	for _, line := range buf.lines("log-waiting") {
		if strings.Contains(line, "connection refused") {
			refused++
		}
	}
	assert.Equal(t, 1, refused, "logged once, not at every retry: %q", buf.lines("log-waiting"))
}
