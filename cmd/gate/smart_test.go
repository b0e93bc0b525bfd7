package main_test

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Smart lockout: 1,000 unfamiliar addresses send 10,000 failures for one
// user. The user's correct password succeeds every time from the address
// it logged in from before, and from its device (the token a success
// answered) at any address; the attackers are refused after the limit.
func TestSmartLockoutKeepsTheUsersAccess(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, append(env, "DEFENDER_SMART_LOCKOUT=true", "DEFENDER_DEVICE_KEY=0123456789abcdef0123")...)
		const home = "198.51.100.200"
		first := g.attempt(t, home, "ursula", true)
		assertAllowed(t, first)
		device, _ := first.Body["device"].(string)
		require.NotEmpty(t, device, "a success answers the device token")

		var attackersIn, userRefused atomic.Int32
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < 10_000; i += 8 {
					r := g.attempt(t, fmt.Sprintf("10.%d.%d.1", 20+i%1000/250, i%1000%250), "ursula", false)
					if r.Status == http.StatusOK {
						attackersIn.Add(1)
					}
					if i%500 == 0 { // the real user, now and then, from home and elsewhere
						if g.attempt(t, home, "ursula", true).Status != http.StatusOK {
							userRefused.Add(1)
						}
						r := g.post(t, "/v1/attempts", map[string]any{"ip": fmt.Sprintf("192.0.2.%d", i%200), "username": "ursula",
							"success": true, "device": device})
						if r.Status != http.StatusOK || r.Body["device"] != device {
							userRefused.Add(1)
						}
					}
				}
			}()
		}
		wg.Wait()
		assert.Zero(t, userRefused.Load(), "the user's own sources are never refused")
		assert.LessOrEqual(t, attackersIn.Load(), int32(3), "the attackers get the limit, then nothing")
		r := g.attempt(t, "203.0.113.201", "ursula", true)
		assertBlocked(t, r, []string{"username"}, "a new address without the device is unfamiliar: refused")
		// Two phases from the device at a new address.
		b := g.post(t, "/v1/attempts", map[string]any{"ip": "203.0.113.202", "username": "ursula", "device": device})
		assertAllowed(t, b)
		assertAllowed(t, g.finish(t, b.Body["token"].(string), true))
	})
}

// A device token altered or signed with another key is no device.
func TestSmartLockoutForgedDevice(t *testing.T) {
	g := startGate(t, "DEFENDER_SMART_LOCKOUT=true", "DEFENDER_DEVICE_KEY=0123456789abcdef0123")
	other := startGate(t, "DEFENDER_SMART_LOCKOUT=true", "DEFENDER_DEVICE_KEY=another key, 20 bytes")
	foreign, _ := other.attempt(t, "198.51.100.1", "victor", true).Body["device"].(string)
	require.NotEmpty(t, foreign)
	for range 4 {
		g.attempt(t, "203.0.113.77", "victor", false)
	}
	for _, dev := range []string{foreign, foreign[:len(foreign)-2] + "AA", "x.y", ""} {
		r := g.post(t, "/v1/attempts", map[string]any{"ip": "198.51.100.1", "username": "victor", "success": true, "device": dev})
		assertBlocked(t, r, []string{"username"}, "device %q", dev)
	}
}
