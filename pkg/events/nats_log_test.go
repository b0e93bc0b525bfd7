package events_test

import (
	"context"
	"log/slog"
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
	var buf lockedBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })
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
