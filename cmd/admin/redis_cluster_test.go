package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// TestCLIOnRedisCluster: the admin opens its store as the gate does
// (gate.OpenRedisStore), so a redis+cluster:// URL works: blocks made
// through it are listed from every master and can be lifted.
func TestCLIOnRedisCluster(t *testing.T) {
	c := testenv.RedisCluster(t)
	env := map[string]string{
		"DEFENDER_REDIS_URL":    "redis+cluster://" + strings.Join(c.Addrs(), ","),
		"DEFENDER_CACHE_PREFIX": "admintest",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	blocked := func() BlockedList {
		t.Helper()
		code, out, errOut := runCLI(t, lookup, "blocked", "--json")
		require.Zero(t, code, errOut)
		var list BlockedList
		require.NoError(t, json.Unmarshal([]byte(out), &list), out)
		return list
	}
	values := func(es []BlockedEntry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Value)
		}
		return out
	}

	ips := []string{"192.0.2.1", "192.0.2.2", "2001:db8::1", "198.51.100.7"}
	for _, ip := range ips {
		code, _, errOut := runCLI(t, lookup, "block", "ip", ip, "--for", "1h")
		require.Zero(t, code, errOut)
	}
	code, _, errOut := runCLI(t, lookup, "block", "username", "alice", "--permanent")
	require.Zero(t, code, errOut)
	list := blocked()
	// IPv6 clients are blocked by their /64 (DEFENDER_IPV6_PREFIX).
	assert.ElementsMatch(t, []string{"192.0.2.1", "192.0.2.2", "2001:db8::/64", "198.51.100.7"}, values(list.IPs),
		"blocks on every master are listed")
	assert.Equal(t, []string{"alice"}, values(list.Usernames))

	code, _, errOut = runCLI(t, lookup, "unblock", "ip", "2001:db8::1")
	require.Zero(t, code, errOut)
	assert.ElementsMatch(t, []string{"192.0.2.1", "192.0.2.2", "198.51.100.7"}, values(blocked().IPs))
}
