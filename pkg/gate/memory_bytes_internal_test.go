package gate

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestMemoryBytesTrackHeap checks the store's own count of its bytes
// (entryBytes, chargeBytes) against the heap it really takes, for short
// and long subjects, with and without pending charges: the count may
// not fall short of the heap by more than a fifth, or MaxBytes would
// not bound the process's memory.
func TestMemoryBytesTrackHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a few hundred MB")
	}
	for _, tc := range []struct {
		name    string
		subject int
		charges int
	}{
		{"short names", 12, 0},
		{"long names", 1020, 0},
		{"short names, two charges", 12, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 100_000
			s := NewMemoryStore(MemoryOptions{Policy: DefaultConfig().Policy(), MaxEntries: 10 * n, MaxBytes: 1 << 40, SweepInterval: -1})
			defer s.Close()
			pad := strings.Repeat("ж", max(0, tc.subject-8)/2)
			before := heapInUse()
			for i := 0; i < n; i++ {
				op := Op{Counters: []Counter{{Kind: KindUsername, Subject: pad + strconv.Itoa(10_000_000+i), Limit: 5}}}
				if tc.charges == 0 {
					_, err := s.Record(context.Background(), op, false)
					require.NoError(t, err)
				}
				for c := 0; c < tc.charges; c++ {
					op.Token = "0123456789abcdef-" + strconv.Itoa(i*10+c)
					_, err := s.Begin(context.Background(), op)
					require.NoError(t, err)
				}
			}
			heap := heapInUse() - before
			counted := s.stats().Bytes
			t.Logf("%d entries: heap %d B (%d per entry), counted %d B (%d per entry)", n, heap, heap/n, counted, counted/n)
			assert.GreaterOrEqual(t, float64(counted), 0.8*float64(heap), "the count follows the heap")
			runtime.KeepAlive(s)
		})
	}
}

// TestMemoryFloodOfLongNamesIsBoundedByBytes: usernames of 255 four-byte
// characters, far more than fit, keep the store within MaxBytes by its
// count and within about twice that in the heap, and blocks are kept
// before plain counters. An entry bound alone let 1.1 M such names take
// 2 GB.
func TestMemoryFloodOfLongNamesIsBoundedByBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates about 100 MB")
	}
	const maxBytes = 16 << 20
	now := time.Unix(1_700_000_000, 0)
	s := NewMemoryStore(MemoryOptions{Policy: DefaultConfig().Policy(), MaxBytes: maxBytes, Clock: func() time.Time { return now }, SweepInterval: -1})
	defer s.Close()
	ctx := context.Background()
	blocked := Op{Counters: []Counter{{Kind: KindUsername, Subject: "victim", Limit: 0}}}
	_, err := s.Record(ctx, blocked, false)
	require.NoError(t, err)

	before := heapInUse()
	name := strings.Repeat("\U0001F600", 250)
	for i := 0; i < 100_000; i++ {
		op := Op{Counters: []Counter{{Kind: KindUsername, Subject: name + strconv.Itoa(i), Limit: 3}}}
		_, err := s.Record(ctx, op, false)
		require.NoError(t, err)
		if i%10_000 == 0 {
			require.LessOrEqual(t, s.stats().Bytes, int64(maxBytes))
		}
	}
	heap := heapInUse() - before
	st := s.stats()
	t.Logf("after 100,000 names of 1 KB: %d entries, %d B counted, heap +%d B, %d evictions", st.Entries, st.Bytes, heap, st.Evictions)
	assert.LessOrEqual(t, st.Bytes, int64(maxBytes))
	assert.Less(t, heap, int64(2*maxBytes), "the heap stays within twice the bound")
	assert.Positive(t, st.Evictions)
	assert.Zero(t, st.EvictedBlocks, "counters go first; the block stays")
	r, err := s.Check(ctx, blocked)
	require.NoError(t, err)
	assert.Len(t, r.Blocked, 1, "the victim's block outlived the flood")
}
