package main_test

import (
	"fmt"
	"net/http"
	"strings"
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
		require.False(t, strings.Contains(fmt.Sprint(r.blockedBy()), "ip"))
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
