package gate_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// Smart lockout through the middleware: the user's first login sets the
// device cookie; 1,000 unfamiliar addresses then send 10,000 failures for
// the user, and its correct password still succeeds every time from its
// address and, with the cookie, from anywhere; the attackers are refused
// after the limit, and a new address without the cookie too.
func TestMiddlewareSmartLockout(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			cfg := gate.DefaultConfig()
			cfg.SmartLockout = true
			g, ev := newGate(t, b, cfg)
			site := &loginSite{}
			h := g.Middleware(site)
			home := "198.51.100.210"
			user := "ursula-" + b.name
			w := post(t, h, home, user, "secret")
			require.Equal(t, http.StatusFound, w.Code)
			var cookie string
			for _, c := range w.Result().Cookies() {
				if c.Name == gate.DeviceCookie {
					cookie = c.Value
					assert.True(t, c.HttpOnly)
				}
			}
			require.NotEmpty(t, cookie, "the first login sets the device cookie")
			require.NoError(t, g.Flush(t.Context()))

			in := 0
			for i := range 10_000 {
				w := post(t, h, fmt.Sprintf("10.%d.%d.9", 30+i%1000/250, i%1000%250), user, "wrong")
				if w.Code == http.StatusOK {
					in++
				}
				if i%1000 == 0 {
					require.Equal(t, http.StatusFound, post(t, h, home, user, "secret").Code, "from home, after %d failures", i)
					require.Equal(t, http.StatusFound, post(t, h, fmt.Sprintf("192.0.2.%d", i/1000), user, "secret",
						"Cookie", gate.DeviceCookie+"="+cookie).Code, "with the device, after %d failures", i)
					require.NoError(t, g.Flush(t.Context()))
				}
			}
			assert.LessOrEqual(t, in, 4, "the attackers reach the password check the limit's times")
			assert.Equal(t, http.StatusTooManyRequests, post(t, h, "203.0.113.210", user, "secret").Code,
				"a new address without the device is unfamiliar")
			require.NoError(t, g.Flush(t.Context()))
			var familiar int
			for _, a := range ev.Attempts() {
				if a.Familiar {
					familiar++
				}
			}
			assert.Equal(t, 20, familiar, "the user's logins are published as familiar")
		})
	}
}
