package gate

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// TestChargeScriptsByShape: ops of one shape share a charge script,
// whatever their subjects and members; a limit, a condition or a member
// makes another shape; a report-only counter has none (the full rules);
// past redisChargeShapes shapes, an op of a new one goes to the full
// rules, and its decisions are the same as through a charge script.
func TestChargeScriptsByShape(t *testing.T) {
	p := minutePolicy()
	srv := testenv.Redis(t)
	s := NewRedisStore(srv.Client(), "shape", p)
	ctx := context.Background()
	op := func(ip, user string, limit int) Op {
		return Op{Token: "t-" + ip + user, Counters: []Counter{
			{Kind: KindIP, Subject: ip, Limit: limit},
			{Kind: KindUsername, Subject: user, Limit: limit},
			{Kind: KindSpray, Subject: ip, Limit: 10, Member: user}}}
	}
	a, b := op("192.0.2.1", "alice", 3), op("192.0.2.2", "bob", 3)
	require.NotNil(t, s.charge.script(&a))
	assert.Same(t, s.charge.script(&a), s.charge.script(&b), "one shape, one script")
	c := op("192.0.2.1", "alice", 4)
	assert.NotSame(t, s.charge.script(&a), s.charge.script(&c), "another limit, another script")
	d := op("192.0.2.1", "alice", 3)
	d.Counters[1].When = IfUnfamiliar
	assert.NotSame(t, s.charge.script(&a), s.charge.script(&d), "a condition, another script")
	e := op("192.0.2.1", "alice", 3)
	e.Counters[2].ReportOnly = true
	assert.Nil(t, s.charge.script(&e), "a report-only counter: the full rules")

	// Fill the cache, then compare a store past it with a fresh one on
	// the same attempts: the same decisions, step by step.
	for i := 0; len(*s.charge.scripts.Load()) < redisChargeShapes; i++ {
		o := op("192.0.2.9", "filler", 100+i)
		require.NotNil(t, s.charge.script(&o))
	}
	full := op("198.51.100.1", "carol", 2)
	require.Nil(t, s.charge.script(&full), "past the bound, no new script")
	fresh := NewRedisStore(srv.Client(), "shape-fresh", p)
	require.NotNil(t, fresh.charge.script(&full))
	for i := range 5 {
		o := full
		o.Token = "past-" + strconv.Itoa(i)
		got, err := s.Begin(ctx, o)
		require.NoError(t, err)
		want, err := fresh.Begin(ctx, o)
		require.NoError(t, err)
		assert.Equal(t, want.Admitted, got.Admitted, "attempt %d", i+1)
		assert.Equal(t, want.Failures, got.Failures, "attempt %d", i+1)
		assert.Equal(t, want.LastChance, got.LastChance, "attempt %d", i+1)
		if got.LastChance {
			_, err = s.Finish(ctx, o, false)
			require.NoError(t, err)
			_, err = fresh.Finish(ctx, o, false)
			require.NoError(t, err)
		}
	}
	r, err := s.Check(ctx, full)
	require.NoError(t, err)
	assert.NotEmpty(t, r.Blocked, "3 failures at limit 2 block, through the full rules alone")
}

// TestRedisClearReply: the clear script's flat reply is read success by
// success, its width set by the op's shape; a -1, a reply too short or not
// an array leaves the success to the full rules, and a count that is not
// an integer is an error, never a count of 0.
func TestRedisClearReply(t *testing.T) {
	plain := Op{Counters: []Counter{{Kind: KindIP, Subject: "192.0.2.1", Limit: 3}, {Kind: KindUsername, Subject: "alice", Limit: 3}}}
	flags := Op{Counters: append(append([]Counter(nil), plain.Counters...), Counter{Kind: KindSpray, Subject: "192.0.2.1", Limit: 10, Member: "alice"})}
	require.Equal(t, 1, redisClearWidth(&plain))
	require.Equal(t, 4, redisClearWidth(&flags))

	reply := []any{int64(1), int64(0), int64(0), int64(2), int64(-1), int64(0), int64(0), int64(0)}
	v := redisClearReply(reply, 0, &flags)
	require.False(t, redisClearFallback(v))
	res, err := redisCleared(flags, v)
	require.NoError(t, err)
	assert.Equal(t, []int{0, 0, 2}, res.Failures, "the spray counter keeps its other names")
	assert.False(t, res.Admitted)

	assert.True(t, redisClearFallback(redisClearReply(reply, 1, &flags)), "-1: the full rules")
	assert.True(t, redisClearFallback(redisClearReply(reply, 2, &flags)), "past the reply")
	assert.True(t, redisClearFallback(redisClearReply(int64(1), 0, &flags)), "not an array")
	assert.True(t, redisClearFallback(redisClearReply([]any{"1"}, 0, &plain)), "not an integer")

	v = redisClearReply([]any{int64(-1), int64(1)}, 1, &plain)
	require.False(t, redisClearFallback(v))
	res, err = redisCleared(plain, v)
	require.NoError(t, err)
	assert.Equal(t, []int{0, 0}, res.Failures)

	_, err = redisCleared(flags, []any{int64(1), int64(0), "x", int64(0)})
	assert.ErrorContains(t, err, "clear reply element 2")
}
