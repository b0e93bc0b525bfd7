package main_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A shared address (carrier-grade NAT by default) is never blocked whole:
// 50 failures on 50 usernames from it block no address, another user
// behind it logs in, its spraying is reported (spray_shared) without
// refusing anyone, and each (IP, username) pair is still limited.
func TestSharedAddressNeverBlockedWhole(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, env...)
		const nat = "100.64.12.34"
		for i := range 50 {
			r := g.attempt(t, nat, fmt.Sprintf("guess-%d", i), false)
			assertAllowed(t, r, "name %d", i)
			assert.Equal(t, 0, r.num("ip_failures"), "the address itself is not counted")
			assert.Equal(t, 1, r.num("pair_failures"))
		}
		assertAllowed(t, g.attempt(t, nat, "neighbour", true), "another user behind the address logs in")
		assertAllowed(t, g.check(t, nat, "someone-else"))

		m := g.do(t, http.MethodGet, "/metrics", "", nil)
		assert.Contains(t, m.Raw, `defender_gate_transitions_total{direction="block",kind="spray_shared",local="false"} 1`,
			"the spraying is reported once")
		assert.Contains(t, m.Raw, `defender_gate_shared_attempts_total{list="cgnat"}`)
		assert.NotContains(t, m.Raw, `kind="ip",local="false"`, "no block of the address")

		// One user guessed from the shared address: its pair blocks, and
		// the username counter still protects the account everywhere.
		for range 3 {
			assertAllowed(t, g.attempt(t, nat, "target", false))
		}
		r := g.attempt(t, nat, "target", false)
		assertBlocked(t, r, []string{"pair", "username"})
		assertAllowed(t, g.attempt(t, nat, "neighbour", true), "the neighbour is not concerned")
	})
}

// DEFENDER_SPRAY_LIMIT and the shared lists: an ordinary address next to
// the shared range is blocked for the same traffic.
func TestOrdinaryAddressSprayIsBlocked(t *testing.T) {
	g := startGate(t, "DEFENDER_LOGIN_FAILURE_LIMIT_IP=1000")
	for i := range 10 {
		assertAllowed(t, g.attempt(t, "100.128.0.1", fmt.Sprintf("guess-%d", i), false))
	}
	assertBlocked(t, g.attempt(t, "100.128.0.1", "guess-10", false), []string{"spray"})
}

// The iCloud Private Relay list from a file: 50 failures on 50 usernames
// from one relay address block nobody behind it, in combo mode or not.
func TestRelayAddressNeverBlockedWhole(t *testing.T) {
	dir := t.TempDir()
	relay := filepath.Join(dir, "egress-ip-ranges.csv")
	require.NoError(t, os.WriteFile(relay, []byte("172.224.226.0/27,GB,GB-EN,London,\n2a02:26f7:b3c0:4000::/64,GB,GB-EN,London,\n"), 0o600))
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, append(env, "DEFENDER_SHARED_RELAY_FILE="+relay)...)
		for _, ip := range []string{"172.224.226.7", "2a02:26f7:b3c0:4000::99"} {
			for i := range 50 {
				assertAllowed(t, g.attempt(t, ip, fmt.Sprintf("relay-%d", i), false), "%s, name %d", ip, i)
			}
			assertAllowed(t, g.attempt(t, ip, "relay-user", true), "another user behind %s logs in", ip)
		}
		m := g.do(t, http.MethodGet, "/metrics", "", nil)
		assert.Contains(t, m.Raw, `defender_gate_shared_attempts_total{list="icloud-relay"} 102`)
		assert.Contains(t, m.Raw, `defender_shared_prefixes{list="icloud-relay"} 2`)
		// Next to the relay's range, an ordinary address is blocked.
		for i := range 3 {
			assertAllowed(t, g.attempt(t, "172.224.226.100", fmt.Sprintf("n-%d", i), false))
		}
		assertBlocked(t, g.attempt(t, "172.224.226.100", "n-3", false), []string{"ip"})
	})
}

// A list that claims too much stops the start with the setting named.
func TestSharedListClaimingTooMuchIsRefused(t *testing.T) {
	list := filepath.Join(t.TempDir(), "office.txt")
	require.NoError(t, os.WriteFile(list, []byte("# our proxies\n0.0.0.0/0\n"), 0o600))
	code, out := exitCode(t, append(baseEnv(), "DEFENDER_SHARED_CIDR_FILES=office="+list))
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "DEFENDER_SHARED_CIDR_FILES")
	assert.Contains(t, out, "/0")
}
