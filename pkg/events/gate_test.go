package events_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// TestGateRoundTrip drives a real gate (memory store) through a lockout:
// every attempt gives exactly one attempt event, each block transition
// one block event, the unblock one unblock event.
func TestGateRoundTrip(t *testing.T) {
	env := newNATSEnv(t)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{Gate: "g1"})
	require.NoError(t, err)
	stop := runPublisher(t, p)

	var mu sync.Mutex
	var live []events.Block
	_, err = events.SubscribeBlocks(t.Context(), env.nc, events.Subjects{}, func(b events.Block) {
		mu.Lock()
		live = append(live, b)
		mu.Unlock()
	})
	require.NoError(t, err)
	require.NoError(t, env.nc.Flush())

	cfg := gate.DefaultConfig() // limit 3, IP and username counted apart
	g, err := gate.New(cfg, gate.NewMemoryStore(gate.MemoryOptions{}), gate.WithEmitter(p))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close(context.Background()) })

	ctx := t.Context()
	a := gate.Attempt{IP: netip.MustParseAddr("192.0.2.10"), Username: "alice", Path: "/login", UserAgent: "test"}
	var decisions []gate.Decision
	for range 5 { // 3 failures, the 4th blocks, the 5th is refused
		decisions = append(decisions, g.Record(ctx, a, false))
	}
	assert.True(t, decisions[2].Allowed)
	assert.False(t, decisions[3].Allowed, "the 4th failure blocks")
	assert.False(t, decisions[4].Allowed)
	unblocked, err := g.Unblock(ctx, gate.KindIP, "192.0.2.10")
	require.NoError(t, err)
	require.True(t, unblocked)

	attempts := streamMsgs(t, env.js, events.Subjects{}.Attempts(), 5)
	require.Len(t, attempts, 5, "one event per attempt")
	var results []string
	for _, m := range attempts {
		ev, err := events.DecodeAttempt(m.Data())
		require.NoError(t, err)
		results = append(results, ev.Result)
		assert.Equal(t, "192.0.2.10", ev.IP)
		assert.Equal(t, "alice", ev.Username)
		assert.Equal(t, "g1", ev.Gate)
	}
	assert.Equal(t, []string{"failure", "failure", "failure", "failure", "blocked"}, results)

	blocks := streamMsgs(t, env.js, events.Subjects{}.Blocks(), 2)
	require.Len(t, blocks, 2, "one block event per blocked kind")
	kinds := map[string]int{}
	for _, m := range blocks {
		b, err := events.DecodeBlock(m.Data())
		require.NoError(t, err)
		kinds[b.Kind]++
		assert.Equal(t, events.TypeBlock, b.Type)
		assert.Equal(t, "auto", b.Reason)
		assert.NotNil(t, b.Until)
		assert.Equal(t, "192.0.2.10", b.IP, "the block says which address made it")
	}
	assert.Equal(t, map[string]int{"ip": 1, "username": 1}, kinds)

	unblocks := streamMsgs(t, env.js, events.Subjects{}.Unblocks(), 1)
	require.Len(t, unblocks, 1)
	u, err := events.DecodeBlock(unblocks[0].Data())
	require.NoError(t, err)
	assert.Equal(t, events.TypeUnblock, u.Type)
	assert.Equal(t, "admin", u.Reason)
	assert.Equal(t, "192.0.2.10", u.Subject)
	assert.Empty(t, u.IP, "an admin's unblock comes from no attempt")

	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(live) == 2 }, 10*time.Second, 10*time.Millisecond,
		"the live block.> subscriber sees both blocks")
	require.NoError(t, stop())
	assert.Equal(t, uint64(8), p.Stats().Published)
}
