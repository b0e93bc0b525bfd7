package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/record"
)

// The dashboard's top tables are kept topTTL: another look within it
// reads nothing; past it, the old table is shown once more while one
// background query replaces it, however many admins look.
func TestTopIsKeptAMinute(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	h := e.srv.hist
	var mu sync.Mutex
	now := time.Now()
	h.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	fail := func(ip string, n int) {
		rows := make([]attempt, n)
		for i := range rows {
			rows[i] = attempt{ts: time.Now().Add(-time.Minute), ip: ip, user: "alice", result: "failure"}
		}
		e.insertAttempts(rows)
	}
	ctx := context.Background()
	top := func() []record.TopEntry {
		items, err := h.Top(ctx, "ip", time.Hour, 10)
		require.NoError(t, err)
		return items
	}

	fail("203.0.113.1", 2)
	first := []record.TopEntry{{Value: "203.0.113.1", Failures: 2}}
	var wg sync.WaitGroup
	for range 20 { // the first looks at once: one queries, the others wait for it
		wg.Go(func() { assert.Equal(t, first, top()) })
	}
	wg.Wait()
	items, err := h.Top(ctx, "ip", time.Hour, 1)
	require.NoError(t, err)
	assert.Equal(t, first[:1], items, "a smaller limit: the head of the same answer")

	fail("203.0.113.2", 3)
	advance(topTTL - time.Second)
	assert.Equal(t, first, top(), "within a minute: the same table")

	advance(2 * time.Second)
	for range 20 { // admins looking at once get the old table at once
		wg.Go(func() { assert.Equal(t, first, top()) })
	}
	wg.Wait()
	fresh := []record.TopEntry{{Value: "203.0.113.2", Failures: 3}, {Value: "203.0.113.1", Failures: 2}}
	require.Eventually(t, func() bool { return assert.ObjectsAreEqual(fresh, top()) }, 30*time.Second, 10*time.Millisecond,
		"the background query replaces it")
	h.topMu.Lock()
	assert.Equal(t, 2, h.topQueries, "one query for the twenty first looks, one refresh for the twenty later ones")
	h.topMu.Unlock()

	// ClickHouse unreachable (the History's connections closed; the
	// server is the package's): the kept table is served while it is
	// young enough, then the look fails and says so, rather than show it
	// forever.
	require.NoError(t, h.conn.Close())
	advance(topTTL)
	assert.Equal(t, fresh, top(), "a failed refresh leaves the kept table")
	require.Eventually(t, func() bool {
		h.topMu.Lock()
		defer h.topMu.Unlock()
		return !h.top[topKey{"ip", time.Hour}].refreshing
	}, time.Minute, 10*time.Millisecond, "the refresh gives up")
	assert.Equal(t, fresh, top(), "still young enough")
	advance(topMaxAge)
	_, err = h.Top(ctx, "ip", time.Hour, 10)
	assert.Error(t, err, "too old: the look queries, and fails")
}
