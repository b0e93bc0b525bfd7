package main_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// One password against 500 usernames from one address, once each: the
// 11th distinct name is refused (its failure blocks the source and is
// answered 429), and every later one is refused before any password
// check, in combo mode too, where no counter of the address exists.
func TestSprayRefusedByTheEleventhName(t *testing.T) {
	for _, mode := range []struct {
		name string
		env  []string
	}{{"default", nil}, {"combo", []string{"DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME=true"}}} {
		t.Run(mode.name, func(t *testing.T) {
			stores(t, func(t *testing.T, env ...string) {
				// A high IP limit, so that the address's own counter does
				// not hide what spraying detection does.
				g := startGate(t, append(append(env, mode.env...), "DEFENDER_LOGIN_FAILURE_LIMIT_IP=1000")...)
				const ip = "203.0.113.50"
				for i := 1; i <= 10; i++ {
					assertAllowed(t, g.attempt(t, ip, fmt.Sprintf("victim-%d", i), false), "name %d", i)
				}
				r := g.attempt(t, ip, "victim-11", false)
				assertBlocked(t, r, []string{"spray"}, "the 11th name's failure blocks")
				for i := 12; i <= 500; i++ {
					r := g.attempt(t, ip, fmt.Sprintf("victim-%d", i), false)
					require.Equal(t, http.StatusTooManyRequests, r.Status, "name %d: %s", i, r.Raw)
					require.Contains(t, r.blockedBy(), "spray")
				}
				// The sprayer's own valid login is refused too, and resets nothing.
				assertBlocked(t, g.attempt(t, ip, "attacker", true), []string{"spray"})
				assertBlocked(t, g.check(t, ip, "anyone"), []string{"spray"})
				// Another address is not concerned.
				assertAllowed(t, g.attempt(t, "198.51.100.50", "victim-1", false))
			})
		})
	}
}

// The credential stuffer who holds one account: per cycle, 3 wrong
// guesses on new usernames, then a successful login to its own account,
// which clears the address's failure counter as django-defender does.
// The spraying count survives it: the 11th name blocks.
func TestSprayOwnAccountDoesNotReset(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, env...)
		const ip = "203.0.113.51"
		guesses, allowed := 0, 0
		for cycle := 0; cycle < 20 && guesses < 30; cycle++ {
			for range 3 {
				guesses++
				r := g.attempt(t, ip, fmt.Sprintf("stuffed-%d", guesses), false)
				if r.Status == http.StatusOK {
					allowed++
					continue
				}
				require.Equal(t, http.StatusTooManyRequests, r.Status, r.Raw)
				require.Contains(t, r.blockedBy(), "spray", "guess %d", guesses)
			}
			g.attempt(t, ip, "attacker", true)
		}
		assert.Equal(t, 10, allowed, "10 names fail plainly, the 11th blocks, the rest are refused")
		assertBlocked(t, g.attempt(t, ip, "attacker", true), []string{"spray"}, "the own account resets nothing")
	})
}

// Two phases: parallel guesses on new names reach the password check at
// most 11 times (10, and the last chance whose failure blocks).
func TestSprayTwoPhaseBound(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, append(env, "DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME=true")...)
		const ip = "203.0.113.52"
		var tokens []string
		for i := range 200 {
			r := g.begin(t, ip, fmt.Sprintf("name-%d", i))
			if r.Status == http.StatusOK {
				tokens = append(tokens, r.Body["token"].(string))
				continue
			}
			require.Equal(t, http.StatusTooManyRequests, r.Status, r.Raw)
			require.Contains(t, r.blockedBy(), "spray")
		}
		require.Len(t, tokens, 11)
		var last reply
		for _, tok := range tokens {
			last = g.finish(t, tok, false)
		}
		assertBlocked(t, last, []string{"spray"}, "the last chance's failure blocks")
	})
}

// An IPv6 sprayer that moves to a new /64 of its /48 for each guess is
// counted by the /48 too (limit 20): the 21st name blocks the /48.
func TestSprayRotatingIPv6Prefixes(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, env...)
		for i := 1; i <= 20; i++ {
			assertAllowed(t, g.attempt(t, fmt.Sprintf("2001:db8:77:%x::1", i), fmt.Sprintf("v6-%d", i), false), "name %d", i)
		}
		r := g.attempt(t, "2001:db8:77:ff::1", "v6-21", false)
		assertBlocked(t, r, []string{"spray_net"})
		assertBlocked(t, g.check(t, "2001:db8:77:abcd::9", "someone"), []string{"spray_net"}, "the whole /48")
		assertAllowed(t, g.check(t, "2001:db8:78::1", "someone"), "the next /48 is not concerned")
	})
}

// A household or office behind one address: each of 15 people mistypes
// once, then logs in. Logins do not count toward spraying, and neither do
// the failures of names that then logged in: nobody is refused.
func TestSprayHouseholdNeverTrips(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, append(env, "DEFENDER_LOGIN_FAILURE_LIMIT_IP=1000")...)
		const ip = "203.0.113.53"
		for round := range 3 {
			for i := range 15 {
				user := fmt.Sprintf("member-%d", i)
				assertAllowed(t, g.attempt(t, ip, user, false), "round %d, %s mistypes", round, user)
				assertAllowed(t, g.attempt(t, ip, user, true), "round %d, %s logs in", round, user)
			}
		}
	})
}

// DEFENDER_SPRAY_LIMIT=0 turns spraying detection off.
func TestSprayOff(t *testing.T) {
	g := startGate(t, "DEFENDER_SPRAY_LIMIT=0", "DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME=true")
	for i := range 50 {
		assertAllowed(t, g.attempt(t, "203.0.113.54", fmt.Sprintf("n-%d", i), false))
	}
}
