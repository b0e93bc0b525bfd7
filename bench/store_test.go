package main

import (
	"context"
	"maps"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// TestStoreContenders runs each contender's logins one at a time against
// a redis-server and checks the commands Redis ran for them, name by name:
// the replay is django-defender's traced sequence and the floor is what
// it claims, and each counts a failure and clears on success.
func TestStoreContenders(t *testing.T) {
	srv := testenv.Redis(t)
	rdb := srv.Client()
	ctx := context.Background()
	as := storeAttempts(20, 1)
	perLogin := map[string]map[string]int{
		ctDjango + "/" + wlFailure:     {"get": 2, "multi": 2, "incrby": 2, "expire": 2, "exec": 2},
		ctDjango + "/" + wlSuccess:     {"get": 2, "multi": 1, "del": 4, "exec": 1},
		ctFloor + "/" + wlFailure:      {"evalsha": 1, "pttl": 2, "incr": 2, "pexpire": 2},
		ctFloor + "/" + wlSuccess:      {"evalsha": 1, "pttl": 2, "incr": 2, "pexpire": 2, "del": 1},
		ctFloorKnown + "/" + wlSuccess: {"evalsha": 1, "pttl": 2, "del": 1},
		ctFloorSpray + "/" + wlFailure: {"evalsha": 1, "pttl": 3, "incr": 2, "pexpire": 3, "sadd": 1, "scard": 1},
		ctFloorSpray + "/" + wlSuccess: {"evalsha": 1, "pttl": 3, "incr": 2, "pexpire": 3, "sadd": 1, "scard": 1, "del": 1, "srem": 1},
		ctFloorSmart + "/" + wlFailure: {"evalsha": 1, "zscore": 1, "pttl": 3, "incr": 2, "pexpire": 3, "sadd": 1, "scard": 1},
		ctFloorSmart + "/" + wlSuccess: {"evalsha": 1, "zscore": 1, "pttl": 3, "incr": 2, "pexpire": 4, "sadd": 1, "scard": 1, "del": 1, "srem": 1, "zadd": 1, "zremrangebyrank": 1},
	}
	for _, name := range []string{ctGate, ctGateSmart, ctGateNoSpray, ctDjango, ctFloor, ctFloorKnown, ctFloorSpray, ctFloorSmart} {
		t.Run(name, func(t *testing.T) {
			ct, err := newContender(name, rdb, 0)
			require.NoError(t, err)
			defer func() { assert.NoError(t, ct.close()) }()
			// The scripts loaded, so that every login below is an EVALSHA.
			for _, success := range []bool{false, true} {
				require.NoError(t, drive(ctx, ct, storeAttempts(2, 2), success, 1, time.Time{}))
			}
			for _, wl := range []string{wlFailure, wlSuccess} {
				before, err := srv.CommandCalls(ctx, rdb)
				require.NoError(t, err)
				require.NoError(t, drive(ctx, ct, as, wl == wlSuccess, 1, time.Time{}))
				require.NoError(t, ct.settle(ctx))
				after, err := srv.CommandCalls(ctx, rdb)
				require.NoError(t, err)
				require.NoError(t, checkCounted(ctx, ct, as, wl == wlSuccess), wl)
				want, ok := perLogin[name+"/"+wl]
				if !ok {
					assert.Positive(t, after["evalsha"]-before["evalsha"], "%s: the gate ran its scripts", wl)
					continue
				}
				got := map[string]int{}
				for cmd := range maps.Keys(after) {
					if n := after[cmd] - before[cmd]; n > 0 && cmd != "info" {
						got[cmd] = n
					}
				}
				for cmd, n := range want {
					want[cmd] = n * len(as)
				}
				assert.Equal(t, want, got, wl)
			}
		})
	}
}

// stubContender has fixed counters, for checkCounted.
type stubContender struct{ ip, user int }

func (s stubContender) login(context.Context, *storeAttempt, bool) (bool, error) { return true, nil }
func (s stubContender) settle(context.Context) error                             { return nil }
func (s stubContender) failures(context.Context, *storeAttempt) (int, int, error) {
	return s.ip, s.user, nil
}
func (s stubContender) degraded() int64 { return 0 }
func (s stubContender) close() error    { return nil }

func TestCheckCounted(t *testing.T) {
	ctx := context.Background()
	as := storeAttempts(10, 1)
	assert.NoError(t, checkCounted(ctx, stubContender{1, 2}, as, false))
	assert.ErrorContains(t, checkCounted(ctx, stubContender{1, 0}, as, false), "not counted")
	assert.NoError(t, checkCounted(ctx, stubContender{}, as, true))
	assert.ErrorContains(t, checkCounted(ctx, stubContender{0, 1}, as, true), "not cleared")
}

// TestStoreFigures checks that a ratio is the median of the rounds' own
// ratios, not the ratio of the medians, and that the targets follow it.
func TestStoreFigures(t *testing.T) {
	cell := func(round int, wl, ct string, redisUs int) storeCell {
		return storeCell{Round: round, Workload: wl, Contender: ct, Logins: 1000, Elapsed: time.Second,
			RedisCPU: time.Duration(redisUs) * 1000 * time.Microsecond, ClientCPU: time.Second, Commands: 7000}
	}
	var cells []storeCell
	for round, us := range [][5]int{{60, 20, 110, 24, 45}, {70, 35, 110, 42, 50}, {50, 25, 110, 35, 30}} {
		for _, wl := range storeWorkloads {
			cells = append(cells, cell(round, wl, ctGate, us[0]), cell(round, wl, ctFloor, us[1]), cell(round, wl, ctDjango, us[2]),
				cell(round, wl, ctGateNoSpray, us[3]), cell(round, wl, ctFloorSpray, us[4]))
		}
	}
	r := newReport(rawResults{Options: defaultOptions(), Store: cells})

	gate := r.storeFigs[storeKey{wlFailure, ctGate}]
	require.NotNil(t, gate)
	assert.Equal(t, 3, gate.Rounds)
	assert.InDelta(t, 60, gate.RedisUs, 1e-9)
	assert.InDelta(t, 25, r.storeFigs[storeKey{wlFailure, ctFloor}].RedisUs, 1e-9)
	// Rounds' ratios 3, 2 and 2: the median is 2, the medians' ratio 2.4.
	assert.InDelta(t, 2, r.storeRatio(wlFailure, ctFloor).RedisUs, 1e-9)
	assert.InDelta(t, 60.0/110, r.storeRatio(wlFailure, ctDjango).RedisUs, 1e-9)
	assert.InDelta(t, 1, r.storeRatio(wlFailure, ctFloor).Commands, 1e-9)
	assert.True(t, math.IsNaN(r.storeRatio(wlFailure, ctFloor).Scripts), "0 scripts over 0")

	ts := r.storeTargets()
	require.Len(t, ts, 12)
	assert.True(t, ts[4].NotRun, "smart lockout not measured in these cells")
	assert.False(t, ts[0].Met, "gate 2× the floor, failure")
	assert.False(t, ts[1].Met, "gate 2× the floor, success")
	assert.True(t, ts[2].Met, "gate 0.55× django-defender, failure")
	assert.True(t, ts[3].Met, "gate 0.55× django-defender, success")
	// Spraying off: rounds' ratios 1.2, 1.2 and 1.4, median 1.2.
	assert.InDelta(t, 1.2, pairRatio(cells, wlFailure, ctGateNoSpray, ctFloor), 1e-9)
	assert.True(t, ts[6].Met, "spraying off 1.2× the floor, failure")
	assert.True(t, ts[7].Met, "spraying off 1.2× the floor, success")
	// Against the floor with spraying: rounds' ratios 1.33, 1.4 and 1.67,
	// median 1.4.
	assert.True(t, ts[8].Met, "gate 1.4× the floor with spraying, failure")
	assert.True(t, ts[9].Met, "gate 1.4× the floor with spraying, success")
	assert.Contains(t, ts[8].Measured, "1.40 ×")
	for i, tr := range ts {
		assert.Equal(t, i == 4 || i == 5 || i == 10 || i == 11, tr.NotRun, tr.Goal)
	}

	for _, tr := range newReport(rawResults{Options: defaultOptions()}).storeTargets() {
		assert.True(t, tr.NotRun, tr.Goal)
		assert.False(t, tr.Met, tr.Goal)
	}
}
