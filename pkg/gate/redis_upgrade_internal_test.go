package gate

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/legacyredis"
	"github.com/defender-go/defender/internal/testenv"
)

// legacyStore is a gate of the first store protocol (internal/legacyredis:
// two scripts per login, every attempt pending until its outcome) sharing
// the Redis of a current RedisStore, as during a rolling upgrade. Its
// other methods are the current store's, which both protocols share.
type legacyStore struct{ *RedisStore }

func (s legacyStore) run(ctx context.Context, script *redis.Script, op Op, success, begin bool) (Result, error) {
	reply, err := script.Run(ctx, s.client, s.counterKeys(op, false), s.args.counter(op, success)...).Result()
	if err != nil {
		return Result{}, err
	}
	// Its full reply's transitions have 6 values: the 7th, when it was
	// made, came later (0: not said).
	if vals, ok := reply.([]any); ok && len(vals) > 3+len(op.Counters) {
		full := slices.Clone(vals[:3+6*len(op.Counters)])
		for t := vals[len(full):]; len(t) >= 6; t = t[6:] {
			full = append(append(full, t[:6]...), int64(0))
		}
		reply = full
	}
	return decodeRedisResult(reply, op, begin)
}

func (s legacyStore) Begin(ctx context.Context, op Op) (Result, error) {
	return s.run(ctx, legacyredis.Begin, op, false, true)
}

func (s legacyStore) Finish(ctx context.Context, op Op, success bool) (Result, error) {
	return s.run(ctx, legacyredis.Finish, op, success, false)
}

func (s legacyStore) Record(ctx context.Context, op Op, success bool) (Result, error) {
	return s.run(ctx, legacyredis.Record, op, success, false)
}

func upgradePolicy() Policy {
	return Policy{AttemptCooloff: time.Hour, PendingTimeout: time.Hour,
		LockoutCooloffs: []time.Duration{time.Hour}, LockoutMemory: time.Hour}
}

// upgradeOp is an attempt on a fresh username (limit) from a fresh IP
// whose limit never binds.
func upgradeOp(name string, limit int) Op {
	return Op{Token: name + "-t", Counters: []Counter{
		{Kind: KindIP, Subject: "198.51.100." + name, Limit: 1 << 20},
		{Kind: KindUsername, Subject: "u-" + name, Limit: limit}}}
}

// TestRollingUpgradeKeepsTheBound: old and new gates share one Redis
// while a burst of parallel guesses hits one username through both. The
// new Begin sees the old gates' pending charges (its one EXISTS finds the
// pending set and takes the full rules, which count them), the old Begin
// sees the new gates' attempts in the failure count: exactly limit+1 are
// admitted, and the failures of all of them block once, which both
// refuse.
func TestRollingUpgradeKeepsTheBound(t *testing.T) {
	srv := testenv.Redis(t)
	ctx := context.Background()
	cur := NewRedisStore(srv.Client(), "up", upgradePolicy())
	gates := []Store{legacyStore{NewRedisStore(srv.Client(), "up", upgradePolicy())}, cur}
	for _, limit := range []int{0, 3} {
		o := upgradeOp("bound"+strconv.Itoa(limit), limit)
		const n = 400
		type admission struct {
			op    Op
			store Store
		}
		var (
			mu       sync.Mutex
			admitted []admission
			last     atomic.Int32
			wg       sync.WaitGroup
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := o
				a.Token = o.Token + strconv.Itoa(i)
				s := gates[i%2]
				r, err := s.Begin(ctx, a)
				if !assert.NoError(t, err) || !r.Admitted {
					return
				}
				if r.LastChance {
					last.Add(1)
				}
				mu.Lock()
				admitted = append(admitted, admission{a, s})
				mu.Unlock()
			}()
		}
		wg.Wait()
		require.Len(t, admitted, limit+1, "limit %d: limit+1 admitted through old and new gates together", limit)
		assert.EqualValues(t, 1, last.Load(), "limit %d: one last chance", limit)

		var blocks atomic.Int32
		for _, a := range admitted {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := a.store.Finish(ctx, a.op, false)
				if assert.NoError(t, err) {
					blocks.Add(int32(len(r.Transitions)))
				}
			}()
		}
		wg.Wait()
		assert.EqualValues(t, 1, blocks.Load(), "limit %d: the failures block once", limit)
		for i, s := range gates {
			a := o
			a.Token = "after" + strconv.Itoa(i)
			r, err := s.Begin(ctx, a)
			require.NoError(t, err)
			assert.False(t, r.Admitted, "limit %d: gate %d refuses", limit, i)
			assert.Len(t, r.Blocked, 1)
		}
		r, err := cur.Check(ctx, o)
		require.NoError(t, err)
		assert.Equal(t, limit+1, r.Failures[1], "limit %d: every failure counted once", limit)
	}
}

// TestRollingUpgradeOutcomesAcrossVersions: with the gate service's
// outcomes sent round robin, an attempt begun on one version may be
// settled on the other. Each failure counts once, an old gate's charge
// expired is settled by a new gate, and blocks made by either refuse on
// both.
func TestRollingUpgradeOutcomesAcrossVersions(t *testing.T) {
	srv := testenv.Redis(t)
	ctx := context.Background()
	p := upgradePolicy()
	cur := NewRedisStore(srv.Client(), "x", p)
	old := legacyStore{NewRedisStore(srv.Client(), "x", p)}
	failures := func(o Op) int {
		r, err := cur.Check(ctx, o)
		require.NoError(t, err)
		return r.Failures[1]
	}
	finish := func(s Store, o Op, success bool) Result {
		r, err := s.Finish(ctx, o, success)
		require.NoError(t, err)
		return r
	}
	begin := func(s Store, o Op) Result {
		r, err := s.Begin(ctx, o)
		require.NoError(t, err)
		return r
	}

	// A new gate's attempt (counted at Begin) failing on an old gate: the
	// old Finish finds no pending token and counts nothing more.
	o := upgradeOp("a", 5)
	require.True(t, begin(cur, o).Admitted)
	finish(old, o, false)
	assert.Equal(t, 1, failures(o))
	// An old gate's attempt (pending) failing on a new gate: counted there.
	o.Token = "a-2"
	require.True(t, begin(old, o).Admitted)
	finish(cur, o, false)
	assert.Equal(t, 2, failures(o))
	// An old gate's attempt succeeding on a new gate clears, once.
	o.Token = "a-3"
	require.True(t, begin(old, o).Admitted)
	finish(cur, o, true)
	assert.Equal(t, 0, failures(o))
	// A new gate's success reported to an old gate clears nothing (the old
	// Finish knows only pending tokens): the count stays, on the safe side.
	o.Token = "a-4"
	require.True(t, begin(cur, o).Admitted)
	finish(old, o, true)
	assert.Equal(t, 1, failures(o))

	// An old gate's charge that expired is turned into a failure by the
	// next new Begin, which blocks at limit 0.
	short := p
	short.PendingTimeout = 100 * time.Millisecond
	o = upgradeOp("b", 0)
	r := begin(legacyStore{NewRedisStore(srv.Client(), "x", short)}, o)
	require.True(t, r.Admitted)
	require.True(t, r.LastChance)
	time.Sleep(200 * time.Millisecond)
	o.Token = "b-2"
	r = begin(NewRedisStore(srv.Client(), "x", short), o)
	assert.False(t, r.Admitted)
	require.Len(t, r.Transitions, 1, "the new gate settles the old charge and blocks")
	assert.Equal(t, KindUsername, r.Transitions[0].Kind)

	// Blocks made by either version refuse on both.
	for i, blocker := range []Store{old, cur} {
		o := upgradeOp("c"+strconv.Itoa(i), 1)
		for range 2 {
			_, err := blocker.Record(ctx, o, false)
			require.NoError(t, err)
		}
		for j, s := range []Store{old, cur} {
			o.Token = "c-" + strconv.Itoa(j)
			r := begin(s, o)
			assert.False(t, r.Admitted, "blocked by %d, asked %d", i, j)
			assert.Len(t, r.Blocked, 1)
		}
	}
}
