package gate_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
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
	g, err := gate.New(gate.DefaultConfig(), gate.NewRedisStore(client, "cmd", gate.DefaultConfig().Policy()), gate.WithLogger(quiet))
	require.NoError(t, err)
	defer g.Close(ctx)
	// Load the scripts and open the connection before counting.
	g.Record(ctx, attempt("192.0.2.200", "warmup"), true)
	g.Check(ctx, attempt("192.0.2.200", "warmup"))
	tk, _ := g.Begin(ctx, attempt("192.0.2.200", "warmup"))
	tk.Finish(ctx, true)
	for range 3 {
		g.Record(ctx, attempt("192.0.2.199", "warmup-last"), false)
	}
	tk, _ = g.Begin(ctx, attempt("192.0.2.199", "warmup-last")) // a last chance: the full scripts
	tk.Finish(ctx, false)
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
	assert.Empty(t, wire, "an ordinary failure: counted by Begin, nothing more")

	wire = srv.Wire(t, func() {
		tk, d := g.Begin(ctx, attempt(ip, "s-"+user))
		require.True(t, d.Allowed)
		tk.FinishAsync(true)
		require.NoError(t, g.Flush(ctx))
	})
	assert.Equal(t, []string{"evalsha", "evalsha"}, wire, "a success: Begin, then the clear off the critical path")

	last, lastIP := fresh()
	for i := 0; i < 3; i++ {
		g.Record(ctx, attempt(lastIP, last), false)
	}
	wire = srv.Wire(t, func() {
		tk, d := g.Begin(ctx, attempt(lastIP, last))
		require.True(t, d.LastChance)
		tk.FinishAsync(false)
		require.NoError(t, g.Flush(ctx))
	})
	// The last chance alone takes the full rules: the charge script leaves
	// it to the Begin script, which charges it as pending, and its failure
	// blocks in Finish. (Once per block: the charge script keeps no
	// arguments for it on every other login.)
	assert.Equal(t, []string{"evalsha", "evalsha", "evalsha"}, wire, "the last chance")
	require.False(t, g.Check(ctx, attempt(lastIP, last)).Allowed)

	// An attacker who holds a last chance open (no outcome reported)
	// saturates the subject: each further guess is refused by the first
	// script alone.
	held, heldIP := fresh()
	for i := 0; i < 3; i++ {
		g.Record(ctx, attempt(heldIP, held), false)
	}
	open, d := g.Begin(ctx, attempt(heldIP, held))
	require.True(t, d.LastChance)
	wire = srv.Wire(t, func() { _, d = g.Begin(ctx, attempt(heldIP, held)) })
	require.False(t, d.Allowed, "saturated")
	assert.Equal(t, []string{"evalsha"}, wire, "saturated: one script")
	open.Finish(ctx, false)

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
	// scripts call inside Redis: an ordinary failure is one script of eight
	// commands (one EXISTS for the three blocks and pending sets, INCR and
	// PEXPIRE per failure counter, SADD, SCARD and PEXPIRE for the set of
	// names failing from the address), a success adds one of six (SET NX
	// of the settled marker, EXISTS, one DEL of both counts, SREM and
	// SCARD of its name).
	require.NoError(t, admin.ConfigResetStat(ctx).Err())
	tk3, _ := g.Begin(ctx, attempt("192.0.2.202", "third"))
	tk3.Finish(ctx, false)
	calls, err := srv.CommandCalls(ctx, admin)
	require.NoError(t, err)
	delete(calls, "config|resetstat")
	assert.Equal(t, map[string]int{"evalsha": 1, "exists": 1, "incr": 2, "pexpire": 3, "sadd": 1, "scard": 1}, calls)
	require.NoError(t, admin.ConfigResetStat(ctx).Err())
	tk3, _ = g.Begin(ctx, attempt("192.0.2.203", "fourth"))
	tk3.Finish(ctx, true)
	calls, err = srv.CommandCalls(ctx, admin)
	require.NoError(t, err)
	delete(calls, "config|resetstat")
	assert.Equal(t, map[string]int{"evalsha": 2, "exists": 2, "incr": 2, "pexpire": 3, "sadd": 1, "scard": 2,
		"set": 1, "del": 1, "srem": 1}, calls)
}

// TestRedisDown: with Redis gone every login is answered within the store
// deadline by the fail mode. The local limiter (local) keeps refusing the
// block the store reported before, and lets at most limit+1 guesses at a
// new victim through; closed refuses everything. When Redis is back, the
// failures the local limiter counted reach it, and protection goes on.
func TestRedisDown(t *testing.T) {
	redis.SetLogger(&logging.VoidLogger{}) // its dial errors are expected here
	for _, mode := range []gate.FailMode{gate.FailLocal, gate.FailClosed} {
		t.Run(string(mode), func(t *testing.T) {
			srv := testenv.Redis(t)
			cfg := gate.DefaultConfig()
			cfg.FailMode = mode
			cfg.StoreTimeout = 50 * time.Millisecond
			client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
			defer client.Close()
			g, err := gate.New(cfg, gate.NewRedisStore(client, "down", cfg.Policy()), gate.WithLogger(quiet))
			require.NoError(t, err)
			defer g.Close(ctx)
			// The block, made by a gate that waits for Redis as long as a
			// loaded machine needs (50 ms is not always enough there).
			setupCfg := cfg
			setupCfg.StoreTimeout = 10 * time.Second
			setup, err := gate.New(setupCfg, gate.NewRedisStore(client, "down", setupCfg.Policy()), gate.WithLogger(quiet))
			require.NoError(t, err)
			user, ip := fresh()
			for i := 0; i < 4; i++ {
				require.NoError(t, setup.Record(ctx, attempt(ip, user), false).Err)
			}
			require.NoError(t, setup.Close(ctx))
			// g learns of it from the store (a Check counts nothing: retried
			// until one answers within g's deadline).
			require.Eventually(t, func() bool {
				d := g.Check(ctx, attempt(ip, user))
				return d.Err == nil && !d.Allowed
			}, 10*time.Second, 10*time.Millisecond)

			before := runtime.NumGoroutine()
			srv.Kill()
			for i := 0; i < 50; i++ {
				tk, d := g.Begin(ctx, attempt(ip, user))
				require.Error(t, d.Err)
				require.ErrorIs(t, d.Err, gate.ErrStoreUnavailable)
				require.False(t, d.Allowed, "the blocked source stays refused")
				require.Nil(t, tk)
				if mode == gate.FailLocal {
					require.True(t, d.Degraded)
					require.Equal(t, []gate.Kind{gate.KindIP, gate.KindUsername}, d.BlockedBy, "by the block the store reported")
				} else {
					require.True(t, d.Unavailable)
				}
			}
			// A new victim, guessed at from new addresses while the store is down.
			victim := user + "-new"
			admitted := 0
			for i := 0; i < 50; i++ {
				tk, d := g.Begin(ctx, attempt(fmt.Sprintf("198.51.100.%d", i), victim))
				// Decided without the store: by the fail mode, or, once the
				// local limiter holds failures the store has not seen, by
				// the local limiter before any call.
				require.True(t, d.Degraded || d.Unavailable)
				if d.Allowed {
					admitted++
					tk.FinishAsync(false)
				}
			}
			if mode == gate.FailLocal {
				assert.Equal(t, cfg.FailureLimit+1, admitted, "the local limiter admits limit+1, then blocks")
			} else {
				assert.Zero(t, admitted)
			}
			require.NoError(t, g.Flush(ctx))
			srv.Start()
			require.Eventually(t, func() bool { return g.Check(ctx, attempt(ip, user)).Err == nil },
				10*time.Second, 20*time.Millisecond, "the store answers again")
			if mode == gate.FailLocal {
				// The four failures the local limiter counted are replayed:
				// Redis blocks the new victim too.
				require.Eventually(t, func() bool {
					d := g.Check(ctx, attempt("192.0.2.250", victim))
					return d.Err == nil && !d.Allowed
				}, 10*time.Second, 20*time.Millisecond, "the local limiter's count reached the store")
			}
			// This Redis kept nothing else (no persistence): protection
			// starts over for the first user. A call may still miss the
			// 50 ms deadline on a busy machine (answered by the fail
			// mode): count those that landed.
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

// TestRedisCrashPersistence: a Redis run as deploy/compose.yml runs it
// (append-only file) keeps the gate's whole state across a crash. After a
// SIGKILL and a restart on the same directory the gate still refuses the
// blocked sources until their block ends, lists them, keeps counting
// failures where they were, escalates the next block of a subject blocked
// before, and keeps an admin's permanent block. The control, a Redis
// without persistence (testenv's default), forgets all of it in the same
// crash: that is what makes the first case evidence.
func TestRedisCrashPersistence(t *testing.T) {
	for _, appendOnly := range []bool{true, false} {
		t.Run(map[bool]string{true: "appendonly", false: "no persistence"}[appendOnly], func(t *testing.T) {
			start := testenv.Redis
			if appendOnly {
				start = testenv.RedisAppendOnly
			}
			srv := start(t)
			cfg := gate.DefaultConfig()
			cfg.LockoutCooloffs = []time.Duration{time.Second, time.Hour}
			cfg.StoreTimeout = 5 * time.Second
			g, err := gate.New(cfg, gate.NewRedisStore(srv.Client(), "crash", cfg.Policy()), gate.WithLogger(quiet))
			require.NoError(t, err)
			defer g.Close(ctx)

			// Before the crash: a subject whose first block (1 s) has
			// ended, a block by hand for ten minutes, a permanent one, and
			// a user two failures short of the limit.
			_, escalated := fresh()
			for i := 0; i < 4; i++ {
				g.Record(ctx, attempt(escalated, ""), false)
			}
			require.False(t, g.Check(ctx, attempt(escalated, "")).Allowed, "first block")
			require.Eventually(t, func() bool { return g.Check(ctx, attempt(escalated, "")).Allowed },
				10*time.Second, 50*time.Millisecond, "the first block ends after 1 s")
			_, handIP := fresh()
			require.NoError(t, g.Block(ctx, gate.KindIP, handIP, 10*time.Minute))
			permanent, _ := fresh()
			require.NoError(t, g.Block(ctx, gate.KindUsername, permanent, 0))
			counting, _ := fresh()
			for i := 0; i < 2; i++ {
				_, ip := fresh()
				require.True(t, g.Record(ctx, attempt(ip, counting), false).Allowed)
			}

			if appendOnly {
				// With appendfsync everysec, Redis postpones writing its AOF
				// buffer while a slow fsync is in progress (a loaded disk):
				// what a SIGKILL then loses is that buffer. Wait until it
				// is written, as a crash seconds later would find it.
				require.Eventually(t, func() bool {
					info, err := srv.Client().Info(ctx, "persistence").Result()
					return err == nil && strings.Contains(info, "aof_buffer_length:0\r\n")
				}, 10*time.Second, 20*time.Millisecond, "the append-only file written")
			}
			srv.Kill()
			srv.Start()
			require.Eventually(t, func() bool { return g.Check(ctx, attempt(handIP, "")).Err == nil },
				10*time.Second, 20*time.Millisecond, "Redis answers again")

			_, other := fresh()
			hand := g.Check(ctx, attempt(handIP, ""))
			perm := g.Check(ctx, attempt(other, permanent))
			listed, err := g.Blocked(ctx, gate.KindIP, 0)
			require.NoError(t, err)
			var subjects []string
			for _, b := range listed {
				subjects = append(subjects, b.Subject)
			}
			// Two more failures: the limit (3) is passed on the fourth.
			_, ip := fresh()
			third := g.Record(ctx, attempt(ip, counting), false)
			fourth := g.Record(ctx, attempt(ip, counting), false)
			// The escalated subject's next block.
			for i := 0; i < 4; i++ {
				g.Record(ctx, attempt(escalated, ""), false)
			}
			second := g.Check(ctx, attempt(escalated, ""))
			require.False(t, second.Allowed, "blocked again")

			if !appendOnly {
				assert.True(t, hand.Allowed, "the block by hand was forgotten")
				assert.True(t, perm.Allowed, "the permanent block was forgotten")
				assert.NotContains(t, subjects, handIP)
				assert.True(t, fourth.Allowed, "the count started over")
				assert.LessOrEqual(t, second.RetryAfter, time.Second, "the lockout count started over")
				return
			}
			assert.False(t, hand.Allowed, "the block by hand survived")
			assert.Greater(t, hand.RetryAfter, 9*time.Minute, "and still ends ten minutes after it was set")
			assert.LessOrEqual(t, hand.RetryAfter, 10*time.Minute)
			assert.False(t, perm.Allowed, "the permanent block survived")
			assert.True(t, perm.Permanent)
			assert.Contains(t, subjects, handIP, "listed for the admin")
			assert.True(t, third.Allowed, "third failure: at the limit")
			assert.False(t, fourth.Allowed, "fourth failure blocks: the count went on")
			assert.Greater(t, second.RetryAfter, 59*time.Minute, "second block escalated to an hour")
		})
	}
}

// TestCanceledCallerIsNotAnOutage: net/http cancels a request's context
// as soon as the client half-closes its connection (shutdown of its
// sending side after the request, the response still readable). The store
// call then failed at once with context.Canceled, which the gate took for
// a Redis outage and, failing open (the default), let the attempt reach
// the password check uncounted, past any block: a blocked attacker raced
// its guesses through. A canceled caller still gets the store's answer,
// within the store deadline; the caller's own deadline still bounds it.
func TestCanceledCallerIsNotAnOutage(t *testing.T) {
	srv := testenv.Redis(t)
	g, err := gate.New(gate.DefaultConfig(), gate.NewRedisStore(srv.Client(), "cancel"+randHex(3), gate.DefaultConfig().Policy()), gate.WithLogger(quiet))
	require.NoError(t, err)
	defer g.Close(ctx)
	user, ip := fresh()
	for i := 0; i < 4; i++ {
		g.Record(ctx, attempt(ip, user+itoa(i)), false)
	}
	require.False(t, g.Check(ctx, attempt(ip, "x")).Allowed, "the IP is blocked")

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, d := g.Begin(canceled, attempt(ip, "x"))
	assert.False(t, d.Allowed, "a blocked source stays blocked when its request is canceled")
	assert.False(t, d.Degraded)
	assert.Equal(t, []gate.Kind{gate.KindIP}, d.BlockedBy)
	d = g.Record(canceled, attempt(ip, "y"), false)
	assert.False(t, d.Allowed)
	assert.False(t, d.Degraded)
	d = g.Check(canceled, attempt(ip, "z"))
	assert.False(t, d.Allowed)
	assert.False(t, d.Degraded)

	// Not blocked: the canceled attempt is charged like any other.
	user2, ip2 := fresh()
	tk, d := g.Begin(canceled, attempt(ip2, user2))
	require.True(t, d.Allowed)
	assert.False(t, d.Degraded)
	assert.NotEmpty(t, tk.Token(), "charged")

	// The caller's deadline still bounds the call: an expired one is a
	// store timeout, decided by the fail mode.
	expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()
	d = g.Check(expired, attempt(ip, "z"))
	assert.True(t, d.Degraded)
	assert.ErrorIs(t, d.Err, context.DeadlineExceeded)
}

// TestMiddlewareHalfClosedClient plays the attack end to end over TCP: a
// blocked client half-closes each connection after its request.
func TestMiddlewareHalfClosedClient(t *testing.T) {
	srv := testenv.Redis(t)
	g, err := gate.New(gate.DefaultConfig(), gate.NewRedisStore(srv.Client(), "halfclose"+randHex(3), gate.DefaultConfig().Policy()), gate.WithLogger(quiet))
	require.NoError(t, err)
	defer g.Close(ctx)
	site := &loginSite{}
	ts := httptest.NewServer(g.Middleware(site))
	defer ts.Close()
	send := func(user, password string, halfClose bool) int {
		c, err := net.Dial("tcp", ts.Listener.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		body := url.Values{"username": {user}, "password": {password}}.Encode()
		_, err = fmt.Fprintf(c, "POST /login HTTP/1.1\r\nHost: gate\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
			"Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		require.NoError(t, err)
		if halfClose {
			require.NoError(t, c.(*net.TCPConn).CloseWrite())
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 4; i++ {
		send("u"+itoa(i), "wrong", false)
	}
	require.NoError(t, g.Flush(ctx))
	calls := site.calls.Load()
	n := 1000
	if testing.Short() {
		n = 50
	}
	codes := map[int]int{}
	for i := 0; i < n; i++ {
		codes[send("v"+itoa(i), "secret", true)]++
	}
	assert.Equal(t, map[int]int{http.StatusTooManyRequests: n}, codes)
	assert.Equal(t, calls, site.calls.Load(), "no password was checked while blocked")
}

// TestSmartLockoutLoginIsShortScripts: with smart lockout on, a login is
// still one short script on its path, and a success's outcome one short
// script after it, which teaches the address: the next login from it is
// familiar. What each runs inside Redis is counted through INFO
// commandstats.
func TestSmartLockoutLoginIsShortScripts(t *testing.T) {
	srv := testenv.Redis(t)
	admin := srv.Client()
	cfg := gate.DefaultConfig()
	cfg.SmartLockout = true
	g, err := gate.New(cfg, gate.NewRedisStore(srv.Client(), "smart", cfg.Policy()), gate.WithLogger(quiet))
	require.NoError(t, err)
	defer g.Close(ctx)
	tk, _ := g.Begin(ctx, attempt("192.0.2.200", "warmup")) // load the scripts
	tk.Finish(ctx, true)

	commands := func(f func()) map[string]int {
		require.NoError(t, admin.ConfigResetStat(ctx).Err())
		f()
		calls, err := srv.CommandCalls(ctx, admin)
		require.NoError(t, err)
		delete(calls, "config|resetstat")
		return calls
	}
	// A failure from an address the user has never logged in from: the
	// user's set of familiar sources read (ZSCORE), then the failure
	// counted on the address, the username (unfamiliar) and the names
	// failing from the address.
	var d gate.Decision
	calls := commands(func() {
		tk, d = g.Begin(ctx, attempt("192.0.2.1", "alice"))
		tk.Finish(ctx, false)
	})
	require.True(t, d.Allowed)
	assert.False(t, d.Familiar)
	assert.Equal(t, map[string]int{"evalsha": 1, "zscore": 1, "exists": 1, "incr": 2, "pexpire": 3, "sadd": 1, "scard": 1}, calls)

	// A success: its clear reads familiarity, clears what applied, and
	// teaches the address (TIME, ZADD, then, the address being new, the
	// old ones dropped and the size read, and the set's TTL renewed).
	calls = commands(func() {
		tk, d = g.Begin(ctx, attempt("192.0.2.1", "alice"))
		tk.Finish(ctx, true)
	})
	require.True(t, d.Allowed)
	assert.Equal(t, 2, calls["evalsha"], "Begin, then the clear: %v", calls)
	assert.Equal(t, 1, calls["zadd"], "%v", calls)
	assert.Equal(t, 1, calls["set"], "the settled marker: %v", calls)
	assert.Zero(t, calls["zrangebyscore"]+calls["get"], "no full rules: %v", calls)

	// The address is now familiar: a failure counts on the familiar
	// username counter, and the attacker's unfamiliar failures do not
	// touch it.
	calls = commands(func() {
		tk, d = g.Begin(ctx, attempt("192.0.2.1", "alice"))
		tk.Finish(ctx, false)
	})
	assert.True(t, d.Familiar)
	assert.Equal(t, 1, calls["evalsha"], "%v", calls)
	for range 10 {
		if tk, d = g.Begin(ctx, attempt("198.51.100.7", "alice")); d.Allowed {
			tk.Finish(ctx, false)
		}
	}
	require.False(t, d.Allowed, "the attacker is refused")
	tk, d = g.Begin(ctx, attempt("192.0.2.1", "alice"))
	assert.True(t, d.Allowed, "the user's own address still gets in: %+v", d)
	assert.True(t, d.Familiar)
	tk.Finish(ctx, true)
}
