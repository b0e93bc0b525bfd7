package gate_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/gate/storetest"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Sleep is Advance: the storetest suite's waits take no time.
func (c *fakeClock) Sleep(d time.Duration) { c.Advance(d) }

func testPolicy() gate.Policy {
	return gate.Policy{
		AttemptCooloff:  5 * time.Minute,
		LockoutCooloffs: []time.Duration{5 * time.Minute},
		LockoutMemory:   24 * time.Hour,
		PendingTimeout:  30 * time.Second,
	}
}

// newMemory returns a store on a fake clock, closed at the end of the
// test, applying testPolicy unless opts sets a policy.
func newMemory(t testing.TB, opts gate.MemoryOptions) (*gate.MemoryStore, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	if opts.Clock == nil {
		opts.Clock = clock.Now
	}
	if p := opts.Policy; p.AttemptCooloff == 0 && p.LockoutCooloffs == nil && p.LockoutMemory == 0 && p.PendingTimeout == 0 {
		opts.Policy = testPolicy()
	}
	s := gate.NewMemoryStore(opts)
	t.Cleanup(func() { _ = s.Close() })
	return s, clock
}

func ipOp(ip string, limit int, token string) gate.Op {
	return gate.Op{Counters: []gate.Counter{{Kind: gate.KindIP, Subject: ip, Limit: limit}}, Token: token}
}

// TestMemoryConformance runs the Store conformance suite, with every
// counter in one shard (an op locks one shard) and spread over many, each
// store on a fake clock: the suite's waits take no time. The contract is
// tested there, for every store; the tests below are the memory store's
// own (exact times on a fake clock, its bounds, its sweeper).
func TestMemoryConformance(t *testing.T) {
	for _, shards := range []int{1, 64} {
		t.Run("shards="+strconv.Itoa(shards), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, p gate.Policy) (gate.Store, storetest.Clock) {
				return newMemory(t, gate.MemoryOptions{Policy: p, Shards: shards, SweepInterval: 10 * time.Millisecond})
			})
		})
	}
}

// TestMemoryPendingTimeoutBoundary: a charge exactly PendingTimeout old
// is still pending, and becomes a failure the moment after, which only a
// fake clock can tell (storetest tests the expiry on real time too).
func TestMemoryPendingTimeoutBoundary(t *testing.T) {
	ctx := context.Background()
	s, clock := newMemory(t, gate.MemoryOptions{})
	op := func(token string) gate.Op { return ipOp("192.0.2.13", 0, token) }
	res, err := s.Begin(ctx, op("a"))
	require.NoError(t, err)
	require.True(t, res.LastChance)

	clock.Advance(30 * time.Second)
	res, err = s.Begin(ctx, op("x"))
	require.NoError(t, err)
	assert.Equal(t, []gate.Kind{gate.KindIP}, res.Saturated, "exactly PendingTimeout old: still pending")
	assert.Empty(t, res.Transitions)

	clock.Advance(time.Nanosecond)
	res, err = s.Begin(ctx, op("y"))
	require.NoError(t, err)
	assert.False(t, res.Admitted)
	assert.Equal(t, []int{1}, res.Failures)
	require.Len(t, res.Transitions, 1, "older: a failure, which blocks")
}

// TestMemoryBlockedOrder: Blocked lists the blocks that end first first
// and permanent ones last (as the Redis stores do; the Store contract
// leaves the order open), with their exact time left.
func TestMemoryBlockedOrder(t *testing.T) {
	ctx := context.Background()
	s, clock := newMemory(t, gate.MemoryOptions{})
	for _, b := range []struct {
		subject string
		d       time.Duration
	}{{"mallory", time.Hour}, {"mallory", 2 * time.Hour}, {"eve", 0}, {"trudy", 3 * time.Hour}} {
		_, err := s.Block(ctx, gate.KindUsername, b.subject, b.d)
		require.NoError(t, err)
	}
	_, err := s.Block(ctx, gate.KindIP, "192.0.2.30", time.Minute)
	require.NoError(t, err)

	clock.Advance(time.Hour)
	blocked, err := s.Blocked(ctx, gate.KindUsername, 0)
	require.NoError(t, err)
	assert.Equal(t, []gate.BlockState{
		{Kind: gate.KindUsername, Subject: "mallory", TTL: time.Hour}, // replaced by the 2 h block
		{Kind: gate.KindUsername, Subject: "trudy", TTL: 2 * time.Hour},
		{Kind: gate.KindUsername, Subject: "eve", Permanent: true},
	}, blocked)
	blocked, err = s.Blocked(ctx, gate.KindUsername, 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"mallory", "trudy"}, []string{blocked[0].Subject, blocked[1].Subject}, "the first ones")
	blocked, err = s.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	assert.Empty(t, blocked, "the IP block expired")
}

// TestMemoryErrorsNameTheStore: the memory store's errors say whose they
// are (storetest checks that every store refuses invalid ops).
func TestMemoryErrorsNameTheStore(t *testing.T) {
	s, _ := newMemory(t, gate.MemoryOptions{})
	_, err := s.Check(context.Background(), gate.Op{Counters: []gate.Counter{{Kind: gate.KindIP}}})
	assert.ErrorContains(t, err, "gate: memory store: empty ip subject")
}

func TestMemoryEntriesRemovedWhenEmptyOrExpired(t *testing.T) {
	ctx := context.Background()
	s, clock := newMemory(t, gate.MemoryOptions{SweepInterval: time.Millisecond})

	// A success leaves nothing behind.
	op := ipOp("192.0.2.40", 3, "t")
	_, err := s.Begin(ctx, op)
	require.NoError(t, err)
	assert.Equal(t, 1, s.Stats().Entries)
	_, err = s.Finish(ctx, op, true)
	require.NoError(t, err)
	assert.Equal(t, 0, s.Stats().Entries)

	// Expired counters and blocks are swept without being touched.
	const n = 500
	for i := range n {
		_, err = s.Record(ctx, ipOp("10.0.0."+strconv.Itoa(i), 0, ""), false) // blocks
		require.NoError(t, err)
		_, err = s.Record(ctx, ipOp("10.1.0."+strconv.Itoa(i), 5, ""), false) // counts
		require.NoError(t, err)
	}
	require.Equal(t, 2*n, s.Stats().Entries)
	clock.Advance(5 * time.Minute)
	// Blocks are gone, counters too; what remains is lockout history (24 h).
	require.Eventually(t, func() bool { return s.Stats().Entries == n }, 10*time.Second, time.Millisecond)
	blocked, err := s.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	assert.Empty(t, blocked)
	clock.Advance(24 * time.Hour)
	require.Eventually(t, func() bool { return s.Stats().Entries == 0 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, uint64(2*n), s.Stats().Expired)
	assert.Zero(t, s.Stats().Evictions)
}

func TestMemoryBoundedUnderFlood(t *testing.T) {
	ctx := context.Background()
	const maxEntries = 1000
	s, clock := newMemory(t, gate.MemoryOptions{MaxEntries: maxEntries, SweepInterval: -1})

	// Some subjects are blocked (by failures and by hand) before the flood.
	var victims []string
	for i := range 20 {
		ip := fmt.Sprintf("172.16.0.%d", i)
		victims = append(victims, ip)
		if i%2 == 0 {
			_, err := s.Block(ctx, gate.KindIP, ip, time.Hour)
			require.NoError(t, err)
			continue
		}
		for range 4 {
			_, err := s.Record(ctx, ipOp(ip, 3, ""), false)
			require.NoError(t, err)
		}
	}

	// A flood of 10x MaxEntries distinct attacker addresses, some as
	// unfinished two-phase attempts, with counting of pairs and usernames.
	for i := range 10 * maxEntries {
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255)
		var err error
		switch i % 3 {
		case 0:
			_, err = s.Record(ctx, ipOp(ip, 3, ""), false)
		case 1:
			_, err = s.Begin(ctx, ipOp(ip, 3, "tok"+ip))
		default:
			_, err = s.Record(ctx, gate.Op{Counters: []gate.Counter{
				{Kind: gate.KindIP, Subject: ip, Limit: 3},
				{Kind: gate.KindUsername, Subject: "user" + strconv.Itoa(i), Limit: 3},
			}}, false)
		}
		require.NoError(t, err)
		require.LessOrEqual(t, s.Stats().Entries, maxEntries)
		if i%1000 == 0 {
			clock.Advance(time.Second)
		}
	}
	st := s.Stats()
	assert.LessOrEqual(t, st.Entries, maxEntries)
	assert.Greater(t, st.Evictions, uint64(8*maxEntries))
	assert.Zero(t, st.EvictedBlocks)

	blocked, err := s.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	var subjects []string
	for _, b := range blocked {
		subjects = append(subjects, b.Subject)
	}
	assert.ElementsMatch(t, victims, subjects, "every block survives the flood")
	for _, ip := range victims {
		res, err := s.Check(ctx, ipOp(ip, 3, ""))
		require.NoError(t, err)
		assert.Len(t, res.Blocked, 1, ip)
	}
}

func TestMemoryBoundedWhenOnlyBlocks(t *testing.T) {
	ctx := context.Background()
	const maxEntries = 100
	s, _ := newMemory(t, gate.MemoryOptions{MaxEntries: maxEntries, SweepInterval: -1})
	for i := range 3 * maxEntries {
		_, err := s.Block(ctx, gate.KindIP, "10.9.0."+strconv.Itoa(i), time.Duration(i+1)*time.Minute)
		require.NoError(t, err)
		require.LessOrEqual(t, s.Stats().Entries, maxEntries)
	}
	st := s.Stats()
	assert.Equal(t, maxEntries, st.Entries)
	assert.Equal(t, uint64(2*maxEntries), st.EvictedBlocks)
	blocked, err := s.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	assert.Len(t, blocked, maxEntries)
}

func TestMemorySmallMaxEntriesHoldsOneOp(t *testing.T) {
	ctx := context.Background()
	s, _ := newMemory(t, gate.MemoryOptions{MaxEntries: 1, SweepInterval: -1})
	op := gate.Op{Token: "t", Counters: []gate.Counter{
		{Kind: gate.KindIP, Subject: "192.0.2.50", Limit: 0},
		{Kind: gate.KindUsername, Subject: "u", Limit: 0},
		{Kind: gate.KindPair, Subject: gate.PairSubject("192.0.2.50", "u"), Limit: 0},
	}}
	res, err := s.Begin(ctx, op)
	require.NoError(t, err)
	require.True(t, res.Admitted)
	res, err = s.Finish(ctx, op, false)
	require.NoError(t, err)
	assert.Len(t, res.Blocked, 3)
	assert.Len(t, res.Transitions, 3)
	assert.Equal(t, 3, s.Stats().Entries)
}

func TestMemoryCloseStopsSweeper(t *testing.T) {
	// Counted the way require.Eventually counts below: from inside the
	// goroutine it starts for its condition.
	var before int
	require.Eventually(t, func() bool { before = runtime.NumGoroutine(); return true }, time.Second, time.Millisecond)
	stores := make([]*gate.MemoryStore, 10)
	for i := range stores {
		stores[i] = gate.NewMemoryStore(gate.MemoryOptions{SweepInterval: time.Millisecond})
	}
	for _, s := range stores {
		require.NoError(t, s.Close())
		require.NoError(t, s.Close(), "Close is idempotent")
	}
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before }, 5*time.Second, 5*time.Millisecond)

	// Still usable after Close.
	_, err := stores[0].Record(context.Background(), ipOp("192.0.2.60", 3, ""), false)
	assert.NoError(t, err)

	noSweeper := gate.NewMemoryStore(gate.MemoryOptions{SweepInterval: -1})
	assert.NoError(t, noSweeper.Close())
}

func benchOp(i int, token string) gate.Op {
	return gate.Op{Token: token, Counters: []gate.Counter{
		{Kind: gate.KindIP, Subject: "10.0." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255), Limit: 1 << 20},
		{Kind: gate.KindUsername, Subject: "user" + strconv.Itoa(i), Limit: 1 << 20},
	}}
}

// benchOps prepares n ops on distinct subjects, so that the benchmarks
// measure the store and not string building.
func benchOps(n int) []gate.Op {
	ops := make([]gate.Op, n)
	for i := range ops {
		ops[i] = benchOp(i, "tok"+strconv.Itoa(i))
	}
	return ops
}

func BenchmarkMemoryCheck(b *testing.B) {
	s := gate.NewMemoryStore(gate.MemoryOptions{Policy: testPolicy()})
	defer s.Close()
	ctx := context.Background()
	ops := benchOps(4096)
	for _, op := range ops {
		_, _ = s.Record(ctx, op, false)
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 997
		for pb.Next() {
			i++
			if _, err := s.Check(ctx, ops[i&4095]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkMemoryRecord(b *testing.B) {
	s := gate.NewMemoryStore(gate.MemoryOptions{Policy: testPolicy()})
	defer s.Close()
	ctx := context.Background()
	ops := benchOps(4096)
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 997
		for pb.Next() {
			i++
			if _, err := s.Record(ctx, ops[i&4095], i&7 == 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkMemoryBeginFinish measures a two-phase attempt: one op is one
// Begin and its Finish.
func BenchmarkMemoryBeginFinish(b *testing.B) {
	s := gate.NewMemoryStore(gate.MemoryOptions{Policy: testPolicy()})
	defer s.Close()
	ctx := context.Background()
	ops := benchOps(4096)
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine owns its ops, so that its token is never charged twice.
		w := int(seq.Add(1))
		i := 0
		for pb.Next() {
			i++
			op := ops[(w*64+i&63)&4095]
			if _, err := s.Begin(ctx, op); err != nil {
				b.Error(err)
				return
			}
			if _, err := s.Finish(ctx, op, i&7 == 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkMemoryBytesPerKey reports the heap used per tracked subject
// holding one failure, the state of an address in a flood.
func BenchmarkMemoryBytesPerKey(b *testing.B) {
	const n = 200_000
	ctx := context.Background()
	ops := make([]gate.Op, n)
	for i := range ops {
		ops[i] = ipOp(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), 3, "")
	}
	var perKey float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := gate.NewMemoryStore(gate.MemoryOptions{Policy: testPolicy(), MaxEntries: 2 * n, SweepInterval: -1})
		for _, op := range ops {
			if _, err := s.Record(ctx, op, false); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := s.Stats().Entries; got != n {
			b.Fatalf("%d entries, want %d", got, n)
		}
		perKey = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(s)
		_ = s.Close()
	}
	b.ReportMetric(perKey, "B/key")
}
