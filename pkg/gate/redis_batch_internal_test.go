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

// TestRedisFinishBatchIsFinishInOrder: settling charges in one pipelined
// batch answers, and leaves Redis, exactly as Finish called once per
// charge in the same order: failures (counted at Begin) changing nothing
// more, successes clearing, unknown tokens counting nothing, a bad op
// refused.
func TestRedisFinishBatchIsFinishInOrder(t *testing.T) {
	srv := testenv.Redis(t)
	c := srv.Client()
	ctx := context.Background()
	p := Policy{AttemptCooloff: time.Minute, PendingTimeout: time.Minute,
		LockoutCooloffs: []time.Duration{time.Minute}, LockoutMemory: time.Hour}
	op := func(token string) Op {
		return Op{Token: token, Counters: []Counter{
			{Kind: KindIP, Subject: "10.0.0.1", Limit: 20}, {Kind: KindUsername, Subject: "bob", Limit: 3}}}
	}
	// Outcomes in order: failures up to the limit, a success that clears
	// them, failures up to a block; every fourth token was never charged.
	success := []bool{false, false, false, false, true, false, false, false, false, false}
	// The comparison proper: charge every token first (limits high enough
	// that none is refused), then settle them all, one by one or in one batch.
	settleAll := func(prefix string, batch bool) ([]Result, []error, Result) {
		s := NewRedisStore(c, prefix, p)
		ops := make([]Op, 0, len(success)+1)
		for i := range success {
			o := op(prefix + strconv.Itoa(i))
			if i%4 != 3 {
				r, err := s.Begin(ctx, withLimits(o, 100))
				require.NoError(t, err)
				require.True(t, r.Admitted)
			}
			ops = append(ops, o)
		}
		ops = append(ops, Op{Counters: op("").Counters}) // no token: refused
		succ := append(append([]bool{}, success...), false)
		var res []Result
		var errs []error
		if batch {
			res, errs = s.finishBatch(ctx, ops, succ)
		} else {
			for i, o := range ops {
				r, err := s.Finish(ctx, o, succ[i])
				res, errs = append(res, r), append(errs, err)
			}
		}
		after, err := s.Check(ctx, op(""))
		require.NoError(t, err)
		return res, errs, after
	}
	oneRes, oneErrs, oneAfter := settleAll("one", false)
	batchRes, batchErrs, batchAfter := settleAll("batch", true)
	require.Len(t, batchRes, len(oneRes))
	for i := range oneRes {
		if oneErrs[i] != nil {
			assert.Error(t, batchErrs[i], "op %d", i)
			continue
		}
		require.NoError(t, batchErrs[i], "op %d", i)
		assert.Equal(t, timeless(oneRes[i]), timeless(batchRes[i]), "op %d", i)
	}
	assert.Error(t, oneErrs[len(oneErrs)-1], "an op without a token is refused")
	assert.Equal(t, timeless(oneAfter), timeless(batchAfter), "the state after")
	// Begin counted every charge (limits of 100): the success cleared
	// them all, those whose failures are reported after it included.
	assert.Equal(t, []int{0, 0}, oneAfter.Failures)
}

// withLimits is o with every counter's limit set to n.
func withLimits(o Op, n int) Op {
	o.Counters = append([]Counter(nil), o.Counters...)
	for i := range o.Counters {
		o.Counters[i].Limit = n
	}
	return o
}

// timeless is r without what depends on when it was read: block TTLs.
func timeless(r Result) Result {
	r.Blocked = append([]BlockState(nil), r.Blocked...)
	for i := range r.Blocked {
		r.Blocked[i].TTL = 0
	}
	return r
}
