package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// TestAdminPasswordGuessesLimited: the admin's own password is guarded
// like a login. An address gets adminFailureLimit wrong passwords (401),
// then 429 with Retry-After, for the right password too; requests without
// credentials are asked for them and not counted; other addresses, and
// clients behind a trusted proxy, are counted apart; and no user name is
// counted, so nobody can lock the administrator out from elsewhere.
func TestAdminPasswordGuessesLimited(t *testing.T) {
	proxy := gate.DefaultConfig()
	proxy.BehindReverseProxy = true
	proxy.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}
	reg := prometheus.NewRegistry()
	guard, err := newAuthGuard(proxy, reg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(guard.close)
	served := 0
	auth := newBasicAuth(testUser, testPassword, guard, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
	}))
	send := func(remote, xff, user, password string, creds bool) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/blocked", nil)
		req.RemoteAddr = remote
		req.Header.Set("Accept", "application/json")
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		if creds {
			req.SetBasicAuth(user, password)
		}
		rec := httptest.NewRecorder()
		auth.ServeHTTP(rec, req)
		return rec
	}
	const attacker = "203.0.113.5:40000"

	for i := 1; i <= adminFailureLimit; i++ {
		rec := send(attacker, "", testUser, "guess-"+strconv.Itoa(i), true)
		require.Equal(t, http.StatusUnauthorized, rec.Code, "wrong password %d of %d", i, adminFailureLimit)
		require.NotEmpty(t, rec.Header().Get("WWW-Authenticate"))
	}
	rec := send(attacker, "", testUser, "guess-over-the-limit", true)
	require.Equal(t, http.StatusTooManyRequests, rec.Code, "the guess past the limit is refused")
	assert.Equal(t, "300", rec.Header().Get("Retry-After"), "first block: %s", adminLockoutCooloffs[0])
	assert.Contains(t, rec.Body.String(), "too many wrong passwords")

	rec = send(attacker, "", testUser, testPassword, true)
	assert.Equal(t, http.StatusTooManyRequests, rec.Code, "the right password too, while blocked")
	assert.Zero(t, served, "nothing was served to the blocked address")
	rec = send(attacker, "", "", "", false)
	assert.Equal(t, http.StatusUnauthorized, rec.Code, "no credentials: asked for them")

	// Another address, even with the same user name, is not affected.
	rec = send("198.51.100.7:1234", "", testUser, testPassword, true)
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, 1, served)

	// Behind the trusted proxy, clients are told apart by X-Forwarded-For;
	// an untrusted peer's header is ignored.
	for i := 0; i < adminFailureLimit+1; i++ {
		send("10.0.0.1:5555", "192.0.2.77", testUser, "x", true)
	}
	assert.Equal(t, http.StatusTooManyRequests, send("10.0.0.1:5555", "192.0.2.77", testUser, testPassword, true).Code)
	assert.Equal(t, http.StatusOK, send("10.0.0.1:5555", "192.0.2.78", testUser, testPassword, true).Code,
		"another client behind the proxy")
	assert.Equal(t, http.StatusOK, send("192.0.2.99:5555", "192.0.2.77", testUser, testPassword, true).Code,
		"a forged header from an untrusted peer is not the blocked client")

	// Requests without credentials never count toward a block.
	for i := 0; i < 3*adminFailureLimit; i++ {
		require.Equal(t, http.StatusUnauthorized, send("198.51.100.8:1", "", "", "", false).Code)
	}
	assert.Equal(t, http.StatusOK, send("198.51.100.8:1", "", testUser, testPassword, true).Code)

	count := func(reason string) float64 {
		var m dto.Metric
		require.NoError(t, guard.outcomes.WithLabelValues(reason).Write(&m))
		return m.GetCounter().GetValue()
	}
	assert.Equal(t, float64(2*adminFailureLimit+2), count("wrong"), "wrong passwords, each counted once")
	assert.Equal(t, 4.0, count("locked"), "refusals of blocked addresses")
}
