package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// spray is a counter of distinct members (spraying) of a fresh source,
// counting member.
func spray(limit int, member string) gate.Counter {
	c := counter(gate.KindSpray, limit)
	c.Subject = counter(gate.KindIP, 0).Subject
	c.Member = member
	return c
}

// as is o with every counter of distinct members counting member.
func as(o gate.Op, member string) gate.Op {
	o.Counters = append([]gate.Counter(nil), o.Counters...)
	for i := range o.Counters {
		if o.Counters[i].Member != "" {
			o.Counters[i].Member = member
		}
	}
	return withToken(o)
}

// testDistinctMembers: a counter of distinct members counts each member
// once, and the failure of the member that takes it above its limit
// blocks; a blocked counter refuses every member, known ones included.
func testDistinctMembers(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	o := op(spray(3, "x"))
	for i, u := range []string{"alice", "bob", "carol"} {
		r := s.record(as(o, u), false)
		require.True(t, r.Admitted)
		assert.Empty(t, r.Blocked)
		assert.Equal(t, []int{i + 1}, r.Failures, "a new name counts one")
	}
	for range 5 {
		r := s.record(as(o, "bob"), false)
		assert.Empty(t, r.Blocked, "a name counted already adds nothing")
		assert.Equal(t, []int{3}, r.Failures)
	}
	r := s.record(as(o, "dave"), false)
	require.Len(t, r.Blocked, 1, "the fourth name blocks")
	assert.Equal(t, gate.KindSpray, r.Blocked[0].Kind)
	require.Len(t, r.Transitions, 1)
	assert.Equal(t, gate.Transition{Kind: gate.KindSpray, Subject: o.Counters[0].Subject, Blocked: true,
		Duration: time.Minute, Failures: 4, Lockouts: 1}, plain(t, r.Transitions[0]))
	assert.Equal(t, []int{4}, r.Failures)

	r = s.record(as(o, "alice"), true)
	assert.False(t, r.Admitted, "blocked: even a known name is refused")
	_, r = s.begin(as(o, "erin"))
	assert.False(t, r.Admitted)
	assert.Len(t, r.Blocked, 1)
	assert.Equal(t, []int{4}, s.check(as(o, "x")).Failures, "refused attempts count nothing")
}

// testDistinctSuccess: a success removes its own member and nothing else:
// the other names keep counting, and no success lifts the block.
func testDistinctSuccess(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	o := op(spray(3, "x"))
	s.record(as(o, "a"), false)
	s.record(as(o, "b"), false)
	r := s.record(as(o, "mine"), true)
	assert.Equal(t, []int{2}, r.Failures, "the sprayer's own login resets nothing")
	assert.Empty(t, r.Transitions)
	r = s.record(as(o, "a"), true)
	assert.Equal(t, []int{1}, r.Failures, "a name that logs in stops counting")

	// Begin counts a new name at once; its success takes it back.
	a, r := s.begin(as(o, "c"))
	require.True(t, r.Admitted)
	assert.Equal(t, []int{2}, r.Failures)
	r = s.finish(a, true)
	assert.Equal(t, []int{1}, r.Failures)
	// A known name is admitted without a charge; its success removes it.
	a, r = s.begin(as(o, "b"))
	require.True(t, r.Admitted)
	assert.Equal(t, []int{1}, r.Failures)
	r = s.finish(a, true)
	assert.Equal(t, []int{0}, r.Failures)

	// Blocked: an attempt admitted before the block succeeds, the block stays.
	for _, u := range []string{"d", "e", "f"} {
		s.record(as(o, u), false)
	}
	early, r := s.begin(as(o, "g")) // the last chance
	require.True(t, r.Admitted)
	require.True(t, r.LastChance)
	r = s.record(as(o, "h"), false)
	require.Len(t, r.Blocked, 1, "the fourth name blocks")
	r = s.finish(early, true)
	assert.Len(t, r.Blocked, 1, "no success lifts a spraying block")
	assert.Empty(t, r.Transitions)
}

// testDistinctConcurrentBegin: parallel attempts on fresh names from one
// source reach the password check at most Limit+1 times (Limit counted at
// once, one last chance), and their failures block once.
func testDistinctConcurrentBegin(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	const n, limit = 200, 10
	o := op(spray(limit, "x"), counter(gate.KindIP, 10*n))
	var admitted, lastChance atomic.Int32
	var mu sync.Mutex
	var tickets []gate.Op
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := as(o, fmt.Sprintf("user-%d", i))
			r, err := s.store.Begin(s.ctx, a)
			if !assert.NoError(t, err) || !r.Admitted {
				return
			}
			admitted.Add(1)
			if r.LastChance {
				lastChance.Add(1)
			}
			mu.Lock()
			tickets = append(tickets, a)
			mu.Unlock()
		}()
	}
	wg.Wait()
	assert.EqualValues(t, limit+1, admitted.Load(), "Limit+1 names reach the password check")
	assert.EqualValues(t, 1, lastChance.Load())
	total := 0
	for _, a := range tickets {
		total += blocks(s.finish(a, false).Transitions)
	}
	assert.Equal(t, 1, total, "their failures block once")
	assert.True(t, s.isBlocked(op(o.Counters[0])))
}

// testDistinctPendingExpiry: a last chance never reported becomes one
// distinct failure when it expires, which blocks.
func testDistinctPendingExpiry(t *testing.T, s *suite) {
	p := policy(time.Minute)
	p.PendingTimeout = 200 * time.Millisecond
	s.use(p)
	o := op(spray(1, "x"))
	s.record(as(o, "a"), false)
	a, r := s.begin(as(o, "b"))
	require.True(t, r.LastChance)
	s.clock.Sleep(300 * time.Millisecond)
	_, r = s.begin(as(o, "c"))
	assert.False(t, r.Admitted, "the abandoned name counted and blocked")
	assert.Equal(t, []int{2}, r.Failures)
	assert.Equal(t, 1, blocks(r.Transitions))
	r = s.finish(a, false)
	assert.Empty(t, r.Transitions, "an expired charge counts once")
	assert.Equal(t, []int{2}, r.Failures)
}

// testDistinctSlides: the names are forgotten together, an attempt
// cool-off after the last new one.
func testDistinctSlides(t *testing.T, s *suite) {
	p := policy(time.Minute)
	p.AttemptCooloff = 600 * time.Millisecond
	s.use(p)
	o := op(spray(5, "x"))
	s.record(as(o, "a"), false)
	s.clock.Sleep(400 * time.Millisecond)
	s.record(as(o, "b"), false)
	s.clock.Sleep(400 * time.Millisecond)
	assert.Equal(t, []int{2}, s.check(o).Failures, "b renewed the window of both")
	s.clock.Sleep(400 * time.Millisecond)
	assert.Equal(t, []int{0}, s.check(o).Failures, "then both are forgotten")
	assert.Equal(t, []int{1}, s.record(as(o, "a"), false).Failures, "a counts anew")
}

// testReportOnly: a report-only counter never refuses nor saturates; the
// count that passes its limit reports a block once, which Blocked lists.
func testReportOnly(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	c := spray(2, "x")
	c.Kind, c.ReportOnly = gate.KindSprayShared, true
	o := op(c, counter(gate.KindUsername, 100))
	var reports []gate.Transition
	for i := range 8 {
		a := as(o, fmt.Sprintf("u%d", i))
		var r gate.Result
		if i%2 == 0 {
			r = s.record(a, false)
		} else {
			a, r = s.begin(a)
		}
		require.True(t, r.Admitted, "attempt %d: a report refuses nobody", i)
		assert.Empty(t, r.Blocked)
		assert.Empty(t, r.Saturated)
		reports = append(reports, r.Transitions...)
	}
	require.Len(t, reports, 1, "reported once")
	assert.Equal(t, gate.KindSprayShared, reports[0].Kind)
	assert.True(t, reports[0].Blocked)
	assert.Equal(t, 3, reports[0].Failures)
	list, err := s.store.Blocked(s.ctx, gate.KindSprayShared, 0)
	require.NoError(t, err)
	var found bool
	for _, b := range list {
		found = found || b.Subject == c.Subject
	}
	assert.True(t, found, "the report is listed")
	assert.Empty(t, s.check(o).Blocked, "Check refuses nothing either")
	_, err = s.store.Begin(s.ctx, withToken(op(gate.Counter{Kind: gate.KindSprayShared, Subject: c.Subject, Limit: 2, ReportOnly: true})))
	assert.Error(t, err, "report-only without a member is invalid")
}
