package gate

import (
	"context"
	"strconv"
	"testing"
	"time"

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

// TestRedisClearIsTheFullRules: for each shape of op, a success written by
// the clear script (its fast path, taken: no fallback) answers and leaves
// the store as the full rules (redis_finish.lua) do from the same state:
// the same counts, the same familiarity, nothing blocked; and the next
// login reads the same counts and is familiar alike. Each shape runs from
// an unfamiliar source, then from one a success taught.
func TestRedisClearIsTheFullRules(t *testing.T) {
	srv := testenv.Redis(t)
	ctx := context.Background()
	p := minutePolicy()
	const ip, user = "192.0.2.7", "carol"
	smart := func(cs ...Counter) Op {
		return Op{Counters: cs, Familiar: &Familiar{User: user, Sources: []string{"ip:" + ip}, For: 24 * time.Hour, Max: 20, Learn: true}}
	}
	shapes := map[string]Op{
		"plain": {Counters: []Counter{{Kind: KindIP, Subject: ip, Limit: 5}, {Kind: KindUsername, Subject: user, Limit: 5}}},
		"spray": {Counters: []Counter{{Kind: KindIP, Subject: ip, Limit: 5}, {Kind: KindUsername, Subject: user, Limit: 5},
			{Kind: KindSpray, Subject: ip, Limit: 5, Member: user}}},
		"smart": smart(Counter{Kind: KindIP, Subject: ip, Limit: 5}, Counter{Kind: KindUsername, Subject: user, Limit: 5, When: IfUnfamiliar},
			Counter{Kind: KindSpray, Subject: ip, Limit: 5, Member: user}, Counter{Kind: KindUsernameFamiliar, Subject: user, Limit: 5, When: IfFamiliar}),
		"conditional only": smart(Counter{Kind: KindUsername, Subject: user, Limit: 5, When: IfUnfamiliar},
			Counter{Kind: KindUsernameFamiliar, Subject: user, Limit: 5, When: IfFamiliar}),
		"familiar counter only": smart(Counter{Kind: KindUsernameFamiliar, Subject: user, Limit: 5, When: IfFamiliar}),
	}
	for name, shape := range shapes {
		t.Run(name, func(t *testing.T) {
			clear := NewRedisStore(srv.Client(), "clear-"+name, p)
			full := NewRedisStore(srv.Client(), "full-"+name, p)
			seq := 0
			attempt := func() Op {
				seq++
				o := shape
				o.Token = "t" + strconv.Itoa(seq)
				return o
			}
			for _, taught := range []bool{false, true} {
				if taught { // a success from the source, on both stores alike
					for _, s := range []*RedisStore{clear, full} {
						_, err := s.Record(ctx, attempt(), true)
						require.NoError(t, err)
					}
				}
				var got [2]Result
				for k, s := range []*RedisStore{clear, full} {
					for range 2 { // two failures, counted at Begin
						r, err := s.Begin(ctx, attempt())
						require.NoError(t, err)
						require.True(t, r.Admitted)
					}
					a := attempt()
					r, err := s.Begin(ctx, a)
					require.NoError(t, err)
					require.True(t, r.Admitted)
					if k == 0 {
						script := s.clearScript(a, true)
						require.NotNil(t, script, "the success goes to the clear script")
						reply, err := script.Run(ctx, s.client, s.clear.keys(nil, &a, s.markerKey(a.Token), s.counterKey, s.familiarKey), s.clear.args(nil, &a)...).Result()
						require.NoError(t, err)
						v := redisClearReply(reply, 0, &a)
						require.False(t, redisClearFallback(v), "taught %v: the clear script wrote the success", taught)
						got[k], err = redisCleared(a, v)
						require.NoError(t, err)
					} else {
						got[k], err = s.run(ctx, "finish", redisScriptFinish, a, true)
						require.NoError(t, err)
					}
				}
				assert.Equal(t, got[1].Failures, got[0].Failures, "taught %v: counts after the success", taught)
				assert.Equal(t, got[1].Familiar, got[0].Familiar, "taught %v: familiarity", taught)
				assert.Equal(t, taught && shape.Familiar != nil, got[0].Familiar, "taught %v", taught)
				assert.Empty(t, got[0].Blocked)
				assert.Empty(t, got[0].Transitions)
				assert.False(t, got[0].Admitted)

				next := [2]Result{}
				for k, s := range []*RedisStore{clear, full} {
					var err error
					next[k], err = s.Check(ctx, attempt())
					require.NoError(t, err)
				}
				assert.Equal(t, next[1].Failures, next[0].Failures, "taught %v: the store after the success", taught)
				assert.Equal(t, next[1].Familiar, next[0].Familiar, "taught %v: what the success taught", taught)
			}
		})
	}
}
