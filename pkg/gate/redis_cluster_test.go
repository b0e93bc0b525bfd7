package gate_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/gate/storetest"
)

func newClusterStore(t testing.TB, client gate.RedisClusterClient, prefix string, p gate.Policy) *gate.RedisClusterStore {
	t.Helper()
	s, err := gate.NewRedisClusterStore(client, prefix, p, gate.WithRedisClusterLogger(quiet))
	require.NoError(t, err)
	return s
}

// TestRedisClusterStore runs, on one local cluster of 3 masters and 3
// replicas (started once: it takes seconds), the Store suite (every
// subtest with its own client) and the cluster-specific tests.
func TestRedisClusterStore(t *testing.T) {
	c := testenv.RedisCluster(t)
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, p gate.Policy) (gate.Store, storetest.Clock) {
			return newClusterStore(t, c.Client(), "defender", p), realClock{}
		})
	})
	t.Run("Keys", func(t *testing.T) { testRedisClusterKeys(t, c) })
	t.Run("BoundedGuesses", func(t *testing.T) { testRedisClusterBoundedGuesses(t, c) })
	t.Run("OpenRedisStore", func(t *testing.T) { testOpenRedisStoreCluster(t, c) })
	t.Run("ReplayKeepsNewerIndex", func(t *testing.T) { testRedisClusterReplayKeepsNewerIndex(t, c) })
	t.Run("BlockDuringUnindex", func(t *testing.T) { testRedisClusterBlockDuringUnindex(t, c) })
}

// testRedisClusterReplayKeepsNewerIndex: a block's transition replayed
// late (its Record reported again) does not lower the index entry of a
// newer, longer block of the same subject: the admin's list would drop
// that block a minute after the replayed one's end while it still holds.
func testRedisClusterReplayKeepsNewerIndex(t *testing.T, c *testenv.RedisClusterServer) {
	client := c.Client()
	s := newClusterStore(t, client, "replayidx", redisStorePolicy(time.Minute))
	subject := "198.51.100.77"
	op := redisStoreOp(gate.Counter{Kind: gate.KindIP, Subject: subject, Limit: 0})
	first, err := s.Record(ctx, op, false)
	require.NoError(t, err)
	require.Len(t, first.Transitions, 1, "the failure blocks for a minute")

	// An operator lifts it and blocks the address for a day.
	_, err = s.Unblock(ctx, gate.KindIP, subject)
	require.NoError(t, err)
	_, err = s.Block(ctx, gate.KindIP, subject, 24*time.Hour)
	require.NoError(t, err)
	dayEnd := float64(time.Now().Add(23 * time.Hour).UnixMilli())
	score := func() float64 {
		v, err := client.ZScore(ctx, "replayidx:index:blocked:ip", subject).Result()
		require.NoError(t, err)
		return v
	}
	require.Greater(t, score(), dayEnd)

	// The first Record reported again: its minute's block comes back.
	again, err := s.Record(ctx, op, false)
	require.NoError(t, err)
	require.Equal(t, first.Transitions, again.Transitions, "the replay gets the first report's block")
	assert.Greater(t, score(), dayEnd, "the day's block keeps its end in the index")
	list, err := s.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Greater(t, list[0].TTL, 23*time.Hour)
}

// testRedisClusterBlockDuringUnindex: Blocked finds an entry stale (its
// block lifted, the entry of a day's block left behind) and drops it
// only if its score has not changed since; a shorter block of the same
// subject set in between must change it, or the new block goes unlisted
// for good (a review found that with index scores that only rose).
func testRedisClusterBlockDuringUnindex(t *testing.T, c *testenv.RedisClusterServer) {
	const prefix = "unidx"
	subject := "198.51.100.78"
	blocker := newClusterStore(t, c.Client(), prefix, redisStorePolicy(time.Minute))
	_, err := blocker.Block(ctx, gate.KindIP, subject, 24*time.Hour)
	require.NoError(t, err)
	_, err = blocker.Unblock(ctx, gate.KindIP, subject)
	require.NoError(t, err)

	// The lister's client sets the hour's block just before Blocked's
	// compare-and-delete of the stale entry (its arguments: the subject,
	// then the score it found).
	client := c.Client()
	var fired atomic.Bool
	client.AddHook(unindexHook{before: func(cmd redis.Cmder) {
		args := cmd.Args()
		if len(args) == 6 && args[3] == prefix+":index:blocked:ip" && args[4] == subject && fired.CompareAndSwap(false, true) {
			_, err := blocker.Block(ctx, gate.KindIP, subject, time.Hour)
			assert.NoError(t, err)
		}
	}})
	lister := newClusterStore(t, client, prefix, redisStorePolicy(time.Minute))
	_, err = lister.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	require.True(t, fired.Load(), "Blocked dropped the stale entry through its compare-and-delete")
	list, err := lister.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	require.Len(t, list, 1, "the hour's block is listed")
	assert.Greater(t, list[0].TTL, 59*time.Minute)
}

// unindexHook calls before with each command a client sends alone.
type unindexHook struct{ before func(redis.Cmder) }

func (h unindexHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h unindexHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.before(cmd)
		return next(ctx, cmd)
	}
}

func (h unindexHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestRedisClusterStoreOnSingleRedis: the store also serves a single Redis
// (a plain or Sentinel client), where all slots are one server.
func TestRedisClusterStoreOnSingleRedis(t *testing.T) {
	srv := testenv.Redis(t)
	client := srv.Client()
	storetest.Run(t, func(t *testing.T, p gate.Policy) (gate.Store, storetest.Clock) {
		return newClusterStore(t, client, "defender", p), realClock{}
	})
}

// testRedisClusterKeys: the keys are DESIGN.md's with the subject as
// hash tag, one subject's keys share a slot, and subjects spread over all
// masters.
func testRedisClusterKeys(t *testing.T, c *testenv.RedisClusterServer) {
	client := c.Client()
	s := newClusterStore(t, client, "defender", redisStorePolicy(time.Minute))

	r, err := s.Record(ctx, redisStoreOp(gate.Counter{Kind: gate.KindIP, Subject: "192.0.2.7", Limit: 0}), false)
	require.NoError(t, err)
	require.Len(t, r.Blocked, 1)
	for _, key := range []string{"defender:failed:ip:{192.0.2.7}", "defender:blocked:ip:{192.0.2.7}"} {
		n, err := client.Exists(ctx, key).Result()
		require.NoError(t, err)
		assert.EqualValues(t, 1, n, key)
	}

	masters := map[string]bool{}
	for i := 0; i < 60; i++ {
		user := fmt.Sprintf("spread-%d", i)
		_, err := s.Record(ctx, redisStoreOp(gate.Counter{Kind: gate.KindUsername, Subject: user, Limit: 5}), false)
		require.NoError(t, err)
		m, err := c.Master(ctx, "defender:failed:username:{"+user+"}")
		require.NoError(t, err)
		masters[m.Addr] = true
	}
	assert.Len(t, masters, 3, "60 subjects use every master")

	// A subject opening with '}' would make an empty hash tag: its keys
	// still share a slot (or the scripts would fail with CROSSSLOT).
	for _, user := range []string{"}x", "}", "}{a}", "{}", "a{b}c"} {
		o := redisStoreOp(gate.Counter{Kind: gate.KindUsername, Subject: user, Limit: 0},
			gate.Counter{Kind: gate.KindIP, Subject: "192.0.2.8", Limit: 100})
		o2, r := o, gate.Result{}
		r, err = s.Begin(ctx, o)
		require.NoError(t, err, "%q", user)
		require.True(t, r.Admitted, "%q", user)
		r, err = s.Finish(ctx, o2, false)
		require.NoError(t, err, "%q", user)
		assert.Len(t, r.Blocked, 1, "%q", user)
		list, err := s.Blocked(ctx, gate.KindUsername, 0)
		require.NoError(t, err)
		assert.Contains(t, subjects(list), user)
	}
}

func subjects(bs []gate.BlockState) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Subject
	}
	return out
}

// testRedisClusterBoundedGuesses: hundreds of concurrent Begins
// through several gate processes (each its own client and store), with IP
// and username counters on different slots: no IP and no username is ever
// admitted more than Limit+1 times, and failing them all blocks every
// subject exactly once.
func testRedisClusterBoundedGuesses(t *testing.T, c *testenv.RedisClusterServer) {
	const gates, ipLimit, userLimit = 4, 5, 3
	stores := make([]*gate.RedisClusterStore, gates)
	for i := range stores {
		stores[i] = newClusterStore(t, c.Client(), "bound", redisStorePolicy(time.Minute))
	}
	base := redisStoreRandom()
	ips := make([]string, 12)
	users := make([]string, 12)
	for i := range ips {
		ips[i] = fmt.Sprintf("198.51.%d.%d", i, len(base))
		users[i] = fmt.Sprintf("victim-%s-%d", base, i)
	}
	// Every (ip, user) pair, 3 times: 432 attempts on 12 IPs and 12 users.
	type attemptOp struct {
		op       gate.Op
		ip, user int
	}
	var all []attemptOp
	for k := 0; k < 3; k++ {
		for i := range ips {
			for j := range users {
				all = append(all, attemptOp{ip: i, user: j, op: redisStoreOp(gate.Counter{Kind: gate.KindIP, Subject: ips[i], Limit: ipLimit},
					gate.Counter{Kind: gate.KindUsername, Subject: users[j], Limit: userLimit})})
			}
		}
	}
	var mu sync.Mutex
	perIP, perUser := map[int]int{}, map[int]int{}
	var admitted []attemptOp
	var wg sync.WaitGroup
	for n, a := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := stores[n%gates].Begin(ctx, a.op)
			if !assert.NoError(t, err) || !r.Admitted {
				return
			}
			mu.Lock()
			perIP[a.ip]++
			perUser[a.user]++
			admitted = append(admitted, a)
			mu.Unlock()
		}()
	}
	wg.Wait()
	require.NotEmpty(t, admitted)
	for i, n := range perIP {
		assert.LessOrEqual(t, n, ipLimit+1, "IP %s admitted %d times", ips[i], n)
	}
	for j, n := range perUser {
		assert.LessOrEqual(t, n, userLimit+1, "user %s admitted %d times", users[j], n)
	}
	// The refused attempts released their charges: what is charged (counted
	// at Begin, or pending) is exactly what was admitted.
	for j := range users {
		n, err := c.Client().ZCard(ctx, "bound:pending:username:{"+users[j]+"}").Result()
		require.NoError(t, err)
		f, err := c.Client().Get(ctx, "bound:failed:username:{"+users[j]+"}").Int64()
		if !errors.Is(err, redis.Nil) {
			require.NoError(t, err)
		}
		assert.EqualValues(t, perUser[j], n+f, "charges of %s", users[j])
	}

	// Fail every admitted attempt, concurrently: each subject that reaches
	// its limit is blocked once, and nothing is admitted after.
	var blocks atomic.Int32
	for n, a := range admitted {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := stores[n%gates].Finish(ctx, a.op, false)
			if assert.NoError(t, err) {
				for _, tr := range r.Transitions {
					if tr.Blocked {
						blocks.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	want := 0
	for _, n := range perIP {
		if n > ipLimit {
			want++
		}
	}
	for _, n := range perUser {
		if n > userLimit {
			want++
		}
	}
	assert.EqualValues(t, want, blocks.Load(), "one block per subject over its limit")
	listed := 0
	for _, k := range []gate.Kind{gate.KindIP, gate.KindUsername} {
		list, err := stores[0].Blocked(ctx, k, 0)
		require.NoError(t, err)
		listed += len(list)
	}
	assert.Equal(t, want, listed, "every block listed once, from every master")
}

// TestRedisClusterFailover kills the master holding a blocked username
// while two gates (fail modes local and closed) answer a stream of logins:
// every login is answered, by the store or by the fail mode, the blocked
// victim is never let through (the local limiter knows its block), the
// block survives on the promoted replica, and new blocks work on it.
func TestRedisClusterFailover(t *testing.T) {
	redis.SetLogger(&logging.VoidLogger{}) // dial errors are expected here
	c := testenv.RedisCluster(t)
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:       c.Addrs(),
		DialTimeout: 100 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
		MaxRedirects: 2, DialerRetries: 1,
	})
	defer client.Close()
	store := newClusterStore(t, client, "fo", gate.DefaultConfig().Policy())
	gates := map[gate.FailMode]*gate.Gate{}
	for _, mode := range []gate.FailMode{gate.FailLocal, gate.FailClosed} {
		cfg := gate.DefaultConfig()
		cfg.FailMode = mode
		cfg.StoreTimeout = 300 * time.Millisecond
		g, err := gate.New(cfg, store, gate.WithLogger(quiet))
		require.NoError(t, err)
		defer g.Close(ctx)
		gates[mode] = g
	}
	local, closed := gates[gate.FailLocal], gates[gate.FailClosed]

	victim, ip := fresh()
	for i := 0; i < 4; i++ {
		local.Record(ctx, attempt(ip, victim), false)
	}
	d := local.Check(ctx, attempt("192.0.2.99", victim))
	require.NoError(t, d.Err)
	require.False(t, d.Allowed, "the victim is blocked before the crash")
	master, err := c.Master(ctx, "fo:blocked:username:{"+victim+"}")
	require.NoError(t, err)
	mc := master.Client()
	require.NoError(t, mc.Do(ctx, "WAIT", 1, 2000).Err(), "the block reached the replica")
	mc.Close()

	// The stream: logins for the victim and for other users, until stopped.
	type tally struct{ answered, degraded, unavailable, victimAllowed atomic.Int64 }
	var counts tally
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mode := gate.FailLocal
				if (w+i)%2 == 1 {
					mode = gate.FailClosed
				}
				user, ip := fresh()
				if i%2 == 0 {
					user = victim
				}
				tk, d := gates[mode].Begin(ctx, attempt(ip, user))
				counts.answered.Add(1)
				switch {
				case d.Err != nil && mode == gate.FailLocal:
					assert.True(t, d.Degraded, "the local limiter decides")
					counts.degraded.Add(1)
				case d.Err != nil:
					assert.True(t, !d.Allowed && d.Unavailable, "fail closed refuses")
					counts.unavailable.Add(1)
				}
				if user == victim && d.Allowed {
					counts.victimAllowed.Add(1)
				}
				if tk != nil {
					// A success would lift the victim's block: only the
					// others log in.
					tk.Finish(ctx, user != victim)
				}
			}
		}()
	}
	// Let the stream run, crash the victim's master, wait for the replica
	// to take over, and let the stream run on.
	require.Eventually(t, func() bool { return counts.answered.Load() > 100 }, 10*time.Second, 10*time.Millisecond)
	master.Kill()
	require.NoError(t, c.WaitHealthy(30*time.Second), "the replica was promoted")
	require.Eventually(t, func() bool { return local.Check(ctx, attempt("192.0.2.99", victim)).Err == nil },
		10*time.Second, 20*time.Millisecond, "the gate reaches the new master")
	after := counts.answered.Load()
	require.Eventually(t, func() bool { return counts.answered.Load() > after+100 }, 10*time.Second, 10*time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("answered %d logins: %d degraded (local), %d unavailable (closed)",
		counts.answered.Load(), counts.degraded.Load(), counts.unavailable.Load())

	assert.Zero(t, counts.victimAllowed.Load(), "the blocked victim was never let through, by the store or by the local limiter")
	assert.Positive(t, counts.degraded.Load()+counts.unavailable.Load(), "the crash was seen by the gates")
	// The checks below wait for the store's own answers: on a machine
	// loaded by -race a call may still miss the 300 ms deadline just after
	// the failover (the fail mode answers it then), so they retry.
	storeAnswer := func(f func() gate.Decision) gate.Decision {
		var d gate.Decision
		require.Eventually(t, func() bool { d = f(); return d.Err == nil }, 10*time.Second, 20*time.Millisecond)
		return d
	}
	d = storeAnswer(func() gate.Decision { return closed.Check(ctx, attempt("192.0.2.99", victim)) })
	assert.False(t, d.Allowed, "the block survived on the promoted replica")
	// Protection goes on on the new master: a user of the failed-over
	// slot is blocked by its failures.
	user := victim + "-x"
	for i := 0; ; i++ {
		m, err := c.Master(ctx, "fo:failed:username:{"+user+"}")
		require.NoError(t, err)
		mv, err := c.Master(ctx, "fo:failed:username:{"+victim+"}")
		require.NoError(t, err)
		if m == mv {
			break
		}
		user = fmt.Sprintf("%s-%d", victim, i)
	}
	ip = "192.0.2.100"
	for i := 0; i < 4; i++ {
		d = storeAnswer(func() gate.Decision { return closed.Record(ctx, attempt(ip, user), false) })
	}
	assert.False(t, d.Allowed, "a new block on the promoted replica")
	list, err := store.Blocked(ctx, gate.KindUsername, 0)
	require.NoError(t, err)
	assert.Subset(t, subjects(list), []string{victim, user})
}
