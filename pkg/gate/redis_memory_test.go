package gate_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

// usedMemory reads INFO memory's used_memory.
func usedMemory(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

// floodResult is what a flood of new usernames did to a gate over a
// Redis with little room.
type floodResult struct {
	attempts, degraded int
	victimLetThrough   int  // guesses at the blocked victim that were allowed
	blockKeyLeft       bool // the victim's block key is still in Redis
	freshAdmitted      int  // guesses at a new victim during the flood that were admitted
}

// flood blocks a victim, then fills Redis (maxmemory 4 MB above what it
// uses) with failures on new usernames under policy, probing the blocked
// victim all along, and a new victim once Redis is full.
func flood(t *testing.T, policy string) floodResult {
	ctx := context.Background()
	srv := testenv.Redis(t)
	rdb := srv.Client()
	prefix := "flood"
	require.NoError(t, rdb.ConfigSet(ctx, "maxmemory-policy", policy).Err())
	if err := gate.CheckRedisMemoryPolicy(ctx, rdb); policy == "noeviction" {
		require.NoError(t, err)
	} else {
		require.ErrorIs(t, err, gate.ErrRedisEvicts, "the check at start warns of this Redis")
	}
	cfg := gate.DefaultConfig()
	cfg.KeyPrefix = prefix
	cfg.StoreTimeout = time.Second // the flood's refusals come from Redis's memory, not from the machine's load
	g, err := gate.New(cfg, gate.NewRedisStore(rdb, prefix, cfg.Policy()), gate.WithLogger(quiet))
	require.NoError(t, err)
	defer g.Close(ctx)

	for range 4 {
		g.Record(ctx, attempt("192.0.2.9", "victim"), false)
	}
	require.False(t, g.Check(ctx, attempt("192.0.2.10", "victim")).Allowed, "blocked before the flood")
	require.NoError(t, rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(usedMemory(t, rdb)+4<<20, 10)).Err())

	var r floodResult
	name := strings.Repeat("n", 64)
	for i := 0; i < 60_000 && r.degraded < 2000; i++ {
		d := g.Record(ctx, attempt(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), name+strconv.Itoa(i)), false)
		r.attempts++
		if d.Degraded {
			r.degraded++
		}
		if i%500 == 0 {
			tk, d := g.Begin(ctx, attempt(fmt.Sprintf("198.51.100.%d", i/500%256), "victim"))
			if d.Allowed {
				r.victimLetThrough++
				tk.FinishAsync(false)
			}
		}
	}
	for i := range 20 {
		tk, d := g.Begin(ctx, attempt(fmt.Sprintf("203.0.113.%d", i), "fresh-victim"))
		if d.Allowed {
			r.freshAdmitted++
			tk.FinishAsync(false)
		}
	}
	r.blockKeyLeft = rdb.Exists(ctx, prefix+":blocked:username:victim").Val() == 1
	require.NoError(t, rdb.ConfigSet(ctx, "maxmemory", "0").Err())
	return r
}

// TestRedisFullOfAttackerNames: a flood of new usernames fills a Redis
// whose memory is bounded. With the noeviction policy the gate needs,
// Redis refuses the counting scripts once full, the gate decides with its
// local limiter, and the block made before the flood outlives it: the
// victim is refused throughout, its block key is still in Redis after,
// and a new victim attacked while Redis is full gets limit+1 guesses. With
// allkeys-lru (measured, for contrast) Redis drops keys to make room,
// block keys too. CheckRedisMemoryPolicy, which the binaries run at
// start, says so.
func TestRedisFullOfAttackerNames(t *testing.T) {
	ctx := context.Background()
	t.Run("noeviction", func(t *testing.T) {
		r := flood(t, "noeviction")
		t.Logf("noeviction: %d attempts, %d decided by the local limiter (Redis full); blocked victim let through %d times; "+
			"its block key left: %t; a new victim's guesses admitted: %d", r.attempts, r.degraded, r.victimLetThrough, r.blockKeyLeft, r.freshAdmitted)
		assert.Positive(t, r.degraded, "Redis filled up and refused the counting scripts")
		assert.Zero(t, r.victimLetThrough, "the blocked victim stays refused through the flood")
		assert.True(t, r.blockKeyLeft, "the block outlived the flood")
		assert.LessOrEqual(t, r.freshAdmitted, gate.DefaultConfig().FailureLimit+1, "a new victim: limit+1 while Redis is full")
	})
	t.Run("allkeys-lru (flagged at start; its evictions measured)", func(t *testing.T) {
		r := flood(t, "allkeys-lru")
		t.Logf("allkeys-lru: %d attempts, %d decided by the local limiter; blocked victim let through %d times; its block key left: %t",
			r.attempts, r.degraded, r.victimLetThrough, r.blockKeyLeft)
	})
	t.Run("the check", func(t *testing.T) {
		srv := testenv.Redis(t)
		rdb := srv.Client()
		require.NoError(t, gate.CheckRedisMemoryPolicy(ctx, rdb), "Redis's default, noeviction")
		for _, policy := range []string{"allkeys-lru", "allkeys-lfu", "volatile-ttl", "volatile-lru", "allkeys-random"} {
			require.NoError(t, rdb.ConfigSet(ctx, "maxmemory-policy", policy).Err())
			err := gate.CheckRedisMemoryPolicy(ctx, rdb)
			assert.ErrorIs(t, err, gate.ErrRedisEvicts, policy)
			assert.ErrorContains(t, err, policy)
		}
	})
}
