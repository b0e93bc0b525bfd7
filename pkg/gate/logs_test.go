package gate_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

// logTo is a JSON logger writing to buf.
func logTo(buf *testenv.SyncBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestOutageLogsAreRateLimited: 2,000 logins while Redis is down make a
// few log lines, not one per login or per lost outcome (a flood made
// 1,622 ERROR lines before), while the metrics count every one.
func TestOutageLogsAreRateLimited(t *testing.T) {
	redis.SetLogger(&logging.VoidLogger{}) // its dial errors are expected here
	srv := testenv.Redis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 20 * time.Millisecond})
	defer client.Close()
	var buf testenv.SyncBuffer
	reg := prometheus.NewRegistry()
	cfg := gate.DefaultConfig()
	cfg.StoreTimeout = 20 * time.Millisecond
	g, err := gate.New(cfg, gate.NewRedisStore(client, "logs", cfg.Policy()), gate.WithLogger(logTo(&buf)), gate.WithRegisterer(reg))
	require.NoError(t, err)
	srv.Kill()
	ctx := context.Background()
	for i := range 2000 {
		tk, d := g.Begin(ctx, attempt(fmt.Sprintf("10.1.%d.%d", i/256, i%256), fmt.Sprintf("user-%d", i%300)))
		if d.Allowed {
			tk.Finish(ctx, false)
		}
	}
	lines := strings.Count(buf.String(), "\n")
	degraded := testenv.Metric(t, reg, "defender_gate_degraded_total")
	t.Logf("2000 logins with Redis down: %d log lines, defender_gate_degraded_total %v", lines, degraded)
	assert.GreaterOrEqual(t, degraded, 2000.0, "the metric counts every decision taken without Redis")
	assert.LessOrEqual(t, lines, 50, "a few lines, not one per login:\n%s", buf.String())
	closeCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	assert.ErrorContains(t, g.Close(closeCtx), "outcomes not written to the store", "the outcomes Redis never took are reported at close")
}

// TestReverseProxyWithoutTrustedProxiesWarns: a gate that believes every
// client's X-Forwarded-For says so at start, since a client that sends a
// new address with each guess is never blocked by IP.
func TestReverseProxyWithoutTrustedProxiesWarns(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted bool
		warn    bool
	}{{"no trusted proxies", false, true}, {"trusted proxies", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			var buf testenv.SyncBuffer
			cfg := gate.DefaultConfig()
			cfg.BehindReverseProxy = true
			if tc.trusted {
				p, err := gate.ParsePrefix("10.0.0.0/8")
				require.NoError(t, err)
				cfg.TrustedProxies = append(cfg.TrustedProxies, p)
			}
			_, err := gate.New(cfg, gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy(), SweepInterval: -1}), gate.WithLogger(logTo(&buf)))
			require.NoError(t, err)
			if tc.warn {
				assert.Contains(t, buf.String(), `"level":"WARN"`)
				assert.Contains(t, buf.String(), "DEFENDER_TRUSTED_PROXIES")
			} else {
				assert.Empty(t, buf.String())
			}
		})
	}
}
