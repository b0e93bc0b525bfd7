package gate_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/gate/storetest"
)

func redisStoreRandom() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redisStorePolicy(cool time.Duration) gate.Policy {
	return gate.Policy{
		AttemptCooloff:  time.Hour,
		LockoutCooloffs: []time.Duration{cool},
		LockoutMemory:   24 * time.Hour,
		PendingTimeout:  time.Hour,
	}
}

func redisStoreOp(cs ...gate.Counter) gate.Op {
	return gate.Op{Counters: cs, Token: redisStoreRandom()}
}

// realClock is the time of a Redis store: Redis's own, on which the
// storetest suite waits for real.
type realClock struct{}

func (realClock) Now() time.Time        { return time.Now() }
func (realClock) Sleep(d time.Duration) { time.Sleep(d) }

// TestRedisStoreConformance runs the Store suite against one redis-server
// shared by every subtest, all under the default prefix.
func TestRedisStoreConformance(t *testing.T) {
	srv := testenv.Redis(t)
	client := srv.Client()
	storetest.Run(t, func(t *testing.T, p gate.Policy) (gate.Store, storetest.Clock) {
		return gate.NewRedisStore(client, "defender", p), realClock{}
	})
}

// TestRedisStoreConformanceThroughSentinel runs the Store suite on a
// master found through Redis Sentinel, over the client OpenRedisStore
// opens for DEFENDER_REDIS_URL=redis+sentinel://... (go-redis' failover
// client), as RedisStores applying each subtest's policy.
func TestRedisStoreConformanceThroughSentinel(t *testing.T) {
	rs := testenv.RedisSentinelServer(t)
	cfg := gate.DefaultConfig()
	cfg.RedisURL = rs.URL
	store, closer, err := gate.OpenRedisStore(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = closer.Close() })
	require.IsType(t, &gate.RedisStore{}, store)
	assert.Equal(t, cfg.Policy(), store.Policy(), "the store applies the configuration's policy")
	client, ok := closer.(redis.UniversalClient)
	require.True(t, ok)
	storetest.Run(t, func(t *testing.T, p gate.Policy) (gate.Store, storetest.Clock) {
		return gate.NewRedisStore(client, "defender", p), realClock{}
	})
}

// TestRedisStoreOneEvalshaPerCall counts what the server runs: each Store
// method is one EVALSHA and nothing else.
func TestRedisStoreOneEvalshaPerCall(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	client, admin := srv.Client(), srv.Client()
	require.NoError(t, admin.Ping(ctx).Err())
	s := gate.NewRedisStore(client, "defender", redisStorePolicy(time.Minute))
	ip := gate.Counter{Kind: gate.KindIP, Subject: "192.0.2.1", Limit: 1}
	user := gate.Counter{Kind: gate.KindUsername, Subject: "alice", Limit: 1}
	o := redisStoreOp(ip, user)
	newToken := func(o gate.Op) gate.Op {
		o.Token = redisStoreRandom()
		return o
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Check", func() error { _, err := s.Check(ctx, o); return err }},
		{"Begin", func() error { _, err := s.Begin(ctx, o); return err }},
		{"Finish", func() error { _, err := s.Finish(ctx, o, false); return err }},
		// Each Record a new outcome: the token of one that blocked, again,
		// would be that outcome reported again.
		{"Record", func() error { _, err := s.Record(ctx, newToken(o), false); return err }},
		{"BeginRefused", func() error { _, err := s.Begin(ctx, o); return err }},
		{"RecordRefused", func() error { _, err := s.Record(ctx, newToken(o), false); return err }},
		{"Blocked", func() error { _, err := s.Blocked(ctx, gate.KindIP, 0); return err }},
		{"Unblock", func() error { _, err := s.Unblock(ctx, gate.KindIP, ip.Subject); return err }},
		{"Block", func() error { _, err := s.Block(ctx, gate.KindIP, ip.Subject, 0); return err }},
	}
	// Load every script and open the connection before counting.
	for _, c := range calls {
		require.NoError(t, c.call(), c.name)
	}
	_, err := s.Unblock(ctx, gate.KindIP, ip.Subject)
	require.NoError(t, err)
	_, err = s.Unblock(ctx, gate.KindUsername, user.Subject)
	require.NoError(t, err)
	mon := newRedisStoreMonitor(t, srv.Addr)
	for _, c := range calls {
		mon.wire(t, admin) // drain
		require.NoError(t, admin.ConfigResetStat(ctx).Err())
		require.NoError(t, c.call(), c.name)
		assert.Equal(t, []string{"evalsha"}, mon.wire(t, admin), "%s: one command on the wire", c.name)
		got, err := srv.CommandCalls(ctx, admin)
		require.NoError(t, err)
		// INFO commandstats also counts what the script itself runs (GET,
		// ZADD, ...); MONITOR above tells those apart.
		assert.Equal(t, 1, got["evalsha"], c.name)
		assert.Zero(t, got["eval"]+got["evalsha_ro"]+got["script|load"]+got["script|exists"], c.name)
	}
}

// redisStoreMonitor reads MONITOR on its own connection, to see which
// commands reach the server from clients, as opposed to from scripts.
type redisStoreMonitor struct {
	conn net.Conn
	r    *bufio.Reader
}

func newRedisStoreMonitor(t *testing.T, addr string) *redisStoreMonitor {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	m := &redisStoreMonitor{conn: conn, r: bufio.NewReader(conn)}
	_, err = conn.Write([]byte("MONITOR\r\n"))
	require.NoError(t, err)
	line, err := m.r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "+OK", strings.TrimSpace(line))
	return m
}

// wire returns the names of the commands clients sent since the last call,
// up to a marker that admin echoes (scripts' own commands left out).
func (m *redisStoreMonitor) wire(t *testing.T, admin *redis.Client) []string {
	t.Helper()
	marker := "monitor-marker-" + redisStoreRandom()
	require.NoError(t, admin.Echo(context.Background(), marker).Err())
	require.NoError(t, m.conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	var names []string
	for {
		line, err := m.r.ReadString('\n')
		require.NoError(t, err)
		if strings.Contains(line, marker) {
			return names
		}
		_, rest, ok := strings.Cut(line, "] ")
		if !ok || strings.Contains(line, " lua] ") || strings.Contains(line, "[0 lua]") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(rest, `"`), `"`)
		names = append(names, strings.ToLower(name))
	}
}

// TestRedisStoreScriptFlush: after SCRIPT FLUSH (a restart, a failover)
// every call still works, through EVAL, and EVALSHA works again after.
func TestRedisStoreScriptFlush(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	client := srv.Client()
	s := gate.NewRedisStore(client, "defender", redisStorePolicy(time.Minute))
	o := redisStoreOp(gate.Counter{Kind: gate.KindUsername, Subject: "bob", Limit: 3})
	// Begin far from the limit: its fast script alone (a last chance runs
	// a second one).
	wide := redisStoreOp(gate.Counter{Kind: gate.KindUsername, Subject: "carl", Limit: 1000})
	calls := map[string]func() error{
		"Check":   func() error { _, err := s.Check(ctx, o); return err },
		"Begin":   func() error { _, err := s.Begin(ctx, wide); return err },
		"Finish":  func() error { _, err := s.Finish(ctx, o, false); return err },
		"Record":  func() error { _, err := s.Record(ctx, o, false); return err },
		"Block":   func() error { _, err := s.Block(ctx, gate.KindIP, "192.0.2.9", time.Minute); return err },
		"Unblock": func() error { _, err := s.Unblock(ctx, gate.KindIP, "192.0.2.9"); return err },
		"Blocked": func() error { _, err := s.Blocked(ctx, gate.KindIP, 0); return err },
	}
	for round := 0; round < 2; round++ {
		for name, call := range calls {
			require.NoError(t, client.ScriptFlush(ctx).Err())
			require.NoError(t, call(), "%s after SCRIPT FLUSH", name)
			require.NoError(t, client.ConfigResetStat(ctx).Err())
			require.NoError(t, call(), name)
			got, err := srv.CommandCalls(ctx, client)
			require.NoError(t, err)
			assert.Equal(t, 1, got["evalsha"], "%s: the script is cached again", name)
			assert.Zero(t, got["eval"], name)
		}
	}
}

// TestRedisStoreTwoProcesses: two clients (two gate processes) racing on
// one subject admit Limit+1 attempts in all and report one transition.
func TestRedisStoreTwoProcesses(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	stores := []gate.Store{
		gate.NewRedisStore(srv.Client(), "defender", redisStorePolicy(time.Minute)),
		gate.NewRedisStore(srv.Client(), "defender", redisStorePolicy(time.Minute)),
	}
	user := gate.Counter{Kind: gate.KindUsername, Subject: "carol-" + redisStoreRandom(), Limit: 4}
	o := redisStoreOp(user)

	const n = 200
	var admitted, blocks, unblocks atomic.Int32
	var tokens sync.Map
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := o
			o.Token = redisStoreRandom()
			r, err := stores[i%2].Begin(ctx, o)
			if assert.NoError(t, err) && r.Admitted {
				admitted.Add(1)
				tokens.Store(o.Token, i%2)
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, user.Limit+1, admitted.Load())

	tokens.Range(func(tok, i any) bool {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := o
			o.Token = tok.(string)
			r, err := stores[1-i.(int)].Finish(ctx, o, false) // settled by the other process
			if assert.NoError(t, err) {
				for _, tr := range r.Transitions {
					if tr.Blocked {
						blocks.Add(1)
					}
				}
			}
		}()
		return true
	})
	wg.Wait()
	assert.EqualValues(t, 1, blocks.Load(), "one block in all")

	// Successes of attempts admitted before an admin's block, each one
	// reported on both processes at once: one unblock in all.
	o = redisStoreOp(gate.Counter{Kind: gate.KindUsername, Subject: "carol-" + redisStoreRandom(), Limit: 4})
	var admittedOps []gate.Op
	for range 5 {
		a := o
		a.Token = redisStoreRandom()
		r, err := stores[0].Begin(ctx, a)
		require.NoError(t, err)
		require.True(t, r.Admitted)
		admittedOps = append(admittedOps, a)
	}
	_, err := stores[1].Block(ctx, gate.KindUsername, o.Counters[0].Subject, time.Hour)
	require.NoError(t, err)
	var named sync.Map // of the unblocks: one per token and At, as the gate names their events
	for i := 0; i < 2*len(admittedOps); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := stores[i%2].Finish(ctx, admittedOps[i/2], true)
			if assert.NoError(t, err) {
				for _, tr := range r.Transitions {
					if !tr.Blocked {
						unblocks.Add(1)
						named.Store(admittedOps[i/2].Token+tr.At.String(), true)
					}
				}
			}
		}()
	}
	wg.Wait()
	lifted := 0
	named.Range(func(any, any) bool { lifted++; return true })
	assert.Equal(t, 1, lifted, "one unblock in all")
	// The success that lifted it, reported on the other process too,
	// replies it again there (the same token and At: one event).
	assert.LessOrEqual(t, unblocks.Load(), int32(2))
}

// TestRedisStoreKeys checks the keys an operator's scripts rely on.
func TestRedisStoreKeys(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	rdb := srv.Client()
	p := redisStorePolicy(5 * time.Minute)
	p.AttemptCooloff = 2 * time.Minute
	s := gate.NewRedisStore(rdb, "defender", p)
	ip := gate.Counter{Kind: gate.KindIP, Subject: "203.0.113.7", Limit: 1}
	user := gate.Counter{Kind: gate.KindUsername, Subject: "dave", Limit: 3}
	o := redisStoreOp(ip, user)

	ttl := func(key string) time.Duration {
		d, err := rdb.PTTL(ctx, key).Result()
		require.NoError(t, err)
		return d
	}
	r, err := s.Record(ctx, o, false)
	require.NoError(t, err)
	require.Empty(t, r.Blocked)
	assert.Equal(t, "1", rdb.Get(ctx, "defender:failed:ip:203.0.113.7").Val())
	assert.Equal(t, "1", rdb.Get(ctx, "defender:failed:username:dave").Val())
	assert.InDelta(t, float64(2*time.Minute), float64(ttl("defender:failed:username:dave")), float64(5*time.Second),
		"attempt cool-off as TTL")
	assert.Zero(t, rdb.Exists(ctx, "defender:blocked:ip:203.0.113.7").Val())

	r, err = s.Record(ctx, o, false)
	require.NoError(t, err)
	require.Len(t, r.Blocked, 1)
	assert.Equal(t, "blocked", rdb.Get(ctx, "defender:blocked:ip:203.0.113.7").Val())
	assert.InDelta(t, float64(5*time.Minute), float64(ttl("defender:blocked:ip:203.0.113.7")), float64(5*time.Second),
		"lockout cool-off as TTL")
	assert.Equal(t, "2", rdb.Get(ctx, "defender:failed:ip:203.0.113.7").Val())

	// An operator's DEL of the block key unblocks, and Blocked agrees.
	require.NoError(t, rdb.Del(ctx, "defender:blocked:ip:203.0.113.7").Err())
	r, err = s.Check(ctx, o)
	require.NoError(t, err)
	assert.Empty(t, r.Blocked)
	list, err := s.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	assert.Empty(t, list)
	assert.Zero(t, rdb.ZCard(ctx, "defender:index:blocked:ip").Val(), "the stale entry was pruned")

	// An attempt admitted now, before the operator's block below (the IP
	// is over its limit but unblocked: one attempt at a time).
	admitted := o
	admitted.Token = "admitted-before-the-block"
	r, err = s.Begin(ctx, admitted)
	require.NoError(t, err)
	require.True(t, r.Admitted)

	// An operator's own block key is honoured.
	require.NoError(t, rdb.Set(ctx, "defender:blocked:username:dave", "blocked", 0).Err())
	r, err = s.Begin(ctx, o)
	require.NoError(t, err)
	assert.False(t, r.Admitted)
	assert.Equal(t, []gate.BlockState{{Kind: gate.KindUsername, Subject: "dave", Permanent: true}}, r.Blocked)

	// The success of the attempt admitted before deletes counters and blocks.
	_, err = s.Finish(ctx, admitted, true)
	require.NoError(t, err)
	for _, k := range []string{"failed:ip:203.0.113.7", "failed:username:dave", "blocked:ip:203.0.113.7", "blocked:username:dave"} {
		assert.Zero(t, rdb.Exists(ctx, "defender:"+k).Val(), k)
	}

	// Permanent blocks have no TTL; pairs have their own keys.
	_, err = s.Block(ctx, gate.KindUsername, "dave", 0)
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-1), ttl("defender:blocked:username:dave"))
	pair := gate.Counter{Kind: gate.KindPair, Subject: gate.PairSubject("203.0.113.7", "dave"), Limit: 0}
	_, err = s.Record(ctx, redisStoreOp(pair), false)
	require.NoError(t, err)
	assert.Equal(t, "1", rdb.Get(ctx, "defender:failed:pair:203.0.113.7|dave").Val())
	assert.Equal(t, "blocked", rdb.Get(ctx, "defender:blocked:pair:203.0.113.7|dave").Val())

	// Unblock leaves nothing of the subject behind.
	_, err = s.Unblock(ctx, gate.KindPair, pair.Subject)
	require.NoError(t, err)
	keys, err := rdb.Keys(ctx, "defender:*pair*").Result()
	require.NoError(t, err)
	assert.Empty(t, keys)
	assert.Zero(t, rdb.ZCard(ctx, "defender:index:blocked:pair").Val())
}

// TestRedisStoreBlockedIndexNotStale: Blocked never shows a block that has
// ended or whose key is gone, and it prunes them from its index.
func TestRedisStoreBlockedIndexNotStale(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	rdb := srv.Client()
	s := gate.NewRedisStore(rdb, "defender", redisStorePolicy(time.Minute))
	const n = 300 // more than one batch of the script
	block := func(from int, d time.Duration) {
		for i := from; i < n; i += 3 {
			_, err := s.Block(ctx, gate.KindUsername, fmt.Sprintf("u%03d", i), d)
			require.NoError(t, err)
		}
	}
	block(1, time.Hour)
	block(2, time.Hour)
	for i := 1; i < n; i += 3 { // an operator deletes some keys
		require.NoError(t, rdb.Del(ctx, fmt.Sprintf("defender:blocked:username:u%03d", i)).Err())
	}
	// The short blocks last, and long enough to be listed first on a
	// loaded machine (-race): with 200 ms made first, some had ended
	// before the listing.
	const short = 2 * time.Second
	block(0, short)
	shortDone := time.Now()
	list, err := s.Blocked(ctx, gate.KindUsername, 0)
	require.NoError(t, err)
	assert.Len(t, list, 2*n/3, "deleted keys are not listed")
	for _, b := range list {
		var i int
		_, err := fmt.Sscanf(b.Subject, "u%03d", &i)
		require.NoError(t, err)
		assert.NotEqual(t, 1, i%3, b.Subject)
	}
	time.Sleep(time.Until(shortDone.Add(short + 300*time.Millisecond)))
	list, err = s.Blocked(ctx, gate.KindUsername, 50)
	require.NoError(t, err)
	assert.Len(t, list, 50)
	for _, b := range list {
		assert.Greater(t, b.TTL, 30*time.Minute, "only live blocks: %s", b.Subject)
	}
	list, err = s.Blocked(ctx, gate.KindUsername, 0)
	require.NoError(t, err)
	assert.Len(t, list, n/3)
	assert.EqualValues(t, n/3, rdb.ZCard(ctx, "defender:index:blocked:username").Val(), "the index holds live blocks only")
}

// TestRedisStoreErrors: an unreachable server is ErrStoreUnavailable; a
// key of the wrong type is an error but not that one.
func TestRedisStoreErrors(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	rdb := srv.Client()
	s := gate.NewRedisStore(rdb, "defender", redisStorePolicy(time.Minute))
	require.NoError(t, rdb.HSet(ctx, "defender:failed:username:erin", "x", "y").Err())
	o := redisStoreOp(gate.Counter{Kind: gate.KindUsername, Subject: "erin", Limit: 3})
	_, err := s.Record(ctx, o, false)
	require.Error(t, err)
	assert.NotErrorIs(t, err, gate.ErrStoreUnavailable)
	_, err = gate.NewRedisStore(rdb, "defender", gate.Policy{LockoutCooloffs: []time.Duration{-time.Second}}).Begin(ctx, o)
	assert.ErrorContains(t, err, "redis begin: negative lockout cool-off", "the error names the store and the call")

	down := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer down.Close()
	srv.Kill()
	_, err = gate.NewRedisStore(down, "defender", redisStorePolicy(time.Minute)).Check(ctx, o)
	require.Error(t, err)
	assert.ErrorIs(t, err, gate.ErrStoreUnavailable)
	_, err = gate.NewRedisStore(down, "defender", redisStorePolicy(time.Minute)).Blocked(ctx, gate.KindIP, 0)
	assert.ErrorIs(t, err, gate.ErrStoreUnavailable)
}

// BenchmarkRedisStore measures each call against a PING to the same
// server measured in the same run: x-ping is the cost in Redis round trips.
// Every op has two counters (IP and username), like a login.
func BenchmarkRedisStore(b *testing.B) {
	ctx := context.Background()
	srv := testenv.Redis(b)
	rdb := srv.Client()
	s := gate.NewRedisStore(rdb, "bench", redisStorePolicy(time.Minute))
	const subjects = 1024
	ops := make([]gate.Op, subjects)
	for i := range ops {
		ops[i] = gate.Op{Counters: []gate.Counter{
			{Kind: gate.KindIP, Subject: fmt.Sprintf("198.51.100.%d", i), Limit: 1 << 30},
			{Kind: gate.KindUsername, Subject: fmt.Sprintf("user%d", i), Limit: 1 << 30},
		}}
	}
	// PINGs are interleaved with the measured calls (with the timer
	// stopped), so both see the same load on the machine.
	const pingEvery, pingBatch = 32, 4
	run := func(name string, setup func(b *testing.B), call func(i int) error) {
		b.Run(name, func(b *testing.B) {
			if setup != nil {
				setup(b)
			}
			var pingTime time.Duration
			var pings int
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%pingEvery == 0 {
					b.StopTimer()
					start := time.Now()
					for j := 0; j < pingBatch; j++ {
						if err := rdb.Ping(ctx).Err(); err != nil {
							b.Fatal(err)
						}
					}
					pingTime += time.Since(start)
					pings += pingBatch
					b.StartTimer()
				}
				if err := call(i); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			perOp := float64(b.Elapsed()) / float64(b.N)
			b.ReportMetric(perOp/(float64(pingTime)/float64(pings)), "x-ping")
		})
	}
	if err := rdb.Ping(ctx).Err(); err != nil { // open the connection
		b.Fatal(err)
	}
	run("PING", nil, func(int) error { return rdb.Ping(ctx).Err() })
	run("Check", nil, func(i int) error { _, err := s.Check(ctx, ops[i%subjects]); return err })
	run("Begin", nil, func(i int) error {
		o := ops[i%subjects]
		o.Token = strconvItoa(i)
		_, err := s.Begin(ctx, o)
		return err
	})
	var begun []gate.Op
	run("Finish", func(b *testing.B) {
		require.NoError(b, rdb.FlushAll(ctx).Err())
		begun = make([]gate.Op, b.N)
		for i := range begun {
			o := ops[i%subjects]
			o.Token = strconvItoa(i)
			if _, err := s.Begin(ctx, o); err != nil {
				b.Fatal(err)
			}
			begun[i] = o
		}
	}, func(i int) error {
		_, err := s.Finish(ctx, begun[i], i%2 == 0)
		return err
	})
	run("Record", nil, func(i int) error { _, err := s.Record(ctx, ops[i%subjects], i%2 == 0); return err })
}

func strconvItoa(i int) string { return fmt.Sprintf("tok-%d", i) }
