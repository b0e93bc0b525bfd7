package gate_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

// TestRedisRepliesTransitionsAgain: the same outcome reported again (a
// Finish of a settled token, a Record with the token of one that blocked)
// changes nothing and replies the transitions the first call made, with
// the same At: a gate that gave up waiting for the first answer replays
// the outcome, and announces the block then. On RedisStore and on
// RedisClusterStore (one counter per script).
func TestRedisRepliesTransitionsAgain(t *testing.T) {
	srv := testenv.Redis(t)
	client := srv.Client()
	// A pending timeout shorter than the attempt cool-off: a Record's
	// replay may come as long as its failure would count, and its marker
	// lasts that long.
	p := gate.Policy{AttemptCooloff: time.Minute, PendingTimeout: 5 * time.Second,
		LockoutCooloffs: []time.Duration{time.Minute}, LockoutMemory: time.Hour}
	stores := map[string]gate.Store{
		"redis":   gate.NewRedisStore(client, "late"+redisStoreRandom(), p),
		"cluster": newClusterStore(t, client, "late"+redisStoreRandom(), p),
	}
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel() // each waits out the pending timeout once
			ctx := context.Background()
			op := func(user, token string) gate.Op {
				return gate.Op{Token: token, Counters: []gate.Counter{
					{Kind: gate.KindIP, Subject: "192.0.2.1", Limit: 1000},
					{Kind: gate.KindUsername, Subject: user, Limit: 2}}}
			}
			// blockOnce checks a call that blocks the username (first)
			// against the same call again (again).
			blockOnce := func(t *testing.T, first, again gate.Result) {
				t.Helper()
				require.Len(t, first.Transitions, 1, "the first call blocks")
				tr := first.Transitions[0]
				assert.Equal(t, gate.KindUsername, tr.Kind)
				assert.True(t, tr.Blocked)
				assert.False(t, tr.At.IsZero(), "the store says when")
				assert.WithinDuration(t, time.Now(), tr.At, time.Minute)
				require.Len(t, again.Transitions, 1, "the same call again replies its transitions")
				assert.Equal(t, tr, again.Transitions[0])
				assert.Equal(t, first.Failures, again.Failures, "nothing counted twice")
			}

			t.Run("finish", func(t *testing.T) {
				user := "finish-" + redisStoreRandom()
				for i := range 2 {
					o := op(user, "f"+redisStoreRandom())
					r, err := s.Begin(ctx, o)
					require.NoError(t, err)
					require.True(t, r.Admitted, "attempt %d", i)
					if len(r.Counted) == 0 || slices.Contains(r.Counted, false) {
						_, err = s.Finish(ctx, o, false)
						require.NoError(t, err)
					}
				}
				last := op(user, "f"+redisStoreRandom())
				r, err := s.Begin(ctx, last)
				require.NoError(t, err)
				require.True(t, r.LastChance, "the third attempt is the last chance")
				first, err := s.Finish(ctx, last, false)
				require.NoError(t, err)
				again, err := s.Finish(ctx, last, false)
				require.NoError(t, err)
				blockOnce(t, first, again)
				// Reported as a success this time: still nothing lifted.
				success, err := s.Finish(ctx, last, true)
				require.NoError(t, err)
				assert.Equal(t, first.Transitions, success.Transitions)
				assert.Equal(t, first.Failures, success.Failures)
				require.NotEmpty(t, success.Blocked, "still blocked")
			})

			t.Run("record", func(t *testing.T) {
				// On the cluster, over two slots: a reserve round and a
				// Finish round under the Record's token.
				user := "record-" + redisStoreRandom()
				for range 2 {
					r, err := s.Record(ctx, op(user, "r"+redisStoreRandom()), false)
					require.NoError(t, err)
					require.True(t, r.Admitted)
				}
				o := op(user, "r"+redisStoreRandom())
				first, err := s.Record(ctx, o, false)
				require.NoError(t, err)
				again, err := s.Record(ctx, o, false)
				require.NoError(t, err)
				blockOnce(t, first, again)
				assert.True(t, again.Admitted, "the first call counted it")
				assert.Equal(t, 3, again.Failures[len(again.Failures)-1])
				// Past the pending timeout, and after an admin's unblock
				// (the fast path, which finds no block, reads the marker too).
				time.Sleep(p.PendingTimeout + 200*time.Millisecond)
				_, err = s.Unblock(ctx, gate.KindUsername, user)
				require.NoError(t, err)
				before, err := s.Check(ctx, o)
				require.NoError(t, err)
				late, err := s.Record(ctx, o, false)
				require.NoError(t, err)
				assert.Equal(t, first.Transitions, late.Transitions, "replied again later, and after the unblock")
				last := len(o.Counters) - 1
				assert.Equal(t, before.Failures[last], late.Failures[last], "nothing counted where it blocked")
				if name == "redis" {
					// One script, one marker. The cluster's marker on the
					// IP's slot kept no transition: it lived the pending
					// timeout, and the replay counts again there.
					assert.Equal(t, before.Failures, late.Failures, "nothing counted")
				}
				_, err = s.Block(ctx, gate.KindUsername, user, time.Hour)
				require.NoError(t, err)
				// Another attempt is refused, and announces nothing.
				other, err := s.Record(ctx, op(user, "r"+redisStoreRandom()), false)
				require.NoError(t, err)
				assert.False(t, other.Admitted)
				assert.Empty(t, other.Transitions)
				// Without a token each call is a new one.
				anon, err := s.Record(ctx, op(user, ""), false)
				require.NoError(t, err)
				assert.False(t, anon.Admitted)
				assert.Empty(t, anon.Transitions)
			})
		})
	}
}

// TestLateAnswerBlockIsAnnounced: a store call that Redis ran but whose
// answer came after the gate's deadline (a proxy holds Redis's answers
// back) made a block. The gate took the call for failed, decided with its
// local limiter and replayed the outcome once Redis answered in time
// again: the replay announces the store's block, once, under an id that
// names it, and counts nothing twice. Before, the replay changed nothing
// and nobody announced the block (no event, no notifier mail).
func TestLateAnswerBlockIsAnnounced(t *testing.T) {
	srv := testenv.Redis(t)
	direct := srv.Client()

	// record, closed: the fail mode refuses the late Record (503), and the
	// gate asks the store afterwards whether it ran all the same.
	for _, flow := range []string{"record", "record, closed", "finish"} {
		t.Run(flow, func(t *testing.T) {
			proxy := testenv.Late(t, srv.Addr)
			cfg := gate.DefaultConfig()
			if flow == "record, closed" {
				cfg.FailMode = gate.FailClosed
			}
			cfg.UsernameFailureLimit, cfg.IPFailureLimit = 2, 1000
			// Not the default 100 ms: the calls before the late one must
			// not be late on a loaded machine (-race, packages in parallel).
			cfg.StoreTimeout = 500 * time.Millisecond
			ev := &events{}
			g := redisGate(t, cfg, proxy.Addr, ev)
			fail := func(a gate.Attempt) gate.Decision {
				if flow != "finish" {
					return g.Record(ctx, a, false)
				}
				return login(g, a, false)
			}
			// Redis learns the scripts first: a script it does not know
			// yet is not run by the first call (NOSCRIPT), whose answer
			// a late reply would hold back, but by the gate's second.
			wu, wip := fresh()
			warm := attempt(wip, wu)
			for range 3 {
				fail(warm)
			}
			user, ip := fresh()
			a := attempt(ip, user)
			for i := range 2 {
				d := fail(a)
				require.True(t, d.Allowed, "failure %d", i+1)
				require.False(t, d.Degraded, "failure %d", i+1)
			}
			var tk *gate.Ticket
			if flow == "finish" {
				var d gate.Decision
				tk, d = g.Begin(ctx, a)
				require.True(t, d.Allowed, "the last chance")
				require.False(t, d.Degraded)
			}
			// The failure that blocks: Redis runs it, its answer comes late.
			proxy.SetDelay(2 * time.Second)
			var d gate.Decision
			if flow != "finish" {
				d = g.Record(ctx, a, false)
			} else {
				d = tk.Finish(ctx, false)
			}
			require.True(t, d.Degraded || d.Unavailable, "the gate gave up waiting: %+v", d)
			proxy.SetDelay(0)

			b := announcedOnce(t, g, ev, user)
			assert.NotEqual(t, uuid.UUID{}, b.ID, "named by the gate: the same id if announced again")
			assert.Equal(t, uuid.Version(7), b.ID.Version(), "time-ordered like every event id")
			assert.Equal(t, 3, b.Failures)
			assert.WithinDuration(t, time.Now(), b.Time, time.Minute)
			n, err := direct.Get(ctx, cfg.KeyPrefix+":failed:username:"+user).Int()
			require.NoError(t, err)
			assert.Equal(t, 3, n, "the replay counted nothing twice")
		})
	}
}

// redisGate is a gate with cfg on the Redis at addr (a proxy's, or the
// server's), through gate.OpenRedisStore (the deadline as in production),
// emitting to ev, closed when the test ends.
func redisGate(t *testing.T, cfg gate.Config, addr string, ev *events) *gate.Gate {
	t.Helper()
	cfg.RedisURL = "redis://" + addr
	store, client, err := gate.OpenRedisStore(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	g, err := gate.New(cfg, store, gate.WithEmitter(ev), gate.WithLogger(quiet))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, g.Close(ctx))
	})
	return g
}

// announcedOnce waits until g announces the block the store made of
// user's username (not its local limiter's), and until g's Check sees it
// in the store; whatever else g replayed or checked meanwhile, it returns
// the one announcement.
func announcedOnce(t *testing.T, g *gate.Gate, ev *events, user string) gate.TransitionRecord {
	t.Helper()
	storeBlocks := func() []gate.TransitionRecord {
		var out []gate.TransitionRecord
		for _, b := range ev.blocks(true) {
			if !b.Local && b.Kind == gate.KindUsername && b.Subject == user {
				out = append(out, b)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(storeBlocks()) > 0 }, 15*time.Second, 20*time.Millisecond,
		"the gate announces the store's block")
	assert.Eventually(t, func() bool {
		c := g.Check(ctx, attempt("192.0.2.200", user))
		return !c.Allowed && !c.Degraded && !c.Unavailable
	}, 10*time.Second, 20*time.Millisecond, "the store blocks the username")
	blocks := storeBlocks()
	require.Len(t, blocks, 1, "announced once")
	return blocks[0]
}

// TestLateBeginBlockIsAnnounced: a Begin that settles a charge found
// past its deadline into the failure that blocks, and is refused, makes
// that block in Redis; when its answer comes after the gate's deadline,
// the gate asks for it afterwards (a Finish of the token, which finds the
// block kept in the token's marker) and announces it, once. Before, no
// gate ever published that block: no event, no mail. From an address on
// a shared list (carrier-grade NAT), whose op goes to the full rules at
// once (its spraying counter only reports), so that the late call is
// the one that blocks. (From an ordinary address the late answer is the
// charge script's, which leaves the expired charge to the full rules,
// that never run: the next call that meets the charge settles it, and
// announces its block.) With the default fail mode (the local limiter
// decides the late call) and with closed.
func TestLateBeginBlockIsAnnounced(t *testing.T) {
	srv := testenv.Redis(t)
	direct := srv.Client()
	for _, tc := range []struct {
		mode gate.FailMode
		from string
	}{{gate.FailLocal, "100.64.0.9"}, {gate.FailClosed, "100.64.0.10"}} {
		t.Run(string(tc.mode)+" "+tc.from, func(t *testing.T) {
			cfg := gate.DefaultConfig()
			cfg.FailMode = tc.mode
			cfg.UsernameFailureLimit, cfg.IPFailureLimit = 2, 1000
			cfg.PendingTimeout = time.Second
			cfg.StoreTimeout = 500 * time.Millisecond // see TestLateAnswerBlockIsAnnounced
			// One gate leaves a last chance pending (its outcome never
			// comes: the process died); the attempt after its deadline
			// comes to another gate, whose local limiter knows nothing of it.
			first := redisGate(t, cfg, srv.Addr, &events{})
			user, ip := fresh()
			a := attempt(ip, user)
			for i := range 2 {
				require.True(t, login(first, a, false).Allowed, "failure %d", i+1)
			}
			_, d := first.Begin(ctx, a)
			require.True(t, d.Allowed, "the last chance")
			require.False(t, d.Degraded)
			time.Sleep(cfg.PendingTimeout + 300*time.Millisecond)

			proxy := testenv.Late(t, srv.Addr)
			ev := &events{}
			second := redisGate(t, cfg, proxy.Addr, ev)
			// A connection open before the answers are held back (a new
			// one's handshake would be late itself: the call never sent).
			require.False(t, second.Check(ctx, attempt(tc.from, "warm-"+user)).Degraded)
			proxy.SetDelay(2 * time.Second)
			_, d = second.Begin(ctx, attempt(tc.from, user))
			require.True(t, d.Degraded || d.Unavailable, "the gate gave up waiting: %+v", d)
			proxy.SetDelay(0)

			b := announcedOnce(t, second, ev, user)
			assert.Equal(t, 3, b.Failures, "the expired charge was the third failure")
			n, err := direct.Get(ctx, cfg.KeyPrefix+":failed:username:"+user).Int()
			require.NoError(t, err)
			assert.Equal(t, 3, n, "the recall counted nothing")
		})
	}
}

// TestLateLastChanceThatSucceeds: a late Begin that ran in Redis and
// charged the last chance (pending), whose login then succeeded, leaves
// the user unblocked: the recall that follows a late Begin only reads
// (a Finish reporting a failure there, sent before the outcome's replay,
// counted the charge and blocked the user whose password was right;
// found by a review). From an address on a shared list, whose Begin runs
// the full rules at once.
func TestLateLastChanceThatSucceeds(t *testing.T) {
	srv := testenv.Redis(t)
	direct := srv.Client()
	proxy := testenv.Late(t, srv.Addr)
	cfg := gate.DefaultConfig()
	cfg.UsernameFailureLimit, cfg.IPFailureLimit = 2, 1000
	cfg.StoreTimeout = 500 * time.Millisecond // see TestLateAnswerBlockIsAnnounced
	ev := &events{}
	g := redisGate(t, cfg, proxy.Addr, ev)
	const from = "100.64.0.21"
	wu, _ := fresh()
	for range 3 { // Redis learns the scripts
		login(g, attempt(from, wu), false)
	}
	user, _ := fresh()
	a := attempt(from, user)
	for i := range 2 {
		d := login(g, a, false)
		require.True(t, d.Allowed && !d.Degraded, "failure %d: %+v", i+1, d)
	}
	proxy.SetDelay(2 * time.Second)
	tk, d := g.Begin(ctx, a)
	require.True(t, d.Degraded && d.Allowed, "the local limiter admits the late last chance: %+v", d)
	proxy.SetDelay(0)
	tk.Finish(ctx, true) // the right password
	// The backlog holds the recall, then the outcome (a Record of the
	// success, which clears the username's failures).
	require.Eventually(t, func() bool {
		n, err := direct.Exists(ctx, cfg.KeyPrefix+":failed:username:"+user).Result()
		return err == nil && n == 0
	}, 15*time.Second, 20*time.Millisecond, "the success is replayed, and clears")
	c := g.Check(ctx, attempt("192.0.2.250", user))
	assert.True(t, c.Allowed && !c.Degraded, "a user whose login succeeded is not blocked: %+v", c)
	n, err := direct.Exists(ctx, cfg.KeyPrefix+":blocked:username:"+user).Result()
	require.NoError(t, err)
	assert.Zero(t, n)
	for _, b := range ev.blocks(true) {
		assert.NotEqual(t, user, b.Subject, "no block announced")
	}
}

// TestRedisClusterRecordReplay: on Redis Cluster a Record over several
// counters is a reserve round and a Finish round under the Record's
// token. Its replay (the same token, from a gate that gave up waiting)
// completes the first call where that one's charges are still pending,
// though a block came since, and counts nothing twice; and a replay
// refused by a counter takes back only the charges it made, never the
// first call's, which become the failure they would have been. Each
// first call loses a command on its way, by a hook on the client.
func TestRedisClusterRecordReplay(t *testing.T) {
	srv := testenv.Redis(t)
	p := gate.Policy{AttemptCooloff: time.Minute, PendingTimeout: 30 * time.Second,
		LockoutCooloffs: []time.Duration{time.Minute}, LockoutMemory: time.Hour}
	prefix := "replay" + redisStoreRandom()
	reader := srv.Client()
	admin := newClusterStore(t, reader, prefix, p)
	op := func(ip, user string) gate.Op {
		return gate.Op{Token: "t" + redisStoreRandom(), Counters: []gate.Counter{
			{Kind: gate.KindIP, Subject: ip, Limit: 1000},
			{Kind: gate.KindUsername, Subject: user, Limit: 1000}}}
	}
	// markerTTL is the life left to o's settled marker on counter i's slot.
	markerTTL := func(t *testing.T, o gate.Op, i int) time.Duration {
		t.Helper()
		c := o.Counters[i]
		ttl, err := reader.PTTL(ctx, prefix+":settled:"+string(c.Kind)+":{"+c.Subject+"}:"+o.Token).Result()
		require.NoError(t, err)
		return ttl
	}
	// pending reports whether o's token is pending on its counter i: a
	// charge that becomes a failure at the pending timeout.
	pending := func(t *testing.T, o gate.Op, i int) bool {
		t.Helper()
		c := o.Counters[i]
		err := reader.ZScore(ctx, prefix+":pending:"+string(c.Kind)+":{"+c.Subject+"}", o.Token).Err()
		if errors.Is(err, redis.Nil) {
			return false
		}
		require.NoError(t, err)
		return true
	}

	t.Run("CompletesTheFirst", func(t *testing.T) {
		o := op("192.0.2.31", "victim-"+redisStoreRandom())
		// The first call's Finish round (ARGV[5] "r0") is lost.
		client := srv.Client()
		client.AddHook(dropHook{drop: func(args []any) bool { return redisArgv(args, 5) == "r0" }})
		s := newClusterStore(t, client, prefix, p)
		_, err := s.Record(ctx, o, false)
		require.Error(t, err, "the Finish round was lost")
		require.True(t, pending(t, o, 0) && pending(t, o, 1), "the first call's charges wait for its outcome")
		// Another attacker's failures block the user meanwhile.
		_, err = admin.Block(ctx, gate.KindUsername, o.Counters[1].Subject, time.Hour)
		require.NoError(t, err)

		again, err := admin.Record(ctx, o, false)
		require.NoError(t, err)
		assert.True(t, again.Admitted, "the replay completes the call its charges belong to")
		assert.Equal(t, []int{1, 1}, again.Failures, "counted once")
		assert.False(t, pending(t, o, 0) || pending(t, o, 1), "no charge left to expire into a second failure")
		// Neither marker holds a transition: each lives the pending
		// timeout, not the cool-off (a marker per Record for the
		// cool-off would be ten times the keys under a flood).
		for i := range o.Counters {
			ttl := markerTTL(t, o, i)
			assert.Greater(t, ttl, time.Duration(0), "counter %d: marked settled", i)
			assert.LessOrEqual(t, ttl, p.PendingTimeout, "counter %d", i)
		}
	})

	t.Run("SameTokenRelease", func(t *testing.T) {
		// Two calls with one token (one outcome replayed by two gate
		// instances): X charges the IP, loses its reserve on the username
		// and releases its charge; Y's reserve ran in between (it found the
		// IP charged, so charged nothing there) and X's release lands
		// before Y's Finish round, which must count the IP all the same.
		o := op("192.0.2.33", "victim-"+redisStoreRandom())
		xc := srv.Client()
		xc.AddHook(dropHook{drop: func(args []any) bool {
			key, _ := args[3].(string)
			return strings.Contains(key, ":failed:username:") && redisArgv(args, 5) == "0" || args[2] == 2
		}})
		_, err := newClusterStore(t, xc, prefix, p).Record(ctx, o, false)
		require.Error(t, err, "X's reserve on the username was lost")
		require.True(t, pending(t, o, 0), "X's release was held back")
		yc := srv.Client()
		yc.AddHook(beforeHook{done: new(atomic.Bool), match: func(args []any) bool { return redisArgv(args, 5) == "r0" }, do: func() {
			ip := o.Counters[0]
			assert.NoError(t, reader.ZRem(ctx, prefix+":pending:ip:{"+ip.Subject+"}", o.Token).Err(), "X's release")
		}})
		r, err := newClusterStore(t, yc, prefix, p).Record(ctx, o, false)
		require.NoError(t, err)
		assert.True(t, r.Admitted)
		assert.Equal(t, []int{1, 1}, r.Failures, "the failure counted once on each counter")
	})

	t.Run("ReplayPastExpiry", func(t *testing.T) {
		// The first call's Finish round is lost; its charges expire. The
		// replay's reserve turns them into the failure they would have
		// been (the username's second: a block), and its Finish round is
		// lost too: the next replay must get the block back and count
		// nothing again.
		p := p
		p.PendingTimeout = 2 * time.Second
		lossy := func() *gate.RedisClusterStore {
			c := srv.Client()
			c.AddHook(dropHook{drop: func(args []any) bool { return redisArgv(args, 5) == "r0" }})
			return newClusterStore(t, c, prefix, p)
		}
		admin := newClusterStore(t, reader, prefix, p)
		user := "victim-" + redisStoreRandom()
		o := gate.Op{Token: "t" + redisStoreRandom(), Counters: []gate.Counter{
			{Kind: gate.KindIP, Subject: "192.0.2.34", Limit: 1000},
			{Kind: gate.KindUsername, Subject: user, Limit: 1}}}
		_, err := admin.Record(ctx, gate.Op{Token: "e" + redisStoreRandom(), Counters: o.Counters[1:]}, false)
		require.NoError(t, err, "the user's first failure")
		_, err = lossy().Record(ctx, o, false)
		require.Error(t, err)
		time.Sleep(p.PendingTimeout + 200*time.Millisecond)
		_, err = lossy().Record(ctx, o, false)
		require.Error(t, err, "the first replay's Finish round was lost too")

		again, err := admin.Record(ctx, o, false)
		require.NoError(t, err)
		assert.True(t, again.Admitted)
		require.Len(t, again.Transitions, 1, "the block the first replay made, replied")
		assert.Equal(t, gate.KindUsername, again.Transitions[0].Kind)
		assert.True(t, again.Transitions[0].Blocked)
		assert.Equal(t, []int{1, 2}, again.Failures, "the expired charge counted once")
		assert.Greater(t, markerTTL(t, o, 1), p.PendingTimeout, "the marker with the block lives as long as a Record's replay may come")
	})

	t.Run("RefusedReplayKeepsTheFirstCharge", func(t *testing.T) {
		o := op("192.0.2.32", "victim-"+redisStoreRandom())
		// The first call's reserve on the username's slot is lost, and so
		// is the release of its charge on the IP's.
		client := srv.Client()
		client.AddHook(dropHook{drop: func(args []any) bool {
			key, _ := args[3].(string)
			reserve := strings.Contains(key, ":failed:username:") && redisArgv(args, 5) == "0"
			release := args[2] == "2" || args[2] == int64(2) || args[2] == 2
			return reserve || release
		}})
		s := newClusterStore(t, client, prefix, p)
		_, err := s.Record(ctx, o, false)
		require.Error(t, err, "the reserve on the username was lost")
		require.True(t, pending(t, o, 0), "its charge on the IP was not released")
		_, err = admin.Block(ctx, gate.KindUsername, o.Counters[1].Subject, time.Hour)
		require.NoError(t, err)

		again, err := admin.Record(ctx, o, false)
		require.NoError(t, err)
		assert.False(t, again.Admitted, "the username is blocked")
		assert.True(t, pending(t, o, 0), "the first call's charge on the IP stays, to become its failure")
		assert.Equal(t, []int{0, 0}, again.Failures, "the replay counted nothing")
	})
}

// redisArgv returns ARGV[i] (1-based) of an EVAL or EVALSHA command's
// arguments, "" when it has none there.
func redisArgv(args []any, i int) string {
	if len(args) < 3 {
		return ""
	}
	name, _ := args[0].(string)
	if !strings.EqualFold(name, "evalsha") && !strings.EqualFold(name, "eval") {
		return ""
	}
	var numkeys int
	switch n := args[2].(type) {
	case int:
		numkeys = n
	case int64:
		numkeys = int(n)
	case string:
		numkeys, _ = strconv.Atoi(n)
	}
	if at := 2 + numkeys + i; at < len(args) {
		v, _ := args[at].(string)
		return v
	}
	return ""
}

// beforeHook runs do, once, just before the first pipeline holding a
// command whose arguments match.
type beforeHook struct {
	match func(args []any) bool
	do    func()
	done  *atomic.Bool
}

func (h beforeHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h beforeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h beforeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if h.match(c.Args()) && h.done.CompareAndSwap(false, true) {
				h.do()
				break
			}
		}
		return next(ctx, cmds)
	}
}

// dropHook fails, without sending it, every EVAL or EVALSHA for which
// drop returns true: a command lost on its way to Redis.
type dropHook struct{ drop func(args []any) bool }

var errDropped = errors.New("dropped by the test's hook")

func (h dropHook) dropped(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 4 {
		return false
	}
	name, _ := args[0].(string)
	if !strings.EqualFold(name, "evalsha") && !strings.EqualFold(name, "eval") || !h.drop(args) {
		return false
	}
	cmd.SetErr(errDropped)
	return true
}

func (h dropHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h dropHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.dropped(cmd) {
			return errDropped
		}
		return next(ctx, cmd)
	}
}

func (h dropHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		kept := cmds[:0:0]
		for _, cmd := range cmds {
			if !h.dropped(cmd) {
				kept = append(kept, cmd)
			}
		}
		if len(kept) == 0 {
			return errDropped
		}
		return next(ctx, kept)
	}
}
