package main_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// traffic is one replayable mix of logins: a brute force on one user, a
// sprayer, a credential stuffer with its own account, ordinary users,
// through both the one-call and the two-phase API.
func traffic(t *testing.T, g *gateProc) (statuses map[int]int) {
	statuses = map[int]int{}
	note := func(r reply) { statuses[r.Status]++ }
	for i := range 8 {
		note(g.attempt(t, "203.0.113.70", "brute-victim", false))
		note(g.attempt(t, "198.51.100.70", fmt.Sprintf("sprayed-%d", i), false))
	}
	for i := range 15 {
		note(g.attempt(t, "198.51.100.71", fmt.Sprintf("combo-%d", i), false))
		if i%3 == 2 {
			note(g.attempt(t, "198.51.100.71", "stuffer", true))
		}
	}
	for i := range 14 {
		r := g.begin(t, "192.0.2.70", fmt.Sprintf("two-phase-%d", i))
		note(r)
		if tok, ok := r.Body["token"].(string); ok {
			note(g.finish(t, tok, false))
		}
	}
	for i := range 5 {
		note(g.attempt(t, "192.0.2.71", fmt.Sprintf("user-%d", i), true))
	}
	return statuses
}

// blocksMade sums defender_gate_transitions_total over the blocks.
func blocksMade(t *testing.T, g *gateProc) int {
	t.Helper()
	m := g.do(t, http.MethodGet, "/metrics", "", nil)
	n := 0
	for _, line := range strings.Split(m.Raw, "\n") {
		if strings.HasPrefix(line, "defender_gate_transitions_total{") && strings.Contains(line, `direction="block"`) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			require.NoError(t, err)
			n += int(v)
		}
	}
	return n
}

// The same traffic in both modes: observe mode refuses nothing, and makes
// exactly the blocks enforce mode makes, as would-be blocks.
func TestObserveModeMatchesEnforce(t *testing.T) {
	r := testenv.Redis(t)
	enforce := startGate(t, "DEFENDER_REDIS_URL="+r.URL, "DEFENDER_CACHE_PREFIX=enforce")
	observe := startGate(t, "DEFENDER_REDIS_URL="+r.URL, "DEFENDER_CACHE_PREFIX=observe", "DEFENDER_MODE=observe")

	enforced := traffic(t, enforce)
	observed := traffic(t, observe)
	require.Positive(t, enforced[http.StatusTooManyRequests], "the traffic gets refusals under enforce: %v", enforced)
	assert.Equal(t, 0, observed[http.StatusTooManyRequests], "observe refuses nothing: %v", observed)
	assert.Equal(t, len(observed), 1, "only 200s: %v", observed)

	made := blocksMade(t, enforce)
	require.Positive(t, made)
	assert.Equal(t, made, blocksMade(t, observe), "as many would-be blocks as blocks")
	assert.Positive(t, metric(t, observe, "defender_gate_observed_refusals_total"))
	assert.Equal(t, float64(0), metric(t, enforce, "defender_gate_observed_refusals_total"))

	// A would-be refusal says so, and what would have refused it.
	c := observe.check(t, "203.0.113.70", "brute-victim")
	assertAllowed(t, c)
	assert.Equal(t, true, c.Body["observed"])
	assert.ElementsMatch(t, []string{"ip", "username"}, c.blockedBy())
	// Its two-phase outcome counts nothing: a success clears no block.
	b := observe.begin(t, "203.0.113.70", "brute-victim")
	assertAllowed(t, b)
	assert.Equal(t, true, b.Body["observed"])
	assertAllowed(t, observe.finish(t, b.Body["token"].(string), true))
	assert.Equal(t, true, observe.check(t, "203.0.113.70", "brute-victim").Body["observed"], "still a would-be block")
}
