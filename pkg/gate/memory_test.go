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
// store on a fake clock: the suite's waits take no time.
func TestMemoryConformance(t *testing.T) {
	for _, shards := range []int{1, 64} {
		t.Run("shards="+strconv.Itoa(shards), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, p gate.Policy) (gate.Store, storetest.Clock) {
				return newMemory(t, gate.MemoryOptions{Policy: p, Shards: shards, SweepInterval: 10 * time.Millisecond})
			})
		})
	}
}

func TestMemoryRecordBlocksAboveLimit(t *testing.T) {
	ctx := context.Background()
	s, clock := newMemory(t, gate.MemoryOptions{})
	op := ipOp("203.0.113.7", 3, "")

	for i := 1; i <= 3; i++ {
		res, err := s.Record(ctx, op, false)
		require.NoError(t, err)
		assert.Equal(t, []int{i}, res.Failures)
		assert.Empty(t, res.Blocked, "failure %d", i)
		assert.Empty(t, res.Transitions)
	}
	res, err := s.Record(ctx, op, false)
	require.NoError(t, err)
	assert.Equal(t, []int{4}, res.Failures)
	require.Len(t, res.Blocked, 1)
	assert.Equal(t, gate.BlockState{Kind: gate.KindIP, Subject: "203.0.113.7", TTL: 5 * time.Minute}, res.Blocked[0])
	assert.Equal(t, []gate.Transition{{
		Kind: gate.KindIP, Subject: "203.0.113.7", Blocked: true,
		Duration: 5 * time.Minute, Failures: 4, Lockouts: 1,
	}}, res.Transitions)

	// While blocked: reported, nothing counted, no transition; even a success.
	clock.Advance(time.Minute)
	for _, success := range []bool{false, true} {
		res, err = s.Record(ctx, op, success)
		require.NoError(t, err)
		assert.Equal(t, []int{4}, res.Failures)
		require.Len(t, res.Blocked, 1)
		assert.Equal(t, 4*time.Minute, res.Blocked[0].TTL)
		assert.Empty(t, res.Transitions)
	}

	// The block and the counter (same TTL, renewed by the 4th failure) end together.
	clock.Advance(4 * time.Minute)
	res, err = s.Check(ctx, op)
	require.NoError(t, err)
	assert.Empty(t, res.Blocked)
	assert.Equal(t, []int{0}, res.Failures)
}

func TestMemoryLimitZeroBlocksOnFirstFailure(t *testing.T) {
	s, _ := newMemory(t, gate.MemoryOptions{})
	res, err := s.Record(context.Background(), ipOp("198.51.100.1", 0, ""), false)
	require.NoError(t, err)
	assert.Len(t, res.Blocked, 1)
	assert.Len(t, res.Transitions, 1)
}

func TestMemoryFailuresSlide(t *testing.T) {
	ctx := context.Background()
	s, clock := newMemory(t, gate.MemoryOptions{})
	op := ipOp("198.51.100.2", 10, "")
	failures := func() int {
		res, err := s.Check(ctx, op)
		require.NoError(t, err)
		return res.Failures[0]
	}

	_, err := s.Record(ctx, op, false)
	require.NoError(t, err)
	clock.Advance(4 * time.Minute)
	_, err = s.Record(ctx, op, false)
	require.NoError(t, err)
	clock.Advance(4 * time.Minute) // 8 min after the first failure, 4 after the second
	assert.Equal(t, 2, failures())
	clock.Advance(time.Minute)
	assert.Equal(t, 0, failures())
}

func TestMemoryAttemptCooloffZeroNeverForgets(t *testing.T) {
	ctx := context.Background()
	p := testPolicy()
	p.AttemptCooloff = 0
	s, clock := newMemory(t, gate.MemoryOptions{Policy: p})
	op := ipOp("198.51.100.3", 2, "")
	_, err := s.Record(ctx, op, false)
	require.NoError(t, err)
	clock.Advance(1000 * time.Hour)
	res, err := s.Check(ctx, op)
	require.NoError(t, err)
	assert.Equal(t, []int{1}, res.Failures)
}

func TestMemoryEscalatingLockouts(t *testing.T) {
	ctx := context.Background()
	p := testPolicy()
	p.AttemptCooloff = 0 // failures stay above the limit after a block ends
	p.LockoutCooloffs = []time.Duration{time.Minute, 10 * time.Minute, 0}
	s, clock := newMemory(t, gate.MemoryOptions{Policy: p})
	op := ipOp("198.51.100.4", 1, "")

	var trans []gate.Transition
	for range 2 {
		res, err := s.Record(ctx, op, false)
		require.NoError(t, err)
		trans = append(trans, res.Transitions...)
	}
	require.Len(t, trans, 1)
	assert.Equal(t, time.Minute, trans[0].Duration)
	assert.Equal(t, 1, trans[0].Lockouts)

	// After the block, the next single failure re-blocks, for longer.
	clock.Advance(time.Minute)
	res, err := s.Record(ctx, op, false)
	require.NoError(t, err)
	require.Len(t, res.Transitions, 1)
	assert.Equal(t, gate.Transition{Kind: gate.KindIP, Subject: "198.51.100.4", Blocked: true,
		Duration: 10 * time.Minute, Failures: 3, Lockouts: 2}, res.Transitions[0])

	clock.Advance(10 * time.Minute)
	res, err = s.Record(ctx, op, false)
	require.NoError(t, err)
	require.Len(t, res.Transitions, 1)
	assert.True(t, res.Transitions[0].Permanent)
	assert.Zero(t, res.Transitions[0].Duration)
	assert.Equal(t, 3, res.Transitions[0].Lockouts)
	assert.Equal(t, []gate.BlockState{{Kind: gate.KindIP, Subject: "198.51.100.4", Permanent: true}}, res.Blocked)

	clock.Advance(10000 * time.Hour)
	res, err = s.Check(ctx, op)
	require.NoError(t, err)
	assert.Len(t, res.Blocked, 1, "a permanent block never ends")
	assert.Equal(t, []int{4}, res.Failures)
}

func TestMemoryLockoutMemoryForgets(t *testing.T) {
	ctx := context.Background()
	p := testPolicy()
	p.LockoutCooloffs = []time.Duration{time.Minute, time.Hour}
	p.LockoutMemory = 2 * time.Hour
	s, clock := newMemory(t, gate.MemoryOptions{Policy: p})
	op := ipOp("198.51.100.5", 0, "")

	lockouts := func() int {
		res, err := s.Record(ctx, op, false)
		require.NoError(t, err)
		require.Len(t, res.Transitions, 1)
		return res.Transitions[0].Lockouts
	}
	assert.Equal(t, 1, lockouts())
	clock.Advance(time.Hour)
	assert.Equal(t, 2, lockouts())
	clock.Advance(time.Hour) // second block over, history kept
	res, err := s.Begin(ctx, ipOp("198.51.100.5", 5, "t"))
	require.NoError(t, err)
	assert.True(t, res.Admitted)
	assert.Equal(t, []int{2}, res.Lockouts, "Begin reports the lockouts so far")
	_, err = s.Finish(ctx, ipOp("198.51.100.5", 5, "t"), true)
	require.NoError(t, err)
	clock.Advance(2 * time.Hour) // history (2 h after the 2nd lockout) forgotten
	assert.Equal(t, 1, lockouts())
}

func TestMemoryLockoutMemoryZeroMakesEveryLockoutTheFirst(t *testing.T) {
	ctx := context.Background()
	p := testPolicy()
	p.LockoutCooloffs = []time.Duration{time.Minute, time.Hour}
	p.LockoutMemory = 0
	s, clock := newMemory(t, gate.MemoryOptions{Policy: p})
	op := ipOp("198.51.100.6", 0, "")
	for range 3 {
		res, err := s.Record(ctx, op, false)
		require.NoError(t, err)
		require.Len(t, res.Transitions, 1)
		assert.Equal(t, 1, res.Transitions[0].Lockouts)
		assert.Equal(t, time.Minute, res.Transitions[0].Duration)
		clock.Advance(time.Minute)
	}
	res, err := s.Begin(ctx, ipOp("198.51.100.6", 5, "t"))
	require.NoError(t, err)
	assert.Equal(t, []int{0}, res.Lockouts)
}

func TestMemoryBeginSaturatesAndLastChance(t *testing.T) {
	ctx := context.Background()
	s, _ := newMemory(t, gate.MemoryOptions{})
	const limit = 2
	op := func(token string) gate.Op { return ipOp("192.0.2.10", limit, token) }

	for i := 1; i <= limit+1; i++ {
		res, err := s.Begin(ctx, op("t"+strconv.Itoa(i)))
		require.NoError(t, err)
		assert.True(t, res.Admitted, "attempt %d", i)
		assert.Equal(t, i == limit+1, res.LastChance, "attempt %d", i)
		assert.Empty(t, res.Saturated)
		// Counted at Begin, but the last chance, pending.
		assert.Equal(t, []int{min(i, limit)}, res.Failures)
		assert.Equal(t, []bool{i <= limit}, res.Counted)
	}
	res, err := s.Begin(ctx, op("t4"))
	require.NoError(t, err)
	assert.False(t, res.Admitted)
	assert.Equal(t, []gate.Kind{gate.KindIP}, res.Saturated)
	assert.Empty(t, res.Blocked)

	// A failure counted at Begin changes nothing: still saturated.
	res, err = s.Finish(ctx, op("t1"), false)
	require.NoError(t, err)
	assert.Equal(t, []int{2}, res.Failures)
	assert.Empty(t, res.Blocked)
	res, err = s.Begin(ctx, op("t5"))
	require.NoError(t, err)
	assert.False(t, res.Admitted)

	// A success refunds its charge and clears the failures: room again.
	res, err = s.Finish(ctx, op("t2"), true)
	require.NoError(t, err)
	assert.Equal(t, []int{0}, res.Failures)
	assert.Empty(t, res.Transitions)
	res, err = s.Begin(ctx, op("t6"))
	require.NoError(t, err)
	assert.True(t, res.Admitted)
	assert.False(t, res.LastChance) // t3 pending, t6 counted: 0+1+1 < 3
	assert.Equal(t, []int{1}, res.Failures)
}

func TestMemoryTokenSettledOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := newMemory(t, gate.MemoryOptions{})
	op := ipOp("192.0.2.15", 2, "same")
	for range 2 {
		res, err := s.Begin(ctx, op)
		require.NoError(t, err)
		require.True(t, res.Admitted)
	}
	// Each Begin counted (a token must be new to each: the gate's are);
	// the token's outcome takes effect once.
	res, err := s.Finish(ctx, op, true)
	require.NoError(t, err)
	assert.Equal(t, []int{0}, res.Failures)
	_, err = s.Record(ctx, op, false)
	require.NoError(t, err)
	res, err = s.Finish(ctx, op, true)
	require.NoError(t, err)
	assert.Equal(t, []int{1}, res.Failures, "the token's second success cleared nothing")
}

func TestMemoryFinishFailureBlocks(t *testing.T) {
	ctx := context.Background()
	s, _ := newMemory(t, gate.MemoryOptions{})
	op := func(token string) gate.Op { return ipOp("192.0.2.11", 1, token) }
	for _, tok := range []string{"a", "b"} {
		res, err := s.Begin(ctx, op(tok))
		require.NoError(t, err)
		require.True(t, res.Admitted)
	}
	res, err := s.Finish(ctx, op("a"), false)
	require.NoError(t, err)
	assert.Empty(t, res.Transitions)
	res, err = s.Finish(ctx, op("b"), false)
	require.NoError(t, err)
	require.Len(t, res.Transitions, 1)
	assert.Equal(t, 2, res.Transitions[0].Failures)
	assert.Len(t, res.Blocked, 1)

	// Finishing again, or an unknown token, counts nothing.
	for _, tok := range []string{"b", "never-charged"} {
		res, err = s.Finish(ctx, op(tok), false)
		require.NoError(t, err)
		assert.Equal(t, []int{2}, res.Failures)
		assert.Empty(t, res.Transitions)
	}
	res, err = s.Begin(ctx, op("c"))
	require.NoError(t, err)
	assert.False(t, res.Admitted)
	assert.Len(t, res.Blocked, 1)
	assert.Empty(t, res.Saturated)
}

func TestMemorySuccessLiftsBlock(t *testing.T) {
	ctx := context.Background()
	s, _ := newMemory(t, gate.MemoryOptions{})
	op := func(token string) gate.Op { return ipOp("192.0.2.12", 1, token) }
	res, err := s.Begin(ctx, op("slow"))
	require.NoError(t, err)
	require.True(t, res.Admitted)
	for range 2 {
		_, err = s.Record(ctx, op(""), false)
		require.NoError(t, err)
	}
	res, err = s.Check(ctx, op(""))
	require.NoError(t, err)
	require.Len(t, res.Blocked, 1)

	res, err = s.Finish(ctx, op("slow"), true)
	require.NoError(t, err)
	assert.Empty(t, res.Blocked)
	assert.Equal(t, []int{0}, res.Failures)
	assert.Equal(t, []gate.Transition{{Kind: gate.KindIP, Subject: "192.0.2.12"}}, res.Transitions)

	blocked, err := s.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	assert.Empty(t, blocked)
}

func TestMemoryPendingTimeoutCountsAsFailure(t *testing.T) {
	ctx := context.Background()
	s, clock := newMemory(t, gate.MemoryOptions{})
	op := func(token string) gate.Op { return ipOp("192.0.2.13", 1, token) }
	for _, tok := range []string{"a", "b"} {
		res, err := s.Begin(ctx, op(tok))
		require.NoError(t, err)
		require.True(t, res.Admitted)
	}

	// a was counted at Begin; b, the last chance, is pending. A charge
	// exactly PendingTimeout old is still pending: b saturates.
	clock.Advance(30 * time.Second)
	res, err := s.Begin(ctx, op("x"))
	require.NoError(t, err)
	assert.Equal(t, []gate.Kind{gate.KindIP}, res.Saturated)
	assert.Empty(t, res.Transitions)

	// Check writes nothing: the charge is not converted by it.
	clock.Advance(time.Second)
	res, err = s.Check(ctx, op(""))
	require.NoError(t, err)
	assert.Equal(t, []int{1}, res.Failures)
	assert.Empty(t, res.Blocked)

	// The next Begin turns b into a failure, which blocks.
	res, err = s.Begin(ctx, op("c"))
	require.NoError(t, err)
	assert.False(t, res.Admitted)
	assert.Equal(t, []int{2}, res.Failures)
	require.Len(t, res.Transitions, 1)
	assert.True(t, res.Transitions[0].Blocked)

	// A late outcome counts nothing more (the charge is gone), and the
	// transition is not reported twice.
	res, err = s.Finish(ctx, op("a"), false)
	require.NoError(t, err)
	assert.Equal(t, []int{2}, res.Failures)
	assert.Empty(t, res.Transitions)
}

func TestMemoryExpiredChargeSlidesFromItsExpiry(t *testing.T) {
	ctx := context.Background()
	s, clock := newMemory(t, gate.MemoryOptions{})
	op := ipOp("192.0.2.14", 3, "a")
	_, err := s.Begin(ctx, op)
	require.NoError(t, err)
	// The charge became a failure 30 s after Begin, forgotten 5 min later:
	// found late, it counts for nothing.
	clock.Advance(30*time.Second + 5*time.Minute)
	res, err := s.Record(ctx, ipOp("192.0.2.14", 3, ""), false)
	require.NoError(t, err)
	assert.Equal(t, []int{1}, res.Failures)
}

func TestMemoryTwoCounters(t *testing.T) {
	ctx := context.Background()
	s, _ := newMemory(t, gate.MemoryOptions{})
	op := func(user string) gate.Op {
		return gate.Op{Counters: []gate.Counter{
			{Kind: gate.KindIP, Subject: "192.0.2.20", Limit: 3},
			{Kind: gate.KindUsername, Subject: user, Limit: 1},
		}}
	}
	_, err := s.Record(ctx, op("alice"), false)
	require.NoError(t, err)
	res, err := s.Record(ctx, op("alice"), false)
	require.NoError(t, err)
	assert.Equal(t, []int{2, 2}, res.Failures)
	assert.Equal(t, []gate.BlockState{{Kind: gate.KindUsername, Subject: "alice", TTL: 5 * time.Minute}}, res.Blocked)
	require.Len(t, res.Transitions, 1)
	assert.Equal(t, gate.KindUsername, res.Transitions[0].Kind)

	// Blocked username: nothing counted on the IP either.
	res, err = s.Record(ctx, op("alice"), false)
	require.NoError(t, err)
	assert.Equal(t, []int{2, 2}, res.Failures)

	// Another username from the same IP: the IP blocks at its 4th failure.
	_, err = s.Record(ctx, op("bob"), false)
	require.NoError(t, err)
	res, err = s.Record(ctx, op("carol"), false)
	require.NoError(t, err)
	assert.Equal(t, []int{4, 1}, res.Failures)
	require.Len(t, res.Transitions, 1)
	assert.Equal(t, gate.KindIP, res.Transitions[0].Kind)

	// A success of a blocked pair is refused; Begin too.
	res, err = s.Begin(ctx, gate.Op{Token: "x", Counters: op("alice").Counters})
	require.NoError(t, err)
	assert.False(t, res.Admitted)
	assert.Len(t, res.Blocked, 2)
}

func TestMemoryBlockUnblockByHand(t *testing.T) {
	ctx := context.Background()
	s, clock := newMemory(t, gate.MemoryOptions{})

	tr, err := s.Block(ctx, gate.KindUsername, "mallory", time.Hour)
	require.NoError(t, err)
	require.NotNil(t, tr)
	assert.Equal(t, gate.Transition{Kind: gate.KindUsername, Subject: "mallory", Blocked: true, Duration: time.Hour}, *tr)
	tr, err = s.Block(ctx, gate.KindUsername, "mallory", 2*time.Hour)
	require.NoError(t, err)
	assert.Nil(t, tr, "already blocked: no transition")
	tr, err = s.Block(ctx, gate.KindUsername, "eve", 0)
	require.NoError(t, err)
	require.NotNil(t, tr)
	assert.True(t, tr.Permanent)
	_, err = s.Block(ctx, gate.KindIP, "192.0.2.30", time.Minute)
	require.NoError(t, err)

	clock.Advance(time.Hour)
	blocked, err := s.Blocked(ctx, gate.KindUsername, 0)
	require.NoError(t, err)
	assert.Equal(t, []gate.BlockState{
		{Kind: gate.KindUsername, Subject: "mallory", TTL: time.Hour}, // replaced by the 2 h block
		{Kind: gate.KindUsername, Subject: "eve", Permanent: true},
	}, blocked)
	blocked, err = s.Blocked(ctx, gate.KindUsername, 1)
	require.NoError(t, err)
	assert.Len(t, blocked, 1)
	blocked, err = s.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	assert.Empty(t, blocked, "the IP block expired")
	blocked, err = s.Blocked(ctx, gate.KindPair, 0)
	require.NoError(t, err)
	assert.Empty(t, blocked)

	// Unblock forgets failures, charges and lockout history too.
	uop := gate.Op{Token: "t", Counters: []gate.Counter{{Kind: gate.KindUsername, Subject: "dave", Limit: 1}}}
	for range 2 {
		_, err = s.Record(ctx, uop, false)
		require.NoError(t, err)
	}
	tr, err = s.Unblock(ctx, gate.KindUsername, "dave")
	require.NoError(t, err)
	require.NotNil(t, tr)
	assert.Equal(t, gate.Transition{Kind: gate.KindUsername, Subject: "dave"}, *tr)
	res, err := s.Check(ctx, uop)
	require.NoError(t, err)
	assert.Equal(t, []int{0}, res.Failures)
	assert.Empty(t, res.Blocked)
	for range 2 {
		res, err = s.Record(ctx, uop, false)
		require.NoError(t, err)
	}
	require.Len(t, res.Transitions, 1)
	assert.Equal(t, 1, res.Transitions[0].Lockouts, "lockout history forgotten")

	tr, err = s.Unblock(ctx, gate.KindUsername, "nobody")
	require.NoError(t, err)
	assert.Nil(t, tr)
	tr, err = s.Unblock(ctx, gate.KindIP, "192.0.2.30")
	require.NoError(t, err)
	assert.Nil(t, tr, "an expired block is no block")
}

func TestMemoryRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	s, _ := newMemory(t, gate.MemoryOptions{})
	ip := gate.Counter{Kind: gate.KindIP, Subject: "192.0.2.1", Limit: 3}
	tests := []struct {
		name string
		op   gate.Op
	}{
		{"no counters", gate.Op{Token: "t"}},
		{"unknown kind", gate.Op{Token: "t", Counters: []gate.Counter{{Kind: "mac", Subject: "x"}}}},
		{"same kind twice", gate.Op{Token: "t", Counters: []gate.Counter{ip, ip}}},
		{"empty subject", gate.Op{Token: "t", Counters: []gate.Counter{{Kind: gate.KindIP}}}},
		{"negative limit", gate.Op{Token: "t", Counters: []gate.Counter{{Kind: gate.KindIP, Subject: "x", Limit: -1}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Check(ctx, tc.op)
			assert.ErrorContains(t, err, "gate: memory store: ", "the error names the store")
			_, err = s.Begin(ctx, tc.op)
			assert.Error(t, err)
			_, err = s.Finish(ctx, tc.op, false)
			assert.Error(t, err)
			_, err = s.Record(ctx, tc.op, false)
			assert.Error(t, err)
		})
	}
	_, err := s.Begin(ctx, gate.Op{Counters: []gate.Counter{ip}})
	assert.Error(t, err, "Begin needs a token")
	_, err = s.Block(ctx, gate.KindIP, "192.0.2.1", -time.Second)
	assert.Error(t, err)
	_, err = s.Blocked(ctx, "mac", 0)
	assert.Error(t, err)
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

func TestMemoryConcurrentBeginAdmitsLimitPlusOne(t *testing.T) {
	ctx := context.Background()
	s, _ := newMemory(t, gate.MemoryOptions{Shards: 4})
	const limit, workers = 5, 300
	counters := []gate.Counter{
		{Kind: gate.KindIP, Subject: "198.18.0.1", Limit: limit},
		{Kind: gate.KindUsername, Subject: "target", Limit: limit},
	}
	var admitted, blocks, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			op := gate.Op{Counters: counters, Token: "tok" + strconv.Itoa(w)}
			res, err := s.Begin(ctx, op)
			if !assert.NoError(t, err) {
				return
			}
			if !res.Admitted {
				refused.Add(1)
				return
			}
			admitted.Add(1)
			res, err = s.Finish(ctx, op, false)
			if !assert.NoError(t, err) {
				return
			}
			for _, tr := range res.Transitions {
				if tr.Blocked {
					blocks.Add(1)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	// Each admitted attempt may finish before others begin, so admissions
	// stop at the block (limit+1 failures), never later.
	assert.Equal(t, int64(limit+1), admitted.Load())
	assert.Equal(t, int64(workers-limit-1), refused.Load())
	assert.Equal(t, int64(2), blocks.Load(), "one block per counter, reported once")
	res, err := s.Check(ctx, gate.Op{Counters: counters})
	require.NoError(t, err)
	assert.Equal(t, []int{limit + 1, limit + 1}, res.Failures)
}

func TestMemoryConcurrentBeginHoldsAtLimitPlusOne(t *testing.T) {
	ctx := context.Background()
	s, _ := newMemory(t, gate.MemoryOptions{})
	const limit, workers = 3, 400
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.Begin(ctx, gate.Op{Token: "t" + strconv.Itoa(w), Counters: []gate.Counter{
				{Kind: gate.KindUsername, Subject: "root", Limit: limit},
				{Kind: gate.KindIP, Subject: "198.18.1." + strconv.Itoa(w%250), Limit: limit},
			}})
			assert.NoError(t, err)
			if res.Admitted {
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(limit+1), admitted.Load())
}

func TestMemoryConcurrentRecordBlocksOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := newMemory(t, gate.MemoryOptions{})
	const limit, workers = 3, 300
	var blocks, unblocks atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ops := gate.Op{Counters: []gate.Counter{
				{Kind: gate.KindIP, Subject: "198.18.2." + strconv.Itoa(w%7), Limit: limit},
				{Kind: gate.KindUsername, Subject: "admin", Limit: limit},
			}}
			res, err := s.Record(ctx, ops, w%50 == 49)
			assert.NoError(t, err)
			for _, tr := range res.Transitions {
				if tr.Blocked {
					blocks.Add(1)
				} else {
					unblocks.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	blocked, err := s.Blocked(ctx, gate.KindUsername, 0)
	require.NoError(t, err)
	require.Len(t, blocked, 1, "admin ends blocked: a success is never counted while blocked")
	assert.Zero(t, unblocks.Load())
	ipBlocks, err := s.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	assert.Equal(t, int64(1+len(ipBlocks)), blocks.Load())
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
