package gate_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

// TestOneRoundTripPerLogin counts what Redis receives: every gate operation
// is one EVALSHA, and a login puts exactly one on its critical path.
func TestOneRoundTripPerLogin(t *testing.T) {
	srv := testenv.Redis(t)
	client := srv.Client()
	admin := srv.Client()
	g, err := gate.New(gate.DefaultConfig(), gate.NewRedisStore(client, "cmd"), gate.WithLogger(quiet))
	require.NoError(t, err)
	defer g.Close(ctx)
	// Load the scripts and open the connection before counting.
	g.Record(ctx, attempt("192.0.2.200", "warmup"), true)
	g.Check(ctx, attempt("192.0.2.200", "warmup"))
	tk, _ := g.Begin(ctx, attempt("192.0.2.200", "warmup"))
	tk.Finish(ctx, true)
	g.Unblock(ctx, gate.KindIP, "192.0.2.200")

	user, ip := fresh()
	var tk2 *gate.Ticket
	var d gate.Decision
	wire := srv.Wire(t, func() { tk2, d = g.Begin(ctx, attempt(ip, user)) })
	require.True(t, d.Allowed)
	assert.Equal(t, []string{"evalsha"}, wire, "check and charge: one script")

	wire = srv.Wire(t, func() {
		tk2.FinishAsync(false)
		require.NoError(t, g.Flush(ctx))
	})
	assert.Equal(t, []string{"evalsha"}, wire, "the outcome, off the critical path")

	for i := 0; i < 3; i++ {
		g.Record(ctx, attempt(ip, user), false)
	}
	wire = srv.Wire(t, func() { _, d = g.Begin(ctx, attempt(ip, user)) })
	require.False(t, d.Allowed)
	assert.Equal(t, []string{"evalsha"}, wire, "refused: one script")

	wire = srv.Wire(t, func() { g.Record(ctx, attempt("192.0.2.201", "other"), true) })
	assert.Equal(t, []string{"evalsha"}, wire, "one-call form: one script")

	wire = srv.Wire(t, func() { g.Check(ctx, attempt(ip, user)) })
	require.Len(t, wire, 1, "check: one script")
	assert.Contains(t, []string{"evalsha", "evalsha_ro"}, wire[0])

	// The same count through INFO commandstats, which also counts what the
	// scripts call inside Redis: exactly one script call per operation.
	require.NoError(t, admin.ConfigResetStat(ctx).Err())
	tk3, _ := g.Begin(ctx, attempt("192.0.2.202", "third"))
	tk3.Finish(ctx, false)
	calls, err := srv.CommandCalls(ctx, admin)
	require.NoError(t, err)
	assert.Equal(t, 2, calls["evalsha"]+calls["evalsha_ro"]+calls["eval"]+calls["eval_ro"])
}

// TestRedisDown: with Redis gone every login is answered within the store
// deadline by the fail mode, and protection resumes when it is back.
func TestRedisDown(t *testing.T) {
	redis.SetLogger(&logging.VoidLogger{}) // its dial errors are expected here
	for _, mode := range []gate.FailMode{gate.FailOpen, gate.FailClosed} {
		t.Run(string(mode), func(t *testing.T) {
			srv := testenv.Redis(t)
			cfg := gate.DefaultConfig()
			cfg.FailMode = mode
			cfg.StoreTimeout = 50 * time.Millisecond
			client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
			defer client.Close()
			g, err := gate.New(cfg, gate.NewRedisStore(client, "down"), gate.WithLogger(quiet))
			require.NoError(t, err)
			defer g.Close(ctx)
			user, ip := fresh()
			for i := 0; i < 4; i++ {
				g.Record(ctx, attempt(ip, user), false)
			}
			require.False(t, g.Check(ctx, attempt(ip, user)).Allowed)

			before := runtime.NumGoroutine()
			srv.Kill()
			for i := 0; i < 50; i++ {
				tk, d := g.Begin(ctx, attempt(ip, user))
				require.Error(t, d.Err)
				require.ErrorIs(t, d.Err, gate.ErrStoreUnavailable)
				if mode == gate.FailOpen {
					require.True(t, d.Allowed)
					require.True(t, d.Degraded)
					tk.FinishAsync(false)
				} else {
					require.False(t, d.Allowed)
					require.True(t, d.Unavailable)
				}
			}
			require.NoError(t, g.Flush(ctx))
			srv.Start()
			require.Eventually(t, func() bool { return g.Check(ctx, attempt(ip, user)).Err == nil },
				10*time.Second, 20*time.Millisecond, "the store answers again")
			// This Redis kept nothing (no persistence): protection starts
			// over. A call may still miss the 50 ms deadline on a busy
			// machine (answered by the fail mode): count those that landed.
			counted := 0
			for try := 0; counted < 4 && try < 200; try++ {
				if d := g.Record(ctx, attempt(ip, user), false); d.Err == nil {
					counted++
				}
			}
			require.Equal(t, 4, counted, "failures counted once Redis is back")
			var d gate.Decision
			require.Eventually(t, func() bool { d = g.Check(ctx, attempt(ip, user)); return d.Err == nil },
				5*time.Second, 20*time.Millisecond)
			assert.False(t, d.Allowed, "protection resumed")
			require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+2 }, 5*time.Second, 50*time.Millisecond,
				"no goroutine growth")
		})
	}
}
