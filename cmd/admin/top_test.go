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
	assert.Equal(t, first, top(), "the first look queries")

	fail("203.0.113.2", 3)
	advance(topTTL - time.Second)
	assert.Equal(t, first, top(), "within a minute: the same table")

	advance(2 * time.Second)
	var wg sync.WaitGroup
	for range 20 { // admins looking at once get the old table at once
		wg.Go(func() { assert.Equal(t, first, top()) })
	}
	wg.Wait()
	fresh := []record.TopEntry{{Value: "203.0.113.2", Failures: 3}, {Value: "203.0.113.1", Failures: 2}}
	require.Eventually(t, func() bool { return assert.ObjectsAreEqual(fresh, top()) }, 30*time.Second, 10*time.Millisecond,
		"the background query replaces it")
	h.topMu.Lock()
	defer h.topMu.Unlock()
	assert.Equal(t, 2, h.topQueries, "the first look's query and one refresh for the twenty looks")
}
