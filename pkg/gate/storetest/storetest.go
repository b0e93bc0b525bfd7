// Package storetest is the conformance suite of gate.Store: every store
// (Redis, in-memory, ...) runs it, and passing it is what "behaves like the
// others" means. Each rule of the Store contract in package gate has a
// subtest here.
//
// A store applies the gate.Policy it is built with, so the suite builds
// its stores itself, through the function its caller gives Run: each
// subtest builds one for the policy it tests. Subtests run in parallel and
// use fresh random subjects, so their stores may share one server.
//
// A few subtests wait for short expiries (a few seconds in all). They wait
// on the Clock that comes with the store, never on the suite's own: a
// store on real time (Redis, whose TTLs are its own) comes with a clock
// that sleeps, an in-process store on a fake clock (MemoryOptions.Clock)
// with one whose Sleep moves it at once, and then the suite never sleeps.
// No subtest asserts how fast a store is.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// long is a duration no subtest waits for.
const long = time.Hour

// Clock is the time of a store under test, on which the suite waits.
type Clock interface {
	Now() time.Time
	// Sleep returns once d has passed on the clock.
	Sleep(d time.Duration)
}

// Run runs the suite. newStore returns a store applying p, and its clock:
// a new store, or a new handle on a server that other subtests use too.
// Each subtest calls it once for the policy it tests, and InvalidOps also
// for invalid policies, which a store must accept and then refuse every op
// under.
func Run(t *testing.T, newStore func(t *testing.T, p gate.Policy) (gate.Store, Clock)) {
	tests := []struct {
		name string
		run  func(t *testing.T, s *suite)
	}{
		{"Limits", testLimits},
		{"BlockedRefusesAndCountsNothing", testBlockedRefuses},
		{"CheckWritesNothing", testCheckWritesNothing},
		{"Saturation", testSaturation},
		{"LastChanceBelowTheLimit", testLastChanceBelowTheLimit},
		{"ConcurrentBeginAdmitsLimitPlusOne", testConcurrentBegin},
		{"ConcurrentAttemptsBlockOnce", testConcurrentAttempts},
		{"LastChance", testLastChance},
		{"OneAtATimeAfterBlockExpires", testOneAtATimeAfterExpiry},
		{"SuccessClearsOwnCharge", testSuccessClears},
		{"RecordSuccessClears", testRecordSuccess},
		{"KeepOnSuccess", testKeepOnSuccess},
		{"UnknownTokenCountsNothing", testUnknownToken},
		{"ReplayedOutcomeChangesNothing", testReplayedOutcome},
		{"FailureWhileBlockedKeepsBlock", testFailureWhileBlocked},
		{"PendingExpiryBecomesFailures", testPendingExpiry},
		{"ExpiredChargesSlideFromTheirDeadlines", testExpiredChargesSlide},
		{"PendingTimeoutZeroNeverExpires", testPendingNeverExpires},
		{"SlidingAttemptCooloff", testSlidingCooloff},
		{"AttemptCooloffZeroNeverForgets", testAttemptCooloffZero},
		{"LockoutEscalation", testLockoutEscalation},
		{"LockoutMemoryForgets", testLockoutMemory},
		{"LockoutMemoryZeroMakesEveryLockoutTheFirst", testLockoutMemoryZero},
		{"PermanentBlock", testPermanent},
		{"TwoCounters", testTwoCounters},
		{"AdminBlockUnblock", testAdminBlockUnblock},
		{"UnblockForgetsEverything", testUnblockForgets},
		{"BlockedList", testBlockedList},
		{"TransitionsOnceUnderRaces", testTransitionsOnce},
		{"HostileSubjects", testHostileSubjects},
		{"DistinctMembers", testDistinctMembers},
		{"DistinctSuccessRemovesOnlyItsMember", testDistinctSuccess},
		{"DistinctConcurrentBeginAdmitsLimitPlusOne", testDistinctConcurrentBegin},
		{"DistinctPendingExpiryCountsOneName", testDistinctPendingExpiry},
		{"DistinctSlides", testDistinctSlides},
		{"ReportOnly", testReportOnly},
		{"FamiliarSourceKeepsAccess", testFamiliarKeepsAccess},
		{"FamiliarCounterBlocksFamiliarOnly", testFamiliarCounterBlocksFamiliar},
		{"FamiliarSourcesBounded", testFamiliarBounded},
		{"FamiliarTwoPhase", testFamiliarTwoPhase},
		{"InvalidOps", testInvalidOps},
	}
	// The group waits for its parallel subtests, so Run returns when the
	// suite is done.
	t.Run("storetest", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.run(t, &suite{t: t, newStore: newStore, ctx: context.Background()})
			})
		}
	})
}

// suite holds the store of one subtest and helpers that fail it on errors.
type suite struct {
	t        *testing.T
	newStore func(t *testing.T, p gate.Policy) (gate.Store, Clock)
	store    gate.Store // built by use
	clock    Clock      // the store's
	ctx      context.Context
}

// use builds the subtest's store, applying p.
func (s *suite) use(p gate.Policy) {
	s.store, s.clock = s.newStore(s.t, p)
}

// sleepUntil waits until t on the store's clock.
func (s *suite) sleepUntil(t time.Time) {
	if d := t.Sub(s.clock.Now()); d > 0 {
		s.clock.Sleep(d)
	}
}

// eventually waits on the store's clock, polling cond every tick, until
// cond holds; it fails the subtest if max passes first.
func (s *suite) eventually(cond func() bool, max, tick time.Duration, msg string, args ...any) {
	s.t.Helper()
	deadline := s.clock.Now().Add(max)
	for !cond() {
		if !s.clock.Now().Before(deadline) {
			require.FailNow(s.t, "condition not met within "+max.String(), append([]any{msg}, args...)...)
		}
		s.clock.Sleep(tick)
	}
}

// policy returns long timings (nothing expires during a test) with one
// lockout cool-off of cool.
func policy(cool time.Duration) gate.Policy {
	return gate.Policy{
		AttemptCooloff:  long,
		LockoutCooloffs: []time.Duration{cool},
		LockoutMemory:   24 * time.Hour,
		PendingTimeout:  long,
	}
}

// random returns n random bytes in hex.
func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// counter is a counter of kind with a fresh subject.
func counter(kind gate.Kind, limit int) gate.Counter {
	subject := "st-" + random(8)
	switch kind {
	case gate.KindIP:
		subject = "198.51.100." + random(4)
	case gate.KindPair:
		subject = gate.PairSubject("198.51.100."+random(4), "st-"+random(6))
	}
	return gate.Counter{Kind: kind, Subject: subject, Limit: limit}
}

func op(cs ...gate.Counter) gate.Op {
	return gate.Op{Counters: cs, Token: random(16)}
}

// withToken is o with a fresh token, for a new attempt.
func withToken(o gate.Op) gate.Op {
	o.Token = random(16)
	return o
}

func (s *suite) check(o gate.Op) gate.Result {
	s.t.Helper()
	r, err := s.store.Check(s.ctx, o)
	require.NoError(s.t, err)
	return r
}

// begin charges a new attempt: the op it returns (with its token) is the
// one to Finish.
func (s *suite) begin(o gate.Op) (gate.Op, gate.Result) {
	s.t.Helper()
	o = withToken(o)
	r, err := s.store.Begin(s.ctx, o)
	require.NoError(s.t, err)
	return o, r
}

func (s *suite) finish(o gate.Op, success bool) gate.Result {
	s.t.Helper()
	r, err := s.store.Finish(s.ctx, o, success)
	require.NoError(s.t, err)
	return r
}

func (s *suite) record(o gate.Op, success bool) gate.Result {
	s.t.Helper()
	r, err := s.store.Record(s.ctx, withToken(o), success)
	require.NoError(s.t, err)
	return r
}

// fail records n failures that must not block.
func (s *suite) fail(o gate.Op, n int) {
	s.t.Helper()
	for i := 0; i < n; i++ {
		r := s.record(o, false)
		require.Empty(s.t, r.Blocked, "failure %d of %d", i+1, n)
	}
}

func (s *suite) blockedKinds(r gate.Result) []gate.Kind {
	var ks []gate.Kind
	for _, b := range r.Blocked {
		ks = append(ks, b.Kind)
	}
	return ks
}

// isBlocked reports whether Check sees the counter of a one-counter op blocked.
func (s *suite) isBlocked(o gate.Op) bool {
	s.t.Helper()
	return len(s.check(o).Blocked) > 0
}

func blocks(ts []gate.Transition) (n int) {
	for _, t := range ts {
		if t.Blocked {
			n++
		}
	}
	return n
}

func testLimits(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	for _, limit := range []int{0, 1, 3, 5} {
		c := counter(gate.KindUsername, limit)
		o := op(c)
		for i := 1; i <= limit; i++ {
			r := s.record(o, false)
			assert.Empty(t, r.Blocked, "limit %d: failure %d must not block", limit, i)
			assert.True(t, r.Admitted, "Record counted it")
			assert.Empty(t, r.Transitions)
			assert.Equal(t, []int{i}, r.Failures)
		}
		r := s.record(o, false)
		require.Len(t, r.Blocked, 1, "limit %d: failure %d blocks", limit, limit+1)
		assert.True(t, r.Admitted, "the failure that blocks is counted")
		b := r.Blocked[0]
		assert.Equal(t, c.Kind, b.Kind)
		assert.Equal(t, c.Subject, b.Subject)
		assert.False(t, b.Permanent)
		assert.Greater(t, b.TTL, time.Duration(0))
		assert.LessOrEqual(t, b.TTL, time.Minute)
		assert.Equal(t, []int{limit + 1}, r.Failures)
		require.Len(t, r.Transitions, 1)
		assert.Equal(t, gate.Transition{
			Kind: c.Kind, Subject: c.Subject, Blocked: true,
			Duration: time.Minute, Failures: limit + 1, Lockouts: 1,
		}, plain(t, r.Transitions[0]))
		assert.True(t, s.isBlocked(o))
	}
}

func testBlockedRefuses(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	c := counter(gate.KindIP, 2)
	o := op(c)
	s.fail(o, 2)
	require.NotEmpty(t, s.record(o, false).Blocked)
	// The TTL reported is the time left.
	s.clock.Sleep(200 * time.Millisecond)
	st := s.check(o).Blocked
	require.Len(t, st, 1)
	assert.LessOrEqual(t, st[0].TTL, time.Minute-200*time.Millisecond)
	assert.Greater(t, st[0].TTL, time.Duration(0))

	_, r := s.begin(o)
	assert.False(t, r.Admitted, "Begin refused while blocked")
	assert.Len(t, r.Blocked, 1)
	assert.Empty(t, r.Saturated, "a block is not saturation")
	assert.False(t, r.LastChance)
	assert.Empty(t, r.Transitions)
	assert.Equal(t, []int{3}, r.Failures)

	for _, success := range []bool{false, true} {
		r = s.record(o, success)
		assert.Len(t, r.Blocked, 1, "Record(%v) refused while blocked", success)
		assert.False(t, r.Admitted, "Record(%v) refused", success)
		assert.Empty(t, r.Transitions)
		assert.Equal(t, []int{3}, r.Failures, "Record(%v) counted nothing", success)
	}
	assert.Equal(t, []int{3}, s.check(o).Failures)
}

func testCheckWritesNothing(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	c := counter(gate.KindUsername, 1)
	o := op(c)
	r := s.check(o)
	assert.Empty(t, r.Blocked)
	assert.Equal(t, []int{0}, r.Failures)
	assert.Empty(t, r.Transitions)
	for i := 0; i < 5; i++ {
		s.check(o)
	}
	s.fail(o, 1)
	r = s.check(o)
	assert.Equal(t, []int{1}, r.Failures)
	assert.Empty(t, r.Blocked)
	assert.False(t, r.Admitted)
	// Check charged nothing: two attempts still fit (min(1,1)+0 < 2).
	_, r = s.begin(o)
	assert.True(t, r.Admitted)
}

func testSaturation(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	c := counter(gate.KindUsername, 2)
	o := op(c)
	var charged []gate.Op
	upfront := false         // the store counts attempts at Begin (Result.Counted)
	for i := 0; i < 3; i++ { // Limit+1 attempts fit
		a, r := s.begin(o)
		require.True(t, r.Admitted, "attempt %d", i+1)
		upfront = upfront || r.Counted != nil
		assert.Equal(t, i == 2, r.LastChance, "attempt %d", i+1)
		assert.Empty(t, r.Saturated)
		if r.Counted != nil {
			// Counted at once, but the last chance, pending.
			assert.Equal(t, []bool{i < 2}, r.Counted, "attempt %d", i+1)
			assert.Equal(t, []int{min(i+1, 2)}, r.Failures, "attempt %d", i+1)
		}
		charged = append(charged, a)
	}
	_, r := s.begin(o)
	assert.False(t, r.Admitted, "the budget is full")
	assert.Equal(t, []gate.Kind{gate.KindUsername}, r.Saturated)
	assert.Empty(t, r.Blocked, "saturated, not blocked")
	if !upfront {
		assert.Equal(t, []int{0}, r.Failures, "every charge pending")
	} else {
		assert.Equal(t, []int{2}, r.Failures, "the two attempts counted at Begin")
	}
	// The refused attempt charged nothing.
	before := s.check(o).Failures
	_, r = s.begin(o)
	assert.False(t, r.Admitted)
	assert.Equal(t, before, s.check(o).Failures)
	if upfront {
		// The failure of an attempt counted at Begin is counted already:
		// reported, it changes nothing, and the budget stays full.
		r = s.finish(charged[1], false)
		assert.Equal(t, []int{2}, r.Failures)
		assert.Empty(t, r.Transitions)
		_, r = s.begin(o)
		assert.False(t, r.Admitted, "still saturated")
	}
	// A success clears the counter, but the last chance, still pending,
	// keeps its slot: one more attempt fits below it, and then one as the
	// next last chance.
	s.finish(charged[0], true)
	_, r = s.begin(o)
	assert.True(t, r.Admitted)
	assert.False(t, r.LastChance)
	_, r = s.begin(o)
	assert.True(t, r.Admitted)
	assert.True(t, r.LastChance)
	_, r = s.begin(o)
	assert.False(t, r.Admitted)

	// Failures count against the budget, capped at Limit.
	c2 := counter(gate.KindIP, 2)
	o2 := op(c2)
	s.fail(o2, 2)
	_, r = s.begin(o2)
	assert.True(t, r.Admitted)
	assert.True(t, r.LastChance)
	_, r = s.begin(o2)
	assert.False(t, r.Admitted)
	assert.Equal(t, []gate.Kind{gate.KindIP}, r.Saturated)
}

func testConcurrentBegin(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	for _, limit := range []int{0, 3} {
		// The IP counter never binds (n < its limit): a store that charges
		// counters one by one (RedisClusterStore) may refuse early on a
		// counter holding charges that are being released, which shifts
		// who gets the last chance; the bound itself is tested here.
		const n = 300
		o := op(counter(gate.KindUsername, limit), counter(gate.KindIP, 10*n))
		var admitted, lastChance, counted atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := s.store.Begin(s.ctx, withToken(o))
				if !assert.NoError(t, err) {
					return
				}
				if r.Admitted {
					admitted.Add(1)
				}
				if r.Counted != nil {
					counted.Add(1)
				}
				if r.LastChance {
					lastChance.Add(1)
				}
			}()
		}
		wg.Wait()
		assert.EqualValues(t, limit+1, admitted.Load(), "limit %d: exactly Limit+1 admitted", limit)
		assert.EqualValues(t, 1, lastChance.Load(), "limit %d: one last chance", limit)
		// The refused attempts counted nothing. A store that counts an
		// attempt at Begin (Result.Counted) counts the admitted ones but
		// the username's last chance, which is pending.
		if counted.Load() > 0 {
			assert.Equal(t, []int{limit, limit + 1}, s.check(o).Failures, "limit %d", limit)
		} else {
			assert.Equal(t, []int{0, 0}, s.check(o).Failures, "limit %d", limit)
		}
	}
}

// testConcurrentAttempts: attempts begun and failed all at once are
// admitted up to Limit+1, never more however their Begins and Finishes
// interleave, and their failures block once. (The IP never binds, as in
// testConcurrentBegin.)
func testConcurrentAttempts(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	const limit, n = 5, 300
	o := op(counter(gate.KindUsername, limit), counter(gate.KindIP, 10*n))
	var admitted, refused, blocked atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := withToken(o)
			r, err := s.store.Begin(s.ctx, a)
			if !assert.NoError(t, err) {
				return
			}
			if !r.Admitted {
				refused.Add(1)
				return
			}
			admitted.Add(1)
			r, err = s.store.Finish(s.ctx, a, false)
			if !assert.NoError(t, err) {
				return
			}
			blocked.Add(int32(blocks(r.Transitions)))
		}()
	}
	wg.Wait()
	assert.EqualValues(t, limit+1, admitted.Load(), "admissions stop at the block, never later")
	assert.EqualValues(t, n-limit-1, refused.Load())
	assert.EqualValues(t, 1, blocked.Load(), "one block, reported once")
	assert.Equal(t, []int{limit + 1, limit + 1}, s.check(o).Failures, "each admitted failure counted once, on both counters")
}

func testLastChance(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	c := counter(gate.KindUsername, 3)
	o := op(c)
	a, r := s.begin(o)
	require.True(t, r.Admitted)
	assert.False(t, r.LastChance, "far from the limit")
	s.finish(a, false)
	s.fail(o, 2)
	a, r = s.begin(o)
	require.True(t, r.Admitted)
	assert.True(t, r.LastChance, "3 failures, limit 3: this one blocks if it fails")
	if r.Lockouts != nil {
		assert.Equal(t, []int{0}, r.Lockouts)
	}
	r = s.finish(a, false)
	require.Len(t, r.Blocked, 1, "the last chance failed")
	assert.Equal(t, 1, blocks(r.Transitions))
	assert.Equal(t, []int{4}, r.Failures)

	// Two counters: the one closest to its limit decides.
	o2 := op(counter(gate.KindIP, 5), counter(gate.KindUsername, 0))
	_, r = s.begin(o2)
	require.True(t, r.Admitted)
	assert.True(t, r.LastChance)
}

func testOneAtATimeAfterExpiry(t *testing.T, s *suite) {
	s.use(policy(300 * time.Millisecond))
	c := counter(gate.KindUsername, 1)
	o := op(c)
	s.fail(o, 1)
	require.NotEmpty(t, s.record(o, false).Blocked)
	s.eventually(func() bool { return !s.isBlocked(o) }, 5*time.Second, 20*time.Millisecond,
		"the block expires")
	assert.Equal(t, []int{2}, s.check(o).Failures, "failures outlive the block")

	a, r := s.begin(o)
	require.True(t, r.Admitted)
	assert.True(t, r.LastChance, "the next failure re-blocks")
	assert.Empty(t, r.Transitions, "expiry is not a transition")
	_, r = s.begin(o)
	assert.False(t, r.Admitted, "one attempt at a time")
	assert.Equal(t, []gate.Kind{gate.KindUsername}, r.Saturated)
	r = s.finish(a, false)
	require.Len(t, r.Blocked, 1, "re-blocked")
	require.Len(t, r.Transitions, 1)
	assert.Equal(t, 3, r.Transitions[0].Failures)
	assert.Equal(t, 2, r.Transitions[0].Lockouts)
}

func testSuccessClears(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	ip, user := counter(gate.KindIP, 1), counter(gate.KindUsername, 1)
	o := op(ip, user)
	first, r := s.begin(o)
	require.True(t, r.Admitted)
	second, r := s.begin(o)
	require.True(t, r.Admitted)
	s.finish(first, false)
	r = s.record(o, false) // the second failure blocks both
	require.Len(t, r.Blocked, 2)
	require.Equal(t, 2, blocks(r.Transitions))

	r = s.finish(second, true)
	assert.Empty(t, r.Blocked, "success lifts the blocks")
	assert.Equal(t, []int{0, 0}, r.Failures, "and clears the failures")
	require.Len(t, r.Transitions, 2, "one unblock per lifted block")
	for i, c := range []gate.Counter{ip, user} {
		assert.Equal(t, gate.Transition{Kind: c.Kind, Subject: c.Subject}, plain(t, r.Transitions[i]))
	}
	assert.Empty(t, s.check(o).Blocked)

	// Success removes only its own charge.
	a, r := s.begin(o)
	require.True(t, r.Admitted)
	b, r := s.begin(o)
	require.True(t, r.Admitted)
	r = s.finish(a, true)
	assert.Empty(t, r.Transitions, "nothing was blocked")
	r = s.finish(b, false)
	assert.Equal(t, []int{1, 1}, r.Failures, "the other charge is still pending and counts")
	// Success with nothing blocked makes no transition.
	r = s.record(o, true)
	assert.Empty(t, r.Transitions)
	assert.Equal(t, []int{0, 0}, r.Failures)
}

func testRecordSuccess(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	o := op(counter(gate.KindUsername, 3))
	s.fail(o, 3)
	r := s.record(o, true)
	assert.True(t, r.Admitted)
	assert.Equal(t, []int{0}, r.Failures)
	assert.Empty(t, r.Blocked)
	assert.Empty(t, r.Transitions)
	s.fail(o, 3) // the budget is whole again
}

// testKeepOnSuccess: a success leaves a KeepOnSuccess counter (combo
// mode's IP) as it is, while it clears the others; a Finish still removes
// its charge there.
func testKeepOnSuccess(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	ip, user := counter(gate.KindIP, 2), counter(gate.KindUsername, 2)
	ip.KeepOnSuccess = true
	o := op(ip, user)
	s.fail(o, 2)
	r := s.record(o, true)
	assert.Equal(t, []int{2, 0}, r.Failures, "Record: the kept counter keeps its failures")
	assert.Empty(t, r.Transitions)

	a, r := s.begin(o)
	require.True(t, r.Admitted)
	assert.True(t, r.LastChance, "2 failures kept, limit 2")
	r = s.finish(a, true)
	assert.Equal(t, []int{2, 0}, r.Failures, "Finish: the kept counter keeps its failures")
	a, r = s.begin(o)
	require.True(t, r.Admitted, "the success removed its charge from the kept counter")

	r = s.record(o, false)
	assert.Equal(t, []gate.Kind{gate.KindIP}, s.blockedKinds(r))
	require.Equal(t, 1, blocks(r.Transitions))
	r = s.finish(a, true)
	assert.Equal(t, []gate.Kind{gate.KindIP}, s.blockedKinds(r), "a success does not lift the kept counter's block")
	assert.Equal(t, []int{3, 0}, r.Failures)
	assert.Empty(t, r.Transitions)

	// Alone, as the gate counts it.
	only := op(gate.Counter{Kind: gate.KindIP, Subject: counter(gate.KindIP, 0).Subject, Limit: 3, KeepOnSuccess: true})
	s.fail(only, 1)
	assert.Equal(t, []int{1}, s.record(only, true).Failures)
	a, r = s.begin(only)
	require.True(t, r.Admitted)
	assert.Equal(t, []int{1}, s.finish(a, true).Failures)
}

func testUnknownToken(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	o := op(counter(gate.KindUsername, 3), counter(gate.KindIP, 3))
	r := s.finish(withToken(o), false)
	assert.Equal(t, []int{0, 0}, r.Failures, "unknown token: nothing counted")
	a, r := s.begin(o)
	require.True(t, r.Admitted)
	r = s.finish(a, false)
	assert.Equal(t, []int{1, 1}, r.Failures)
	r = s.finish(a, false)
	assert.Equal(t, []int{1, 1}, r.Failures, "a token counts once")
	r = s.finish(a, true)
	assert.Equal(t, []int{1, 1}, r.Failures, "a settled token's success clears nothing: an outcome takes effect once")
	assert.Empty(t, r.Transitions)
}

// testReplayedOutcome: the last chance's failure blocks; the same token
// reported again as a success (a replay, on this gate or another one
// sharing the store) lifts nothing.
func testReplayedOutcome(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	o := op(counter(gate.KindIP, 1), counter(gate.KindUsername, 1))
	s.fail(o, 1)
	last, r := s.begin(o)
	require.True(t, r.Admitted)
	require.True(t, r.LastChance)
	first := s.finish(last, false)
	require.Len(t, first.Blocked, 2, "the last chance's failure blocks")
	r = s.finish(last, true)
	assert.Len(t, r.Blocked, 2, "its replay as a success lifts nothing")
	againTransitions(t, first, r)
	assert.Equal(t, []int{2, 2}, r.Failures)
	assert.True(t, s.isBlocked(o))

	// A success reported again clears nothing the second time.
	o = op(counter(gate.KindUsername, 5))
	a, r := s.begin(o)
	require.True(t, r.Admitted)
	assert.Equal(t, []int{0}, s.finish(a, true).Failures)
	s.fail(o, 2)
	assert.Equal(t, []int{2}, s.finish(a, true).Failures, "a success replayed clears nothing")
}

func testFailureWhileBlocked(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	c := counter(gate.KindUsername, 2)
	o := op(c)
	a, r := s.begin(o)
	require.True(t, r.Admitted)
	require.False(t, r.LastChance)
	s.fail(o, 1)
	r = s.record(o, false)
	require.Len(t, r.Blocked, 1)
	require.Len(t, r.Transitions, 1)
	r = s.finish(a, false)
	assert.Len(t, r.Blocked, 1, "still blocked")
	assert.Empty(t, r.Transitions, "an already blocked subject stays as it is")
	assert.Equal(t, []int{3}, r.Failures, "the admitted attempt's failure counts, once")

	// A last chance's failure reported while blocked counts too.
	o = op(counter(gate.KindUsername, 0))
	a, r = s.begin(o)
	require.True(t, r.LastChance)
	r = s.record(o, false)
	require.Len(t, r.Transitions, 1)
	r = s.finish(a, false)
	assert.Empty(t, r.Transitions)
	assert.Equal(t, []int{2}, r.Failures)
}

func testPendingExpiry(t *testing.T, s *suite) {
	p := policy(time.Minute)
	p.PendingTimeout = 200 * time.Millisecond
	s.use(p)
	ip, user := counter(gate.KindIP, 5), counter(gate.KindUsername, 1)
	o := op(ip, user)
	first, r := s.begin(o)
	require.True(t, r.Admitted)
	_, r = s.begin(o)
	require.True(t, r.Admitted)
	assert.True(t, r.LastChance)
	_, r = s.begin(o)
	require.False(t, r.Admitted, "saturated while the charges are pending")
	before := s.check(o).Failures

	s.clock.Sleep(300 * time.Millisecond) // let both charges expire
	r = s.check(o)
	assert.Equal(t, before, r.Failures, "Check writes nothing: it turns no charge into a failure")
	assert.Empty(t, r.Blocked)
	assert.Empty(t, r.Transitions)
	_, r = s.begin(o)
	assert.False(t, r.Admitted, "the two abandoned charges became failures and blocked")
	assert.Equal(t, []int{2, 2}, r.Failures)
	assert.Equal(t, []gate.Kind{gate.KindUsername}, s.blockedKinds(r))
	require.Len(t, r.Transitions, 1, "the call that found them reports the block")
	assert.Equal(t, gate.Transition{Kind: user.Kind, Subject: user.Subject, Blocked: true,
		Duration: time.Minute, Failures: 2, Lockouts: 1}, plain(t, r.Transitions[0]))

	r = s.finish(first, false)
	assert.Equal(t, []int{2, 2}, r.Failures, "an expired charge counts once")
	assert.Empty(t, r.Transitions)

	// A last chance's success reported after its charge expired lifts
	// nothing: the charge is the failure it turned into.
	late := op(counter(gate.KindUsername, 0))
	a, r := s.begin(late)
	require.True(t, r.LastChance)
	s.clock.Sleep(300 * time.Millisecond)
	r = s.finish(a, true)
	assert.Len(t, r.Blocked, 1, "a late success lifts nothing")
	assert.Equal(t, []int{1}, r.Failures)

	// Finish and Record settle expired charges too.
	for _, settle := range []string{"finish", "record"} {
		o := op(counter(gate.KindUsername, 0))
		_, r := s.begin(o)
		require.True(t, r.Admitted)
		s.clock.Sleep(300 * time.Millisecond)
		if settle == "finish" {
			r = s.finish(withToken(o), false)
		} else {
			r = s.record(o, true) // refused: the expired charge blocked first
		}
		assert.Equal(t, []int{1}, r.Failures, settle)
		assert.Len(t, r.Blocked, 1, settle)
		assert.Equal(t, 1, blocks(r.Transitions), settle)
		assert.False(t, r.Admitted, "%s: not admitted (Record: refused by the block the expired charge made)", settle)
	}
}

// testExpiredChargesSlide: a pending charge found expired late counts as
// a failure at its deadline, so a window that closed since forgets it; an
// attempt counted at Begin slides its counter from Begin.
func testExpiredChargesSlide(t *testing.T, s *suite) {
	p := policy(time.Minute)
	p.AttemptCooloff = 300 * time.Millisecond
	p.PendingTimeout = time.Second
	s.use(p)
	o := op(counter(gate.KindUsername, 0)) // limit 0: a last chance, pending
	start := s.clock.Now()
	_, r := s.begin(o) // deadline start+1s: a failure until start+1.3s
	require.True(t, r.Admitted)
	require.True(t, r.LastChance)
	s.sleepUntil(start.Add(1450 * time.Millisecond))
	_, r = s.begin(o)
	assert.Empty(t, r.Blocked, "the expired charge's failure was forgotten a cool-off after its deadline")
	assert.True(t, r.Admitted)
	assert.Empty(t, r.Transitions)

	o = op(counter(gate.KindUsername, 5))
	_, r = s.begin(o)
	require.True(t, r.Admitted)
	if r.Counted == nil {
		return // every charge pending: the case above
	}
	assert.Equal(t, []int{1}, r.Failures, "counted at Begin")
	s.clock.Sleep(600 * time.Millisecond)
	assert.Equal(t, []int{0}, s.check(o).Failures, "forgotten a cool-off after Begin")
}

func testPendingNeverExpires(t *testing.T, s *suite) {
	p := policy(time.Minute)
	p.PendingTimeout = 0
	s.use(p)
	o := op(counter(gate.KindUsername, 0))
	a, r := s.begin(o)
	require.True(t, r.Admitted)
	s.clock.Sleep(50 * time.Millisecond)
	_, r = s.begin(o)
	assert.False(t, r.Admitted)
	assert.Equal(t, []int{0}, r.Failures, "a charge without timeout never turns into a failure")
	assert.NotEmpty(t, r.Saturated)
	r = s.finish(a, false)
	assert.Equal(t, []int{1}, r.Failures)
	assert.Len(t, r.Blocked, 1)
}

func testSlidingCooloff(t *testing.T, s *suite) {
	const cooloff = 2 * time.Second
	p := policy(time.Minute)
	p.AttemptCooloff = cooloff
	s.use(p)
	// The check must fall after the first failures' window and inside the
	// renewed one. A machine too busy to keep that order gets the
	// scenario again on a fresh subject; the assertion itself is exact.
	for try := 1; ; try++ {
		o := op(counter(gate.KindIP, 10))
		s.fail(o, 2)
		firstDone := s.clock.Now()
		s.clock.Sleep(cooloff / 2)
		renewStart := s.clock.Now()
		s.fail(o, 1) // renews the window
		s.sleepUntil(firstDone.Add(cooloff + 200*time.Millisecond))
		got := s.check(o).Failures
		if s.clock.Now().Sub(renewStart) >= cooloff-100*time.Millisecond {
			require.Less(t, try, 5, "the machine never gave the check its window")
			continue
		}
		assert.Equal(t, []int{3}, got, "each failure renews the window")
		s.eventually(func() bool { return s.check(o).Failures[0] == 0 }, 10*time.Second, 20*time.Millisecond,
			"failures are forgotten a cool-off after the last one")
		r := s.record(o, false)
		assert.Equal(t, []int{1}, r.Failures, "counting starts over")
		return
	}
}

// testAttemptCooloffZero: without an attempt cool-off, failures are never
// forgotten (within what a test can wait).
func testAttemptCooloffZero(t *testing.T, s *suite) {
	p := policy(time.Minute)
	p.AttemptCooloff = 0
	s.use(p)
	o := op(counter(gate.KindIP, 5))
	s.fail(o, 2)
	s.clock.Sleep(500 * time.Millisecond)
	assert.Equal(t, []int{2}, s.check(o).Failures)
	assert.Equal(t, []int{3}, s.record(o, false).Failures)
}

func testLockoutEscalation(t *testing.T, s *suite) {
	p := policy(0)
	p.LockoutCooloffs = []time.Duration{time.Second, 2 * time.Second, 0}
	s.use(p)
	c := counter(gate.KindUsername, 0)
	o := op(c)
	for i, want := range []gate.Transition{
		{Duration: time.Second, Failures: 1, Lockouts: 1},
		{Duration: 2 * time.Second, Failures: 2, Lockouts: 2},
		{Permanent: true, Failures: 3, Lockouts: 3},
	} {
		var r gate.Result
		if i == 0 {
			r = s.record(o, false)
		} else {
			s.eventually(func() bool { return !s.isBlocked(o) }, 5*time.Second, 20*time.Millisecond,
				"lockout %d expires", i)
			a, rb := s.begin(o)
			require.True(t, rb.Admitted)
			if rb.Lockouts != nil {
				assert.Equal(t, []int{i}, rb.Lockouts, "lockouts so far")
			}
			r = s.finish(a, false)
		}
		require.Len(t, r.Transitions, 1, "lockout %d", i+1)
		want.Kind, want.Subject, want.Blocked = c.Kind, c.Subject, true
		assert.Equal(t, want, plain(t, r.Transitions[0]), "lockout %d", i+1)
		require.Len(t, r.Blocked, 1)
		assert.Equal(t, want.Permanent, r.Blocked[0].Permanent)
	}
	st := s.check(o).Blocked
	require.Len(t, st, 1)
	assert.True(t, st[0].Permanent)
	assert.Zero(t, st[0].TTL)
}

func testLockoutMemory(t *testing.T, s *suite) {
	p := policy(0)
	p.LockoutCooloffs = []time.Duration{300 * time.Millisecond, long}
	p.LockoutMemory = 600 * time.Millisecond
	s.use(p)
	c := counter(gate.KindUsername, 0)
	o := op(c)
	r := s.record(o, false)
	require.Len(t, r.Transitions, 1)
	require.Equal(t, 1, r.Transitions[0].Lockouts)
	s.clock.Sleep(900 * time.Millisecond) // block and lockout memory both gone
	require.False(t, s.isBlocked(o))
	r = s.record(o, false)
	require.Len(t, r.Transitions, 1)
	assert.Equal(t, 1, r.Transitions[0].Lockouts, "the earlier lockout is forgotten")
	assert.Equal(t, 300*time.Millisecond, r.Transitions[0].Duration, "so the first cool-off applies again")
}

// testLockoutMemoryZero: without a lockout memory every lockout is the
// first: its cool-off is the first one, and Begin reports none so far.
func testLockoutMemoryZero(t *testing.T, s *suite) {
	p := policy(0)
	p.LockoutCooloffs = []time.Duration{200 * time.Millisecond, long}
	p.LockoutMemory = 0
	s.use(p)
	c := counter(gate.KindUsername, 0)
	o := op(c)
	for i := 1; i <= 3; i++ {
		r := s.record(o, false)
		require.Len(t, r.Transitions, 1, "lockout %d", i)
		assert.Equal(t, 1, r.Transitions[0].Lockouts, "lockout %d", i)
		assert.Equal(t, 200*time.Millisecond, r.Transitions[0].Duration, "lockout %d", i)
		s.eventually(func() bool { return !s.isBlocked(o) }, 5*time.Second, 20*time.Millisecond, "lockout %d expires", i)
	}
	// A last chance: a store reads the lockouts so far for it.
	_, r := s.begin(op(gate.Counter{Kind: c.Kind, Subject: c.Subject, Limit: 3}))
	require.True(t, r.Admitted)
	require.True(t, r.LastChance, "3 failures, limit 3")
	if r.Lockouts != nil {
		assert.Equal(t, []int{0}, r.Lockouts)
	}
}

func testPermanent(t *testing.T, s *suite) {
	s.use(policy(0))
	c := counter(gate.KindIP, 1)
	o := op(c)
	s.fail(o, 1)
	r := s.record(o, false)
	require.Len(t, r.Blocked, 1)
	assert.Equal(t, gate.BlockState{Kind: c.Kind, Subject: c.Subject, Permanent: true}, r.Blocked[0])
	require.Len(t, r.Transitions, 1)
	assert.True(t, r.Transitions[0].Permanent)
	assert.Zero(t, r.Transitions[0].Duration)
	assert.Equal(t, []gate.BlockState{{Kind: c.Kind, Subject: c.Subject, Permanent: true}}, s.check(o).Blocked)
}

func testTwoCounters(t *testing.T, s *suite) {
	ip, user := counter(gate.KindIP, 2), counter(gate.KindUsername, 1)
	p := policy(time.Minute)
	s.use(p)
	both := op(ip, user)
	s.fail(both, 1)
	r := s.record(both, false)
	assert.Equal(t, []int{2, 2}, r.Failures)
	assert.Equal(t, []gate.Kind{gate.KindUsername}, s.blockedKinds(r), "each counter has its own limit")
	require.Len(t, r.Transitions, 1)
	assert.Equal(t, user.Subject, r.Transitions[0].Subject)

	r = s.record(both, false)
	assert.Equal(t, []int{2, 2}, r.Failures, "refused by the username block: nothing counted")
	assert.False(t, r.Admitted)
	ipOnly := op(ip)
	assert.Empty(t, s.check(ipOnly).Blocked, "the IP is not blocked")

	other := counter(gate.KindUsername, 5)
	r = s.record(op(ip, other), false)
	assert.True(t, r.Admitted)
	assert.Equal(t, []int{3, 1}, r.Failures)
	assert.Equal(t, []gate.Kind{gate.KindIP}, s.blockedKinds(r))

	r = s.check(both)
	require.Len(t, r.Blocked, 2, "both listed, in Op.Counters order")
	assert.Equal(t, ip.Subject, r.Blocked[0].Subject)
	assert.Equal(t, user.Subject, r.Blocked[1].Subject)
	assert.Equal(t, []int{3, 2}, r.Failures)
}

func testAdminBlockUnblock(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	for _, kind := range gate.Kinds {
		c := counter(kind, 3)
		o := op(c)
		tr, err := s.store.Block(s.ctx, kind, c.Subject, time.Hour)
		require.NoError(t, err)
		require.NotNil(t, tr, "%s: new block", kind)
		assert.Equal(t, gate.Transition{Kind: kind, Subject: c.Subject, Blocked: true, Duration: time.Hour}, plain(t, *tr))
		st := s.check(o).Blocked
		require.Len(t, st, 1)
		assert.InDelta(t, float64(time.Hour), float64(st[0].TTL), float64(time.Minute))

		tr, err = s.store.Block(s.ctx, kind, c.Subject, 2*time.Hour)
		require.NoError(t, err)
		assert.Nil(t, tr, "%s: replacing a block is no transition", kind)
		st = s.check(o).Blocked
		require.Len(t, st, 1)
		assert.InDelta(t, float64(2*time.Hour), float64(st[0].TTL), float64(time.Minute), "the new block's duration")

		tr, err = s.store.Block(s.ctx, kind, c.Subject, 0)
		require.NoError(t, err)
		assert.Nil(t, tr, "%s: replacing a block is no transition", kind)
		assert.Equal(t, []gate.BlockState{{Kind: kind, Subject: c.Subject, Permanent: true}}, s.check(o).Blocked,
			"the new block replaced the old")
		_, r := s.begin(o)
		assert.False(t, r.Admitted)

		tr, err = s.store.Unblock(s.ctx, kind, c.Subject)
		require.NoError(t, err)
		require.NotNil(t, tr)
		assert.Equal(t, gate.Transition{Kind: kind, Subject: c.Subject}, plain(t, *tr))
		assert.Empty(t, s.check(o).Blocked)
		tr, err = s.store.Unblock(s.ctx, kind, c.Subject)
		require.NoError(t, err)
		assert.Nil(t, tr, "%s: nothing to unblock", kind)
	}
	// An automatic block replaced by hand, and a subject never seen.
	c := counter(gate.KindUsername, 0)
	r := s.record(op(c), false)
	require.Len(t, r.Transitions, 1)
	tr, err := s.store.Block(s.ctx, c.Kind, c.Subject, time.Hour)
	require.NoError(t, err)
	assert.Nil(t, tr, "already blocked")
	tr, err = s.store.Unblock(s.ctx, gate.KindIP, counter(gate.KindIP, 0).Subject)
	require.NoError(t, err)
	assert.Nil(t, tr)
	// An expired block is not lifted by Unblock: no transition.
	c = counter(gate.KindIP, 0)
	_, err = s.store.Block(s.ctx, c.Kind, c.Subject, 100*time.Millisecond)
	require.NoError(t, err)
	s.eventually(func() bool { return !s.isBlocked(op(c)) },
		5*time.Second, 20*time.Millisecond, "the block expires")
	tr, err = s.store.Unblock(s.ctx, c.Kind, c.Subject)
	require.NoError(t, err)
	assert.Nil(t, tr, "expiry already ended the block")
}

func testUnblockForgets(t *testing.T, s *suite) {
	p := policy(time.Minute)
	p.LockoutCooloffs = []time.Duration{time.Minute, time.Hour}
	s.use(p)
	c := counter(gate.KindUsername, 1)
	o := op(c)
	s.fail(o, 1)
	r := s.record(o, false)
	require.Len(t, r.Transitions, 1)
	_, err := s.store.Unblock(s.ctx, c.Kind, c.Subject)
	require.NoError(t, err)
	assert.Equal(t, []int{0}, s.check(o).Failures, "failures forgotten")

	// Pending charges forgotten: the whole budget is free again.
	for i := 0; i < 2; i++ {
		_, r := s.begin(o)
		require.True(t, r.Admitted)
	}
	_, err = s.store.Unblock(s.ctx, c.Kind, c.Subject)
	require.NoError(t, err)
	for i := 0; i < 2; i++ {
		_, r := s.begin(o)
		require.True(t, r.Admitted, "pending charges forgotten (%d)", i)
	}
	_, err = s.store.Unblock(s.ctx, c.Kind, c.Subject)
	require.NoError(t, err)

	// Lockout history forgotten: the next lockout is a first one.
	s.fail(o, 1)
	r = s.record(o, false)
	require.Len(t, r.Transitions, 1)
	assert.Equal(t, 1, r.Transitions[0].Lockouts)
	assert.Equal(t, time.Minute, r.Transitions[0].Duration)
}

func testBlockedList(t *testing.T, s *suite) {
	s.use(policy(time.Hour))
	kind := gate.KindUsername
	forever, hour, brief := counter(kind, 0), counter(kind, 0), counter(kind, 0)
	for c, d := range map[gate.Counter]time.Duration{forever: 0, hour: time.Hour, brief: 300 * time.Millisecond} {
		_, err := s.store.Block(s.ctx, kind, c.Subject, d)
		require.NoError(t, err)
	}
	auto := counter(kind, 0)
	// An attempt admitted before the block began: its success lifts it.
	admitted, r := s.begin(op(auto))
	require.True(t, r.Admitted)
	require.Len(t, s.record(op(auto), false).Transitions, 1)
	ipBlocked := counter(gate.KindIP, 0)
	_, err := s.store.Block(s.ctx, gate.KindIP, ipBlocked.Subject, time.Hour)
	require.NoError(t, err)

	mine := func(kind gate.Kind) map[string]gate.BlockState {
		list, err := s.store.Blocked(s.ctx, kind, 0)
		require.NoError(t, err)
		out := map[string]gate.BlockState{}
		for _, b := range list {
			assert.Equal(t, kind, b.Kind)
			if b.Permanent {
				assert.Zero(t, b.TTL)
			} else {
				assert.Greater(t, b.TTL, time.Duration(0))
			}
			_, dup := out[b.Subject]
			assert.False(t, dup, "listed twice: %q", b.Subject)
			switch b.Subject {
			case forever.Subject, hour.Subject, brief.Subject, auto.Subject, ipBlocked.Subject:
				out[b.Subject] = b
			}
		}
		return out
	}
	got := mine(kind)
	require.Contains(t, got, forever.Subject)
	assert.True(t, got[forever.Subject].Permanent)
	require.Contains(t, got, hour.Subject)
	assert.InDelta(t, float64(time.Hour), float64(got[hour.Subject].TTL), float64(time.Minute))
	assert.Contains(t, got, auto.Subject)
	assert.NotContains(t, got, ipBlocked.Subject, "other kinds are not listed")
	assert.Contains(t, mine(gate.KindIP), ipBlocked.Subject)

	for _, limit := range []int{1, 2} {
		list, err := s.store.Blocked(s.ctx, kind, limit)
		require.NoError(t, err)
		assert.Len(t, list, limit, "at most limit, and there are more")
	}

	s.eventually(func() bool {
		_, ok := mine(kind)[brief.Subject]
		return !ok
	}, 5*time.Second, 20*time.Millisecond, "an expired block is not listed")

	_, err = s.store.Unblock(s.ctx, kind, hour.Subject)
	require.NoError(t, err)
	r = s.record(op(auto), true)
	require.Empty(t, r.Transitions, "Record refuses a blocked subject, success or not")
	_, err = s.store.Finish(s.ctx, admitted, true)
	require.NoError(t, err)
	got = mine(kind)
	assert.NotContains(t, got, hour.Subject, "unblocked")
	assert.NotContains(t, got, auto.Subject, "lifted by a success")
	assert.Contains(t, got, forever.Subject)
}

func testTransitionsOnce(t *testing.T, s *suite) {
	const n = 40
	run := func(f func(i int) []gate.Transition) (blocked, unblocked int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ts := f(i)
				mu.Lock()
				defer mu.Unlock()
				for _, tr := range ts {
					if tr.Blocked {
						blocked++
					} else {
						unblocked++
					}
				}
			}()
		}
		wg.Wait()
		return blocked, unblocked
	}
	p := policy(time.Minute)
	s.use(p)
	ip, user := counter(gate.KindIP, n-1), counter(gate.KindUsername, n-1)
	o := op(ip, user)
	var tickets []gate.Op
	for i := 0; i < n; i++ {
		a, r := s.begin(o)
		require.True(t, r.Admitted)
		tickets = append(tickets, a)
	}
	b, u := run(func(i int) []gate.Transition {
		r, err := s.store.Finish(s.ctx, tickets[i], false)
		assert.NoError(t, err)
		return r.Transitions
	})
	assert.Equal(t, 2, b, "racing failures: one block per counter")
	assert.Zero(t, u)

	// Successes of attempts admitted before an admin block.
	ip, user = counter(gate.KindIP, n-1), counter(gate.KindUsername, n-1)
	o = op(ip, user)
	tickets = tickets[:0]
	for i := 0; i < n; i++ {
		a, r := s.begin(o)
		require.True(t, r.Admitted)
		tickets = append(tickets, a)
	}
	for _, c := range []gate.Counter{ip, user} {
		_, err := s.store.Block(s.ctx, c.Kind, c.Subject, time.Hour)
		require.NoError(t, err)
	}
	b, u = run(func(i int) []gate.Transition {
		r, err := s.store.Finish(s.ctx, tickets[i], true)
		assert.NoError(t, err)
		return r.Transitions
	})
	assert.Zero(t, b)
	assert.Equal(t, 2, u, "racing successes: one unblock per counter")

	// Racing Records, one in ten a success: some run of failures blocks
	// (36 failures, at most 5 runs), and no success is counted once
	// blocked, so nothing lifts the block.
	c := counter(gate.KindUsername, 3)
	b, u = run(func(i int) []gate.Transition {
		r, err := s.store.Record(s.ctx, withToken(op(c)), i%10 == 9)
		assert.NoError(t, err)
		return r.Transitions
	})
	assert.Equal(t, 1, b, "racing Record failures: one block")
	assert.Zero(t, u, "a success is never counted while blocked")
	assert.True(t, s.isBlocked(op(c)))

	c = counter(gate.KindIP, 3)
	b, u = run(func(i int) []gate.Transition {
		var out []gate.Transition
		tr, err := s.store.Block(s.ctx, c.Kind, c.Subject, time.Minute)
		assert.NoError(t, err)
		if tr != nil {
			out = append(out, *tr)
		}
		return out
	})
	assert.Equal(t, 1, b, "racing admin blocks: one block")
	_, u = run(func(i int) []gate.Transition {
		var out []gate.Transition
		tr, err := s.store.Unblock(s.ctx, c.Kind, c.Subject)
		assert.NoError(t, err)
		if tr != nil {
			out = append(out, *tr)
		}
		return out
	})
	assert.Equal(t, 1, u, "racing admin unblocks: one unblock")
}

func testHostileSubjects(t *testing.T, s *suite) {
	base := random(6)
	// Pairs (a, b) where a, read as a glob pattern or a key fragment,
	// would match or contain b.
	hostile := [][2]string{
		{base + "*", base + "x"},
		{base + "?", base + "y"},
		{base + "[xy]", base + "x"},
		{base + "[^a]", base + "b"},
		{base + `\*`, base + "*"},
		{base + ":", base + ":blocked"},
		{base + ":ip:", base + ":ip:x"},
		{"{" + base + "}", "{" + base + "}x"},
		{base + " sp ace", base + "\t\n"},
		{base + "ünïcødé ☃", base + "unicode"},
		{base + "\x00nul", base},
		{base + "%s%d", base + "%"},
		{base + strings.Repeat("ℵ", 1024), base + strings.Repeat("ℵ", 1023)},
	}
	p := policy(time.Minute)
	s.use(p)
	for _, kind := range []gate.Kind{gate.KindIP, gate.KindUsername, gate.KindPair} {
		for _, h := range hostile {
			a := gate.Counter{Kind: kind, Subject: h[0], Limit: 0}
			b := gate.Counter{Kind: kind, Subject: h[1], Limit: 0}
			if kind == gate.KindIP {
				a.Subject, b.Subject = "ip"+a.Subject, "ip"+b.Subject
			}
			oa, ob := op(a), op(b)
			r := s.record(oa, false)
			require.Len(t, r.Blocked, 1, "%s %q blocks", kind, a.Subject)
			assert.Equal(t, a.Subject, r.Blocked[0].Subject)
			assert.Equal(t, []int{0}, s.check(ob).Failures, "%s %q untouched by %q", kind, b.Subject, a.Subject)
			assert.Empty(t, s.check(ob).Blocked)

			list, err := s.store.Blocked(s.ctx, kind, 0)
			require.NoError(t, err)
			found := 0
			for _, st := range list {
				if st.Subject == a.Subject {
					found++
				}
				assert.NotEqual(t, b.Subject, st.Subject)
			}
			assert.Equal(t, 1, found, "%s %q listed intact", kind, a.Subject)

			_, err = s.store.Block(s.ctx, kind, b.Subject, time.Minute)
			require.NoError(t, err)
			tr, err := s.store.Unblock(s.ctx, kind, a.Subject)
			require.NoError(t, err)
			require.NotNil(t, tr)
			assert.Equal(t, a.Subject, tr.Subject)
			assert.Len(t, s.check(ob).Blocked, 1, "%s: unblocking %q leaves %q blocked", kind, a.Subject, b.Subject)
			_, err = s.store.Unblock(s.ctx, kind, b.Subject)
			require.NoError(t, err)
		}
	}
	// The same subject under two kinds is two subjects.
	subject := "198.51.100." + random(4)
	r := s.record(op(gate.Counter{Kind: gate.KindIP, Subject: subject}), false)
	require.Len(t, r.Blocked, 1)
	assert.Empty(t, s.check(op(gate.Counter{Kind: gate.KindUsername, Subject: subject})).Blocked)
}

func testInvalidOps(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	c := counter(gate.KindUsername, 1)
	bad := map[string]gate.Op{
		"no counters":    {Token: "t"},
		"repeated kinds": {Counters: []gate.Counter{c, c}, Token: "t"},
		"unknown kind":   {Counters: []gate.Counter{{Kind: "mac", Subject: "x"}}, Token: "t"},
		"empty subject":  {Counters: []gate.Counter{{Kind: gate.KindIP}}, Token: "t"},
		"negative limit": {Counters: []gate.Counter{{Kind: gate.KindIP, Subject: c.Subject, Limit: -1}}, Token: "t"},
	}
	for name, o := range bad {
		s.refusesEveryOp(s.store, o, name)
	}
	_, err := s.store.Begin(s.ctx, gate.Op{Counters: []gate.Counter{c}})
	assert.Error(t, err, "Begin without a token")
	_, err = s.store.Finish(s.ctx, gate.Op{Counters: []gate.Counter{c}}, false)
	assert.Error(t, err, "Finish without a token")
	_, err = s.store.Block(s.ctx, gate.KindIP, "192.0.2.1", -time.Second)
	assert.Error(t, err, "negative block")
	_, err = s.store.Blocked(s.ctx, gate.Kind("nope"), 0)
	assert.Error(t, err, "unknown kind")

	// A store built with an invalid policy refuses every op. A negative
	// lockout cool-off is no permanent block: every store refuses it, as
	// it refuses any negative duration.
	invalid := func(f func(p *gate.Policy)) gate.Policy {
		p := policy(time.Minute)
		f(&p)
		return p
	}
	policies := map[string]gate.Policy{
		"no cool-offs":              invalid(func(p *gate.Policy) { p.LockoutCooloffs = nil }),
		"negative cool-off":         invalid(func(p *gate.Policy) { p.LockoutCooloffs = []time.Duration{time.Minute, -time.Second} }),
		"negative attempt cool-off": invalid(func(p *gate.Policy) { p.AttemptCooloff = -time.Second }),
		"negative pending timeout":  invalid(func(p *gate.Policy) { p.PendingTimeout = -time.Second }),
		"negative lockout memory":   invalid(func(p *gate.Policy) { p.LockoutMemory = -time.Second }),
	}
	for name, p := range policies {
		store, _ := s.newStore(t, p)
		s.refusesEveryOp(store, op(c), name)
	}
	// Nothing was counted for the subject of the refused ops.
	assert.Equal(t, []int{0}, s.check(op(c)).Failures)
}

// refusesEveryOp asserts that store refuses o in Check, Begin, Finish
// and Record.
func (s *suite) refusesEveryOp(store gate.Store, o gate.Op, name string) {
	s.t.Helper()
	_, err := store.Check(s.ctx, o)
	assert.Error(s.t, err, "Check: %s", name)
	_, err = store.Begin(s.ctx, o)
	assert.Error(s.t, err, "Begin: %s", name)
	_, err = store.Finish(s.ctx, o, false)
	assert.Error(s.t, err, "Finish: %s", name)
	_, err = store.Record(s.ctx, o, false)
	assert.Error(s.t, err, "Record: %s", name)
}

// testLastChanceBelowTheLimit: a last chance stays in flight while its
// counter falls back below the limit (the success of an attempt admitted
// before it clears the count; on a counter of distinct members, the
// sprayer's own login takes its name back), and another counter then
// sends an attempt to the full rules, which give the counter a second
// last chance. Its pending charges fill its budget although its count is
// below the limit: the next attempt is refused, as saturated. A store
// that counts an attempt below the limit without reading the charges in
// flight admits one guess more for each time this is repeated.
func testLastChanceBelowTheLimit(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	t.Run("count", func(t *testing.T) {
		user := counter(gate.KindUsername, 3)
		from := func() gate.Op { return op(counter(gate.KindIP, 1), user) }
		first, r := s.begin(from())
		require.True(t, r.Admitted)
		s.record(from(), false)
		s.record(from(), false)
		_, r = s.begin(from())
		require.True(t, r.Admitted)
		require.True(t, r.LastChance, "the username's last chance, held open")
		s.finish(first, true) // clears the username's count; the last chance stays in flight

		// Since the success, limit attempts fit beside the last chance:
		// the second from one address is sent to the full rules by its
		// address's limit.
		ip := counter(gate.KindIP, 1)
		admitted := 0
		for i, o := range []gate.Op{from(), op(ip, user), op(ip, user), from()} {
			_, r = s.begin(o)
			if r.Admitted {
				admitted++
			} else {
				assert.Equal(t, 3, i, "attempt %d refused", i+1)
			}
		}
		assert.Equal(t, 3, admitted, "3 attempts beside the last chance: limit+1 in flight")
		assert.False(t, r.Admitted, "the budget is full")
		assert.Contains(t, r.Saturated, gate.KindUsername)
		assert.Empty(t, r.Blocked, "saturated, not blocked")
	})
	t.Run("distinct", func(t *testing.T) {
		net := spray(3, "x")
		from := func(name string) gate.Op { return as(op(counter(gate.KindIP, 1), net), name) }
		for _, u := range []string{"mine", "n1", "n2"} {
			s.record(from(u), false)
		}
		_, r := s.begin(from("m1"))
		require.True(t, r.Admitted)
		require.True(t, r.LastChance, "the source's last chance, held open")
		own, r := s.begin(from("mine"))
		require.True(t, r.Admitted, "a name counted already is admitted")
		r = s.finish(own, true)
		assert.Equal(t, []int{0, 2}, r.Failures, "the sprayer's own login takes its name back")

		// One more name fits: its address's second attempt goes to the
		// full rules, which give the source a second last chance.
		ip := counter(gate.KindIP, 1)
		s.record(as(op(ip, net), "n1"), false)
		_, r = s.begin(as(op(ip, net), "m2"))
		require.True(t, r.Admitted)
		assert.True(t, r.LastChance)
		_, r = s.begin(from("m3"))
		assert.False(t, r.Admitted, "2 names failed and 2 in flight: limit+1")
		assert.Contains(t, r.Saturated, gate.KindSpray)
	})
}

// plain is tr without At, which a store may leave zero or set to when it
// made tr (its clock, within a minute of the test's); tr checked for that.
func plain(t *testing.T, tr gate.Transition) gate.Transition {
	t.Helper()
	if !tr.At.IsZero() {
		assert.WithinDuration(t, time.Now(), tr.At, time.Minute, "a transition's At is when the store made it")
	}
	tr.At = time.Time{}
	return tr
}

// againTransitions checks the transitions of an outcome reported again
// (again) against those of its first report (first): none, or the same,
// At included (see gate.Store's Finish).
func againTransitions(t *testing.T, first, again gate.Result) {
	t.Helper()
	if len(again.Transitions) > 0 {
		assert.Equal(t, first.Transitions, again.Transitions, "an outcome reported again replies the first report's transitions, if any")
	}
}
