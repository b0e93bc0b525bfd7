package gate_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// Through the middleware, in combo mode and not: one password against
// 500 usernames from one address. The 11th name gets the lockout, the
// others after it never reach the site, and the sprayer's own login
// resets nothing.
func TestMiddlewareSprayRefusedByTheEleventhName(t *testing.T) {
	for _, b := range backends(t) {
		for _, combo := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/combo=%v", b.name, combo), func(t *testing.T) {
				cfg := gate.DefaultConfig()
				cfg.LockOutByIPAndUsername = combo
				cfg.IPFailureLimit = 1000
				g, ev := newGate(t, b, cfg)
				site := &loginSite{}
				h := g.Middleware(site)
				ip := fmt.Sprintf("203.0.113.%d", 100+b2i(combo))
				if b.name == "redis" {
					ip = fmt.Sprintf("198.51.100.%d", 100+b2i(combo))
				}
				for i := 1; i <= 10; i++ {
					w := post(t, h, ip, fmt.Sprintf("v%d", i), "Winter2026!")
					require.Equal(t, http.StatusOK, w.Code, "name %d", i)
				}
				assert.Equal(t, http.StatusFound, post(t, h, ip, "attacker", "secret").Code, "the own login")
				// The middleware settles outcomes in the background: until
				// the login's is written, its charge makes the next new
				// name wait (refused, saturated) rather than count.
				require.NoError(t, g.Flush(t.Context()))
				w := post(t, h, ip, "v11", "Winter2026!")
				require.Equal(t, http.StatusTooManyRequests, w.Code, "the 11th name gets the lockout")
				reached := site.calls.Load()
				for i := 12; i <= 500; i++ {
					require.Equal(t, http.StatusTooManyRequests, post(t, h, ip, fmt.Sprintf("v%d", i), "Winter2026!").Code)
				}
				assert.Equal(t, reached, site.calls.Load(), "no later guess reached the password check")
				assert.Equal(t, http.StatusTooManyRequests, post(t, h, ip, "attacker", "secret").Code, "the own account resets nothing")
				require.NoError(t, g.Flush(t.Context())) // the block is written in the background
				var sprays int
				for _, tr := range ev.blocks(true) {
					if tr.Kind == gate.KindSpray {
						sprays++
						assert.Equal(t, 11, tr.Failures)
					}
				}
				assert.Equal(t, 1, sprays, "one block event")
			})
		}
	}
}

// Observe mode through the middleware: a blocked source still reaches
// the site, its attempts are published as would-be refusals, and its
// blocks as observe events.
func TestMiddlewareObserveMode(t *testing.T) {
	cfg := gate.DefaultConfig()
	cfg.Mode = gate.ModeObserve
	g, ev := memGate(t, cfg)
	site := &loginSite{}
	h := g.Middleware(site)
	for i := 1; i <= 6; i++ {
		w := post(t, h, "203.0.113.120", "olga", "wrong")
		require.Equal(t, http.StatusOK, w.Code, "attempt %d is never refused", i)
	}
	assert.EqualValues(t, 6, site.calls.Load(), "every attempt reached the password check")
	require.NoError(t, g.Flush(t.Context())) // outcomes are settled in the background
	blocks := ev.blocks(true)
	require.NotEmpty(t, blocks)
	for _, b := range blocks {
		assert.True(t, b.Observe, "a would-be block is marked")
	}
	var would int
	for _, a := range ev.Attempts() {
		assert.True(t, a.Observe)
		if a.Outcome == gate.OutcomeBlocked {
			would++
		}
	}
	assert.Equal(t, 2, would, "attempts 5 and 6 would have been refused")
	d := g.Check(t.Context(), attempt("203.0.113.120", "olga"))
	assert.True(t, d.Allowed)
	assert.True(t, d.Observed)
	assert.Contains(t, d.BlockedBy, gate.KindUsername)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
