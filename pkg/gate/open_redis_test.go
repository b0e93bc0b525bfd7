package gate_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

func TestOpenRedisStoreURLs(t *testing.T) {
	tests := []struct {
		name, url string
		store     string // type of the store, "" for an error
	}{
		{"single", "redis://127.0.0.1:6379/0", "*gate.RedisStore"},
		{"single tls", "rediss://u:p@127.0.0.1:6379/2", "*gate.RedisStore"},
		{"cluster scheme", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001?pool_size=4", "*gate.RedisClusterStore"},
		{"cluster scheme one seed", "redis+cluster://u:p@127.0.0.1:7000", "*gate.RedisClusterStore"},
		{"cluster tls", "rediss+cluster://127.0.0.1:7000,127.0.0.1:7001", "*gate.RedisClusterStore"},
		{"url list", "redis://127.0.0.1:7000, redis://127.0.0.1:7001", "*gate.RedisClusterStore"},
		{"sentinel", "redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster/1", "*gate.RedisStore"},
		{"cluster db", "redis+cluster://127.0.0.1:7000/3", ""},
		{"cluster empty host", "redis+cluster://127.0.0.1:7000,", ""},
		{"sentinel without master", "redis+sentinel://127.0.0.1:26379", ""},
		{"sentinel bad db", "redis+sentinel://127.0.0.1:26379/m/x", ""},
		{"bad scheme", "http://127.0.0.1:7000,127.0.0.1:7001", ""},
		{"empty", " ", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gate.DefaultConfig()
			cfg.RedisURL = tc.url
			s, client, err := gate.OpenRedisStore(cfg)
			if tc.store == "" {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			defer client.Close()
			assert.Equal(t, tc.store, fmt.Sprintf("%T", s))
			wantClient := "*redis.Client" // one Redis, or a Sentinel's failover client
			if tc.store == "*gate.RedisClusterStore" {
				wantClient = "*redis.ClusterClient"
			}
			assert.Equal(t, wantClient, fmt.Sprintf("%T", client), "the store's own client, for health checks")
		})
	}
	cfg := gate.DefaultConfig()
	cfg.RedisURL, cfg.KeyPrefix = "redis+cluster://127.0.0.1:7000", "{tagged}"
	_, _, err := gate.OpenRedisStore(cfg)
	assert.Error(t, err, "a cluster prefix may not hold a hash tag")
}

// testOpenRedisStoreCluster opens a store from a cluster URL naming two
// nodes (the rest are discovered) and blocks through it. Run by
// TestRedisClusterStore on its cluster.
func testOpenRedisStoreCluster(t *testing.T, c *testenv.RedisClusterServer) {
	cfg := gate.DefaultConfig()
	cfg.RedisURL = "redis+cluster://" + strings.Join(c.Addrs()[:2], ",")
	s, client, err := gate.OpenRedisStore(cfg)
	require.NoError(t, err)
	defer client.Close()
	g, err := gate.New(cfg, s, gate.WithLogger(quiet))
	require.NoError(t, err)
	defer g.Close(ctx)
	user, ip := fresh()
	for i := 0; i < 4; i++ {
		g.Record(ctx, attempt(ip, user), false)
	}
	d := g.Check(ctx, attempt("192.0.2.1", user))
	require.NoError(t, d.Err)
	assert.False(t, d.Allowed)
	list, err := g.Blocked(ctx, gate.KindUsername, 0)
	require.NoError(t, err)
	assert.Contains(t, subjects(list), user)
}

// TestOpenRedisStoreKeepsPasswordsOut: a DEFENDER_REDIS_URL that does not
// parse is refused naming the variable, without its password: url.Parse's
// error quoted the URL whole, and the gate printed it at start.
func TestOpenRedisStoreKeepsPasswordsOut(t *testing.T) {
	for _, raw := range []string{
		"redis://:s3cret@[bad:6379/0",
		"redis://user:s3cr%zz@127.0.0.1:6379/0",
		"redis+cluster://:s3cret@[bad:7000",
		"redis://:s3cret@127.0.0.1:7000, redis://:s3cret@[bad:7001",
		"redis://:s3cret@127.0.0.1:7000,",
		"redis://:s3cr,et@127.0.0.1:7000,redis://127.0.0.1:7001", // a comma in a list's password
		"redis+sentinel://:s3cret@[bad:26379/mymaster",
		"redis+sentinel://:s3cret@127.0.0.1:26379",
	} {
		cfg := gate.DefaultConfig()
		cfg.RedisURL = raw
		_, _, err := gate.OpenRedisStore(cfg)
		require.Error(t, err, raw)
		assert.Contains(t, err.Error(), "DEFENDER_REDIS_URL", raw)
		assert.NotContains(t, err.Error(), "s3cr", raw)
	}
}

// TestOpenRedisStoreCommaInPassword: a comma in the password of one
// Redis's URL (valid in a URL's user information) does not make a URL
// list: the URL was split there into a "cluster" of broken URLs, refused,
// and the error quoted the password up to the comma (in a list, where
// the comma is ambiguous, the URL is still refused, without it: see
// TestOpenRedisStoreKeepsPasswordsOut).
func TestOpenRedisStoreCommaInPassword(t *testing.T) {
	r := testenv.Redis(t)
	admin := r.Client()
	defer admin.Close()
	require.NoError(t, admin.ConfigSet(ctx, "requirepass", "s3cr,et").Err())
	cfg := gate.DefaultConfig()
	cfg.RedisURL = "redis://:s3cr,et@" + r.Addr + "/0"
	s, client, err := gate.OpenRedisStore(cfg)
	require.NoError(t, err)
	defer client.Close()
	assert.Equal(t, "*gate.RedisStore", fmt.Sprintf("%T", s))
	assert.NoError(t, client.Ping(ctx).Err())
}

// TestOpenRedisStoreSentinelOptions: the query options of a
// redis+sentinel:// URL apply, as for the other forms, and unknown ones
// are refused: they were ignored without a word (a pool_size or
// dial_timeout, or a misspelt option).
func TestOpenRedisStoreSentinelOptions(t *testing.T) {
	cfg := gate.DefaultConfig()
	cfg.RedisURL = "redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster/1?pool_size=7&dial_timeout=2s"
	_, client, err := gate.OpenRedisStore(cfg)
	require.NoError(t, err)
	defer client.Close()
	c, ok := client.(*redis.Client)
	require.True(t, ok, "%T", client)
	opt := c.Options()
	assert.Equal(t, 7, opt.PoolSize)
	assert.Equal(t, 2*time.Second, opt.DialTimeout)
	assert.Equal(t, 1, opt.DB)
	assert.Equal(t, "pw", opt.Password)

	for _, raw := range []string{
		"redis+sentinel://127.0.0.1:26379/mymaster?pool_sise=7",
		"redis+sentinel://127.0.0.1:26379,/mymaster",
	} {
		cfg.RedisURL = raw
		_, _, err := gate.OpenRedisStore(cfg)
		assert.Error(t, err, raw)
	}
}
