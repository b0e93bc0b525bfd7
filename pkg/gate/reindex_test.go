package gate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

// Blocks set by hand, as django-defender's operators do with redis-cli,
// are refused at once and listed after Reindex; a prefix holding glob
// characters reads only its own keys.
func TestRedisReindex(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	client := srv.Client()
	const prefix, other = "idx[1]*", "idx1a"
	g, err := gate.New(func() gate.Config { c := gate.DefaultConfig(); c.KeyPrefix = prefix; return c }(),
		gate.NewRedisStore(client, prefix, gate.DefaultConfig().Policy()), gate.WithLogger(quiet))
	require.NoError(t, err)
	defer g.Close(ctx)

	require.NoError(t, client.Set(ctx, prefix+":blocked:ip:203.0.113.9", "blocked", 300*time.Second).Err())
	require.NoError(t, client.Set(ctx, prefix+":blocked:username:mallory", "blocked", 0).Err())
	require.NoError(t, client.Set(ctx, other+":blocked:ip:198.51.100.1", "blocked", 0).Err())
	for i := range 3000 { // enough keys for several SCAN steps
		require.NoError(t, client.Set(ctx, other+":failed:ip:10.0."+itoa(i/250)+"."+itoa(i%250), "1", time.Minute).Err())
	}

	d := g.Check(ctx, attempt("203.0.113.9", "someone"))
	require.NoError(t, d.Err)
	assert.False(t, d.Allowed, "a block set by hand is refused at once")
	ips, err := g.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	assert.Empty(t, ips, "but not listed before Reindex")

	n, err := g.Reindex(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	ips, err = g.Blocked(ctx, gate.KindIP, 0)
	require.NoError(t, err)
	require.Len(t, ips, 1, "only this prefix's keys: %v", ips)
	assert.Equal(t, "203.0.113.9", ips[0].Subject)
	assert.InDelta(t, 300, ips[0].TTL.Seconds(), 30)
	users, err := g.Blocked(ctx, gate.KindUsername, 0)
	require.NoError(t, err)
	require.Len(t, users, 1)
	assert.Equal(t, "mallory", users[0].Subject)
	assert.True(t, users[0].Permanent)

	n, err = g.Reindex(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "a second pass finds nothing new")
	ok, err := g.Unblock(ctx, gate.KindUsername, "mallory")
	require.NoError(t, err)
	assert.True(t, ok)
}

func TestMemoryReindexUnsupported(t *testing.T) {
	cfg := gate.DefaultConfig()
	mem := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy(), SweepInterval: -1})
	defer mem.Close()
	g, err := gate.New(cfg, mem, gate.WithLogger(quiet))
	require.NoError(t, err)
	defer g.Close(context.Background())
	_, err = g.Reindex(context.Background())
	assert.ErrorIs(t, err, errors.ErrUnsupported)
}
