package gate

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// checkInvariants verifies the bookkeeping of every shard of s: each entry
// is in its map and in exactly the list its blocked flag says, and the
// counts agree.
func checkInvariants(t *testing.T, s *MemoryStore) {
	t.Helper()
	total := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		inList := map[*entry]bool{}
		for e := sh.lru.front(); e != nil; e = sh.lru.next(e) {
			require.False(t, e.blocked, "blocked entry %q in the lru list", e.subject)
			require.False(t, inList[e])
			inList[e] = true
		}
		for k := range sh.blocks {
			for e := sh.blocks[k].front(); e != nil; e = sh.blocks[k].next(e) {
				require.True(t, e.blocked, "unblocked entry %q in a blocks list", e.subject)
				require.Equal(t, uint8(k), e.kind)
				require.False(t, inList[e])
				inList[e] = true
			}
		}
		n := 0
		for k := range sh.m {
			for subject, e := range sh.m[k] {
				require.Equal(t, subject, e.subject)
				require.Equal(t, uint8(k), e.kind)
				require.True(t, inList[e], "entry %q in no list", subject)
				require.Equal(t, i, s.shardIndex(e.kind, subject))
				n++
			}
		}
		require.Len(t, inList, n)
		require.Equal(t, n, sh.n)
		require.LessOrEqual(t, n, s.perShard)
		total += n
		sh.mu.Unlock()
	}
	require.Equal(t, int64(total), s.entries.Load())
}

// TestMemoryRandomOpsKeepInvariants drives a small store with random calls
// over few subjects and a moving clock, so that every path (eviction,
// expiry, conversion of charges, blocks by hand) runs, and checks its
// bookkeeping after each call.
func TestMemoryRandomOpsKeepInvariants(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := Policy{
		AttemptCooloff:  time.Minute,
		LockoutCooloffs: []time.Duration{30 * time.Second, 2 * time.Minute, 0},
		LockoutMemory:   5 * time.Minute,
		PendingTimeout:  10 * time.Second,
	}
	s := NewMemoryStore(MemoryOptions{Policy: p, MaxEntries: 40, Shards: 1, Clock: func() time.Time { return now }, SweepInterval: -1})
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	subject := func() string { return strconv.Itoa(rng.IntN(60)) }
	var tokens []Op
	for i := range 8000 {
		op := Op{Counters: []Counter{{Kind: KindIP, Subject: subject(), Limit: rng.IntN(4)}}}
		if rng.IntN(2) == 0 {
			op.Counters = append(op.Counters, Counter{Kind: KindUsername, Subject: subject(), Limit: rng.IntN(4)})
		}
		var err error
		switch r := rng.IntN(100); {
		case r < 25:
			op.Token = "t" + strconv.Itoa(i)
			var res Result
			res, err = s.Begin(ctx, op)
			if res.Admitted {
				tokens = append(tokens, op)
			}
		case r < 45 && len(tokens) > 0:
			j := rng.IntN(len(tokens))
			_, err = s.Finish(ctx, tokens[j], rng.IntN(4) == 0)
			tokens = append(tokens[:j], tokens[j+1:]...)
		case r < 80:
			_, err = s.Record(ctx, op, rng.IntN(10) == 0)
		case r < 85:
			_, err = s.Block(ctx, KindUsername, subject(), time.Duration(rng.IntN(3))*time.Minute)
		case r < 90:
			_, err = s.Unblock(ctx, KindIP, subject())
		case r < 93:
			_, err = s.Blocked(ctx, KindIP, 0)
		case r < 96:
			s.sweep()
		default:
			_, err = s.Check(ctx, op)
		}
		require.NoError(t, err)
		now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		checkInvariants(t, s)
	}
	require.NotZero(t, s.stats().Evictions)
	require.NotZero(t, s.stats().Expired)
}
