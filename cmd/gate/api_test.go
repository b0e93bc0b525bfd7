package main_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// The original's flow with limit 3: failures 1..3 are plain failures, the
// 4th blocks and is answered 429, then every attempt is refused.
func TestLockoutAfterLimit(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, env...)
		for i := 1; i <= 3; i++ {
			r := g.attempt(t, "203.0.113.7", "alice", false)
			assertAllowed(t, r, "failure %d", i)
			assert.Equal(t, i, r.num("ip_failures"))
			assert.Equal(t, i, r.num("username_failures"))
			assert.Equal(t, false, r.Body["degraded"])
		}
		r := g.attempt(t, "203.0.113.7", "alice", false)
		assertBlocked(t, r, []string{"ip", "username"})
		assert.Equal(t, 4, r.num("ip_failures"))
		assert.LessOrEqual(t, r.num("retry_after"), 300)
		assert.Equal(t, false, r.Body["permanent"])
		assert.Equal(t, "auto", r.Body["reason"])

		// Refused now, even with the right password, and not counted.
		assertBlocked(t, g.attempt(t, "203.0.113.7", "alice", true), []string{"ip", "username"})
		assertBlocked(t, g.attempt(t, "203.0.113.7", "alice", false), []string{"ip", "username"})
		assert.Equal(t, 4, g.check(t, "203.0.113.7", "alice").num("ip_failures"))
		// Each side on its own.
		assertBlocked(t, g.check(t, "198.51.100.1", "alice"), []string{"username"})
		assertBlocked(t, g.check(t, "203.0.113.7", "bob"), []string{"ip"})
		assertAllowed(t, g.check(t, "198.51.100.1", "bob"))
		// Usernames are normalised: case and spaces do not escape.
		assertBlocked(t, g.check(t, "198.51.100.1", " ALICE "), []string{"username"})
	})
}

func TestSeparateLimits(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, append(env, "DEFENDER_LOGIN_FAILURE_LIMIT_IP=5", "DEFENDER_LOGIN_FAILURE_LIMIT_USERNAME=2")...)
		const ip = "203.0.113.8"
		assertAllowed(t, g.attempt(t, ip, "alice", false))
		assertAllowed(t, g.attempt(t, ip, "alice", false))
		assertBlocked(t, g.attempt(t, ip, "alice", false), []string{"username"}) // username 3 > 2; ip 3
		assertAllowed(t, g.attempt(t, ip, "carol", false))                       // ip 4
		assertAllowed(t, g.attempt(t, ip, "dave", false))                        // ip 5
		r := g.attempt(t, ip, "erin", false)                                     // ip 6 > 5
		assertBlocked(t, r, []string{"ip"})
		assert.Equal(t, 6, r.num("ip_failures"))
		assert.Equal(t, 1, r.num("username_failures"))
	})
}

func TestComboMode(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, append(env, "DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME=true")...)
		for i := 1; i <= 3; i++ {
			r := g.attempt(t, "203.0.113.9", "alice", false)
			assertAllowed(t, r)
			assert.Equal(t, i, r.num("pair_failures"))
			assert.Equal(t, 0, r.num("ip_failures"))
		}
		r := g.attempt(t, "203.0.113.9", "alice", false)
		assertBlocked(t, r, []string{"pair"})
		assert.Equal(t, 4, r.num("pair_failures"))
		assertBlocked(t, g.check(t, "203.0.113.9", "alice"), []string{"pair"})
		// Another user behind the same IP, and the same user elsewhere, go on.
		assertAllowed(t, g.attempt(t, "203.0.113.9", "bob", false))
		assertAllowed(t, g.attempt(t, "198.51.100.9", "alice", true))
	})
}

func TestDisableLockouts(t *testing.T) {
	t.Parallel()
	t.Run("ip", func(t *testing.T) {
		t.Parallel()
		g := startGate(t, "DEFENDER_DISABLE_IP_LOCKOUT=true")
		for i := range 6 {
			r := g.attempt(t, "203.0.113.10", fmt.Sprintf("user%d", i), false)
			assertAllowed(t, r, "user %d", i)
			assert.Equal(t, 0, r.num("ip_failures"))
		}
		for range 3 {
			assertAllowed(t, g.attempt(t, "203.0.113.10", "alice", false))
		}
		assertBlocked(t, g.attempt(t, "203.0.113.10", "alice", false), []string{"username"})
	})
	t.Run("username", func(t *testing.T) {
		t.Parallel()
		g := startGate(t, "DEFENDER_DISABLE_USERNAME_LOCKOUT=true")
		for i := range 6 {
			r := g.attempt(t, fmt.Sprintf("198.51.100.%d", i+1), "alice", false)
			assertAllowed(t, r, "ip %d", i)
			assert.Equal(t, 0, r.num("username_failures"))
		}
		for range 3 {
			assertAllowed(t, g.attempt(t, "203.0.113.11", fmt.Sprintf("u%d", time.Now().UnixNano()), false))
		}
		assertBlocked(t, g.attempt(t, "203.0.113.11", "bob", false), []string{"ip"})
	})
}

func TestCooloffExpiry(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, append(env, "DEFENDER_COOLOFF_TIME=1")...)
		for range 3 {
			assertAllowed(t, g.attempt(t, "203.0.113.12", "alice", false))
		}
		r := g.attempt(t, "203.0.113.12", "alice", false)
		assertBlocked(t, r, []string{"ip", "username"})
		assert.Equal(t, "1", r.Header.Get("Retry-After"))
		require.Eventually(t, func() bool {
			return g.check(t, "203.0.113.12", "alice").Status == http.StatusOK
		}, 10*time.Second, 50*time.Millisecond)
		// The failures were forgotten with the block (cool-off 1 s too).
		r = g.attempt(t, "203.0.113.12", "alice", false)
		assertAllowed(t, r)
		assert.Equal(t, 1, r.num("ip_failures"))
	})
}

func TestPermanentBlock(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, append(env, "DEFENDER_COOLOFF_TIME=0")...)
		for range 3 {
			assertAllowed(t, g.attempt(t, "203.0.113.13", "alice", false))
		}
		r := g.attempt(t, "203.0.113.13", "alice", false)
		assertBlocked(t, r, []string{"ip", "username"})
		assert.Equal(t, true, r.Body["permanent"])
		assert.Equal(t, 0, r.num("retry_after"))
		assert.Empty(t, r.Header.Get("Retry-After"))
		c := g.check(t, "203.0.113.13", "alice")
		assertBlocked(t, c, []string{"ip", "username"})
		assert.Equal(t, true, c.Body["permanent"])
	})
}

func TestSuccessClearsCounters(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, env...)
		for range 3 {
			assertAllowed(t, g.attempt(t, "203.0.113.14", "alice", false))
		}
		r := g.attempt(t, "203.0.113.14", "alice", true)
		assertAllowed(t, r)
		assert.Equal(t, 0, r.num("ip_failures"))
		assert.Equal(t, 0, r.num("username_failures"))
		for i := 1; i <= 3; i++ {
			r := g.attempt(t, "203.0.113.14", "alice", false)
			assertAllowed(t, r)
			assert.Equal(t, i, r.num("username_failures"))
		}
	})
}

// begin starts a two-phase attempt and returns its token.
func (p *gateProc) begin(t *testing.T, ip, username string) reply {
	t.Helper()
	return p.post(t, "/v1/attempts", map[string]any{"ip": ip, "username": username, "path": "/login", "user_agent": "test"})
}

// finish reports a two-phase attempt's outcome.
func (p *gateProc) finish(t *testing.T, token string, success bool) reply {
	t.Helper()
	return p.post(t, "/v1/attempts/"+token, map[string]any{"success": success})
}

func TestTwoPhase(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, env...)
		const ip = "203.0.113.15"
		for i := 1; i <= 3; i++ {
			b := g.begin(t, ip, "alice")
			assertAllowed(t, b)
			token, _ := b.Body["token"].(string)
			require.NotEmpty(t, token, "answer %s", b.Raw)
			assert.Equal(t, 30, b.num("expires_in"))
			r := g.finish(t, token, false)
			assertAllowed(t, r)
			assert.Equal(t, i, r.num("ip_failures"))

			// A token settles once.
			again := g.finish(t, token, false)
			assert.Equal(t, http.StatusConflict, again.Status, again.Raw)
			assert.Contains(t, again.Body["error"], "already used")
		}
		b := g.begin(t, ip, "alice")
		assertAllowed(t, b)
		assert.Equal(t, true, b.Body["last_chance"])
		r := g.finish(t, b.Body["token"].(string), false)
		assertBlocked(t, r, []string{"ip", "username"})
		assertBlocked(t, g.begin(t, ip, "alice"), []string{"ip", "username"})

		// Success clears.
		b = g.begin(t, "198.51.100.15", "bob")
		assertAllowed(t, b)
		r = g.finish(t, b.Body["token"].(string), false)
		assert.Equal(t, 1, r.num("username_failures"))
		b = g.begin(t, "198.51.100.15", "bob")
		r = g.finish(t, b.Body["token"].(string), true)
		assertAllowed(t, r)
		assert.Equal(t, 0, g.check(t, "198.51.100.15", "bob").num("username_failures"))
	})
}

func TestTwoPhaseTamperedToken(t *testing.T) {
	t.Parallel()
	g := startGate(t)
	b := g.begin(t, "203.0.113.16", "alice")
	token := b.Body["token"].(string)
	payload, sig, ok := strings.Cut(token, ".")
	require.True(t, ok)
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	tests := []struct{ name, token string }{
		{"payload changed", flip(payload, 3) + "." + sig},
		{"signature changed", payload + "." + flip(sig, 5)},
		{"no signature", payload},
		{"empty signature", payload + "."},
		{"garbage", "not-a-token"},
		{"other user", strings.Replace(token, payload, payload[:len(payload)-2]+"AA", 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.finish(t, tc.token, true)
			assert.Equal(t, http.StatusBadRequest, r.Status, r.Raw)
			assert.Contains(t, r.Body["error"], "invalid token")
		})
	}
	// A token of another secret.
	other := startGate(t, "DEFENDER_TOKEN_SECRET=another-secret-0123456789")
	r := other.finish(t, token, false)
	assert.Equal(t, http.StatusBadRequest, r.Status, r.Raw)
	// The genuine token still works.
	assertAllowed(t, g.finish(t, token, false))
}

func TestTwoPhaseExpiredToken(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, append(env, "DEFENDER_PENDING_TIMEOUT=1")...)
		issued := time.Now()
		b := g.begin(t, "203.0.113.17", "alice")
		assertAllowed(t, b)
		require.Equal(t, 1, b.num("expires_in"))
		token := b.Body["token"].(string)
		require.Eventually(t, func() bool { return time.Since(issued) > 1100*time.Millisecond }, 5*time.Second, 50*time.Millisecond)
		r := g.finish(t, token, true)
		assert.Equal(t, http.StatusGone, r.Status, r.Raw)
		assert.Contains(t, r.Body["error"], "expired")
		// The attempt never reported counts as a failure: Begin counted
		// it, and the next Begin counts itself too.
		b = g.begin(t, "203.0.113.17", "alice")
		assertAllowed(t, b)
		assert.Equal(t, 2, b.num("ip_failures"), b.Raw)
	})
}

// Instances sharing Redis and the secret settle each other's tokens.
func TestTwoPhaseAcrossInstances(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	a := startGate(t, "DEFENDER_REDIS_URL="+r.URL, slowRedis)
	b := startGate(t, "DEFENDER_REDIS_URL="+r.URL, slowRedis)
	for i := 1; i <= 3; i++ {
		begun := a.begin(t, "203.0.113.18", "alice")
		res := b.finish(t, begun.Body["token"].(string), false)
		assertAllowed(t, res)
		assert.Equal(t, i, res.num("ip_failures"))
	}
	begun := b.begin(t, "203.0.113.18", "alice")
	assertBlocked(t, a.finish(t, begun.Body["token"].(string), false), []string{"ip", "username"})
	assertBlocked(t, b.check(t, "203.0.113.18", "zed"), []string{"ip"})
}

func TestWhitelistsAndBlacklist(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, append(env,
			"DEFENDER_IP_WHITELIST=10.0.0.0/8,2001:db8:ffff::/48",
			"DEFENDER_USERNAME_WHITELIST=Admin",
			"DEFENDER_IP_BLACKLIST=192.0.2.0/24")...)
		for i := range 6 {
			r := g.attempt(t, "10.1.2.3", fmt.Sprintf("user%d", i), false)
			assertAllowed(t, r)
			assert.Equal(t, 0, r.num("ip_failures"))
		}
		for i := range 6 {
			r := g.attempt(t, fmt.Sprintf("198.51.100.%d", 20+i), "admin", false)
			assertAllowed(t, r)
			assert.Equal(t, 0, r.num("username_failures"))
		}
		for _, r := range []reply{
			g.check(t, "192.0.2.55", "anyone"),
			g.attempt(t, "192.0.2.55", "anyone", true),
			g.begin(t, "192.0.2.55", "anyone"),
		} {
			assertBlocked(t, r, []string{"ip"})
			assert.Equal(t, true, r.Body["permanent"])
			assert.Equal(t, "blacklist", r.Body["reason"])
		}
	})
}

func TestIPv6CountedByPrefix(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, env...)
		for i, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "[2001:db8:1:2:aaaa::3]"} {
			r := g.attempt(t, ip, fmt.Sprintf("user%d", i), false)
			assertAllowed(t, r)
			assert.Equal(t, i+1, r.num("ip_failures"))
		}
		assertBlocked(t, g.attempt(t, "2001:db8:1:2:ffff:ffff:ffff:ffff", "user9", false), []string{"ip"})
		assertBlocked(t, g.check(t, "2001:db8:1:2::77", ""), []string{"ip"})
		assertAllowed(t, g.check(t, "2001:db8:1:3::1", ""))
		// IPv4-mapped IPv6 is the IPv4 address.
		assertAllowed(t, g.attempt(t, "::ffff:203.0.113.20", "x", false))
		assert.Equal(t, 1, g.check(t, "203.0.113.20", "").num("ip_failures"))
	})
}

func TestCheckCountsNothing(t *testing.T) {
	t.Parallel()
	g := startGate(t)
	for range 10 {
		r := g.check(t, "203.0.113.21", "alice")
		assertAllowed(t, r)
		assert.Equal(t, 0, r.num("ip_failures"))
		assert.Equal(t, 0, r.num("username_failures"))
	}
	r := g.attempt(t, "203.0.113.21", "alice", false)
	assert.Equal(t, 1, r.num("ip_failures"))
	assert.Equal(t, 1, g.check(t, "203.0.113.21", "alice").num("ip_failures"))
}

// The service takes the client address from the body: forwarding headers
// are the library middleware's business and are ignored here.
func TestIgnoresForwardedFor(t *testing.T) {
	t.Parallel()
	g := startGate(t, "DEFENDER_BEHIND_REVERSE_PROXY=true")
	for range 4 {
		g.post(t, "/v1/attempts", map[string]any{"ip": "203.0.113.22", "username": "", "success": false},
			"X-Forwarded-For", "198.51.100.99", "X-Real-IP", "198.51.100.99")
	}
	assertBlocked(t, g.check(t, "203.0.113.22", ""), []string{"ip"})
	r := g.post(t, "/v1/check", map[string]any{"ip": "198.51.100.99"}, "X-Forwarded-For", "203.0.113.22")
	assertAllowed(t, r)
	assert.Equal(t, 0, r.num("ip_failures"))
}

// With the store down, fail-open lets attempts through (degraded) and
// fail-closed answers 503; /healthz says 503 either way.
func TestStoreOutage(t *testing.T) {
	for _, mode := range []string{"open", "closed"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := testenv.Redis(t)
			g := startGate(t, "DEFENDER_REDIS_URL="+r.URL, "DEFENDER_FAIL_MODE="+mode, slowRedis)
			assertAllowed(t, g.attempt(t, "203.0.113.23", "alice", false))
			begun := g.begin(t, "203.0.113.23", "alice")
			r.Kill()
			h := g.do(t, http.MethodGet, "/healthz", "", nil)
			assert.Equal(t, http.StatusServiceUnavailable, h.Status)
			assert.NotEmpty(t, h.Body["error"])
			answers := []reply{
				g.attempt(t, "203.0.113.23", "alice", false),
				g.check(t, "203.0.113.23", "alice"),
				g.begin(t, "203.0.113.23", "alice"),
				g.finish(t, begun.Body["token"].(string), false),
			}
			for i, a := range answers {
				if mode == "open" {
					assertAllowed(t, a, "answer %d", i)
					assert.Equal(t, true, a.Body["degraded"], "answer %d: %s", i, a.Raw)
				} else {
					assert.Equal(t, http.StatusServiceUnavailable, a.Status, "answer %d: %s", i, a.Raw)
					assert.Equal(t, true, a.Body["unavailable"], a.Raw)
					assert.Equal(t, false, a.Body["allowed"], a.Raw)
					assert.NotEmpty(t, a.Body["error"], a.Raw)
				}
			}
			r.Start()
			require.Eventually(t, func() bool {
				return g.do(t, http.MethodGet, "/healthz", "", nil).Status == http.StatusOK
			}, 10*time.Second, 50*time.Millisecond)
		})
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	g := startGate(t)
	g.attempt(t, "203.0.113.24", "alice", false)
	m := g.do(t, http.MethodGet, "/metrics", "", nil)
	require.Equal(t, http.StatusOK, m.Status)
	for _, name := range []string{
		`defender_gate_attempts_total{outcome="failure"} 1`,
		`defender_gate_http_requests_total{code="200",route="attempts"} 1`,
		"defender_events_queued_total",
		"go_goroutines",
	} {
		assert.Contains(t, m.Raw, name)
	}
}

// TestAPIKeyRequired: with DEFENDER_API_KEY set, a call without the key is
// refused and counts nothing; with it, the service answers as usual.
func TestAPIKeyRequired(t *testing.T) {
	const key = "api-key-0123456789abcdef"
	p := startGate(t, "DEFENDER_API_KEY="+key)
	failure := map[string]any{"ip": "192.0.2.60", "username": "dave", "success": false}
	r := p.post(t, "/v1/attempts", failure)
	assert.Equal(t, http.StatusUnauthorized, r.Status, r.Raw)
	assert.Contains(t, r.Body["error"], "DEFENDER_API_KEY")
	r = p.post(t, "/v1/attempts", failure, "Authorization", "Bearer "+key)
	require.Equal(t, http.StatusOK, r.Status, r.Raw)
	assert.Equal(t, 1, r.num("username_failures"), "only the call with the key was counted")
}
