package gate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
	p := minutePolicy()
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

// minutePolicy is a policy of one-minute timings (an hour's lockout
// memory): nothing a test waits for expires.
func minutePolicy() Policy {
	return Policy{AttemptCooloff: time.Minute, PendingTimeout: time.Minute,
		LockoutCooloffs: []time.Duration{time.Minute}, LockoutMemory: time.Hour}
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

// TestRedisFinishBatchOfShapes: successes of several shapes of op in one
// batch (spraying, smart lockout's conditional counters and teaching, a
// plain op), runs of one shape sharing a clear script, answer and leave
// Redis as Finish called once per success in the same order.
func TestRedisFinishBatchOfShapes(t *testing.T) {
	srv := testenv.Redis(t)
	c := srv.Client()
	ctx := context.Background()
	p := minutePolicy()
	plain := func(ip, user string) Op {
		return Op{Counters: []Counter{{Kind: KindIP, Subject: ip, Limit: 100}, {Kind: KindUsername, Subject: user, Limit: 100}}}
	}
	spray := func(ip, user string) Op {
		o := plain(ip, user)
		o.Counters = append(o.Counters, Counter{Kind: KindSpray, Subject: ip, Limit: 100, Member: user})
		return o
	}
	smart := func(ip, user string) Op {
		o := spray(ip, user)
		o.Counters[1].When = IfUnfamiliar
		o.Counters = append(o.Counters, Counter{Kind: KindUsernameFamiliar, Subject: user, Limit: 100, When: IfFamiliar})
		o.Familiar = &Familiar{User: user, Sources: []string{"ip:" + ip}, For: time.Hour, Max: 20, Learn: true}
		return o
	}
	// Each user fails from two addresses, then succeeds from the first,
	// and smart lockout's users once more from it (familiar by then).
	shapes := []func(ip, user string) Op{spray, spray, smart, smart, plain, spray, smart}
	settle := func(prefix string, batch bool) ([]Result, map[string]any) {
		s := NewRedisStore(c, prefix, p)
		var ops []Op
		for i, shape := range shapes {
			user := "u" + strconv.Itoa(i)
			for _, ip := range []string{"192.0.2.1", "192.0.2.2"} {
				o := shape(ip, user)
				o.Token = prefix + user + ip
				r, err := s.Begin(ctx, o)
				require.NoError(t, err)
				require.True(t, r.Admitted)
				_, err = s.Finish(ctx, o, false)
				require.NoError(t, err)
			}
			o := shape("192.0.2.1", user)
			o.Token = prefix + user + "ok"
			r, err := s.Begin(ctx, o)
			require.NoError(t, err)
			require.True(t, r.Admitted)
			ops = append(ops, o)
		}
		var res []Result
		succ := make([]bool, len(ops))
		for i := range succ {
			succ[i] = true
		}
		if batch {
			var errs []error
			res, errs = s.finishBatch(ctx, ops, succ)
			for _, err := range errs {
				require.NoError(t, err)
			}
		} else {
			for _, o := range ops {
				r, err := s.Finish(ctx, o, true)
				require.NoError(t, err)
				res = append(res, r)
			}
		}
		state := map[string]any{}
		for i, shape := range shapes {
			user := "u" + strconv.Itoa(i)
			for _, ip := range []string{"192.0.2.1", "192.0.2.2"} {
				r, err := s.Check(ctx, shape(ip, user))
				require.NoError(t, err)
				state[user+ip] = timeless(r)
			}
			fam, err := c.ZRange(ctx, prefix+":familiar:"+user, 0, -1).Result()
			require.NoError(t, err)
			state[user+" familiar"] = fam
		}
		return res, state
	}
	oneRes, oneState := settle("shapes-one", false)
	batchRes, batchState := settle("shapes-batch", true)
	require.Len(t, batchRes, len(oneRes))
	for i := range oneRes {
		assert.Equal(t, timeless(oneRes[i]), timeless(batchRes[i]), "success %d", i)
	}
	assert.Equal(t, oneState, batchState)
	assert.Equal(t, []string{"ip:192.0.2.1"}, oneState["u2 familiar"], "smart lockout's success taught its address")
	r := oneState["u0192.0.2.2"].(Result)
	assert.Equal(t, []int{7, 0, 6}, r.Failures, "the second address keeps its 7 failures and the 6 names sprayed from it (u4's op counts none); the success cleared the username")
}

// TestNeverSent: the errors of a store call that never left the process
// (nothing ran: no recall to send after it), against those of one that
// may have run.
func TestNeverSent(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("%w: begin: %w", ErrStoreUnavailable, err) }
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	read := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for err, want := range map[error]bool{
		wrap(errOverloaded):               true,
		wrap(redis.ErrPoolTimeout):        true,
		wrap(dial):                        true,
		wrap(read):                        false,
		wrap(context.DeadlineExceeded):    false,
		wrap(errors.New("ERR something")): false,
	} {
		assert.Equal(t, want, neverSent(err), "%v", err)
	}
}
