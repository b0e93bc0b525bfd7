package gate_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// FuzzMiddleware sends the middleware arbitrary login requests: body,
// content type, forwarding header, peer and user agent. It never panics,
// answers as the login page or the lockout, and what it reports is an
// address the request carried and a bounded, valid username.
func FuzzMiddleware(f *testing.F) {
	f.Add("username=alice&password=x", "application/x-www-form-urlencoded", "203.0.113.9, 10.0.0.2", "10.0.0.3:1", "ua")
	f.Add("username=%FF%00&&=;", "application/x-www-form-urlencoded; charset=latin1", "garbage", "[2001:db8::1]:443", "\x00")
	f.Add("--b\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nbob\r\n--b--", "multipart/form-data; boundary=b", "", "@", "")
	cfg := gate.DefaultConfig()
	cfg.BehindReverseProxy = true
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	mem := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy(), MaxEntries: 1000, SweepInterval: -1})
	defer mem.Close()
	ev := &events{}
	g, err := gate.New(cfg, mem, gate.WithEmitter(ev), gate.WithLogger(quiet))
	require.NoError(f, err)
	defer g.Close(ctx)
	h := g.Middleware(&loginSite{})
	f.Fuzz(func(t *testing.T, body, contentType, xff, remote, ua string) {
		r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("X-Forwarded-For", xff)
		r.Header.Set("User-Agent", ua)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		require.Contains(t, []int{http.StatusOK, http.StatusFound, http.StatusTooManyRequests}, w.Code)
		require.NoError(t, g.Flush(ctx))
		ev.mu.Lock()
		atts := ev.attempts
		ev.attempts = nil
		ev.mu.Unlock()
		for _, a := range atts {
			require.True(t, utf8.ValidString(a.Username))
			require.LessOrEqual(t, utf8.RuneCountInString(a.Username), cfg.MaxUsernameLength)
			if a.IP != "" {
				ip, err := gate.ParseIP(a.IP)
				require.NoError(t, err)
				peer, _ := gate.ParseIP(remote)
				require.True(t, ip == peer || xffHolds(xff, ip),
					"%s is neither the peer %q nor in %q", ip, remote, xff)
			}
		}
	})
}

// xffHolds reports whether some entry of a forwarding header is a.
func xffHolds(xff string, a netip.Addr) bool {
	for _, e := range strings.Split(xff, ",") {
		if b, err := gate.ParseIP(e); err == nil && b == a {
			return true
		}
	}
	return false
}
