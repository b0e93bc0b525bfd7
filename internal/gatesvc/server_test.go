package gatesvc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/gatesvc"
	"github.com/defender-go/defender/pkg/gate"
)

// A panic in a handler is answered 500 with a JSON error, and the server
// goes on.
func TestPanicRecovered(t *testing.T) {
	srv := newServer(t, gatesvc.Options{Health: func(context.Context) error { panic("boom") }})

	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	var body map[string]string
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, "internal error", body["error"])

	rec = httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/check", nil)
	req.Body = http.NoBody
	srv.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusBadRequest, rec.Code)
}

// A token is accepted back whatever the attempt it carries: the path and
// user agent come from the login request (a link can fill a victim's path
// with characters JSON escapes six-fold), and a token the service issued
// but refused to open left a correct password unreported, its charge
// expiring into a failure.
func TestOutcomeOfLargestToken(t *testing.T) {
	post := service(t)
	code, res := post("/v1/attempts", map[string]any{"ip": "203.0.113.9", "username": "victim", "success": false})
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 1, res.UsernameFailures)

	worst := map[string]any{
		"ip":         "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
		"username":   strings.Repeat("<", gatesvc.MaxUsernameBytes),
		"path":       "/login?" + strings.Repeat("&", gatesvc.MaxInfoBytes),
		"user_agent": strings.Repeat("\x01", gatesvc.MaxInfoBytes),
	}
	for name, body := range map[string]map[string]any{
		"victim's login through a crafted link": {"ip": "203.0.113.9", "username": "victim", "path": worst["path"], "user_agent": "Mozilla/5.0"},
		"every field at its bound":              worst,
	} {
		t.Run(name, func(t *testing.T) {
			code, res := post("/v1/attempts", body)
			require.Equal(t, http.StatusOK, code)
			require.NotEmpty(t, res.Token)
			if name != "every field at its bound" {
				// '&' is not escaped: the link's 1 KiB makes a token of
				// 1,575 bytes, far below a proxy's 8 KiB request line.
				assert.Less(t, len(res.Token), 2048)
			}
			code, res = post("/v1/attempts/"+res.Token, map[string]any{"success": true})
			assert.Equal(t, http.StatusOK, code, "the token issued is accepted back")
			assert.True(t, res.Allowed)
			assert.Zero(t, res.UsernameFailures, "the success cleared the failures")
		})
	}
}

// A username padded at either end with what its normalisation drops
// (spaces, invisible characters) is its user's: an application that trims
// the name logs the attacker in as that user, and a 400 for the padding
// ("longer than 1024 bytes") left the failure uncounted.
func TestPaddedUsernameCounted(t *testing.T) {
	post := service(t)
	pads := []string{
		strings.Repeat(" ", 1100) + "alice",
		"alice" + strings.Repeat(" ", 1100),
		strings.Repeat("\u200b", 400) + "alice" + strings.Repeat("\t", 1100),
		strings.Repeat("\u3000", 400) + "ALICE",
	}
	for i, u := range pads {
		code, res := post("/v1/attempts", map[string]any{"ip": fmt.Sprintf("203.0.113.%d", 10+i), "username": u, "success": false})
		if i < 3 {
			require.Equal(t, http.StatusOK, code, "attempt %d", i+1)
		} else {
			require.Equal(t, http.StatusTooManyRequests, code, "the fourth failure blocks")
			assert.Equal(t, []gate.Kind{gate.KindUsername}, res.BlockedBy)
		}
		assert.Equal(t, i+1, res.UsernameFailures, "attempt %d", i+1)
	}
	code, _ := post("/v1/check", map[string]any{"ip": "203.0.113.99", "username": "alice"})
	assert.Equal(t, http.StatusTooManyRequests, code)

	// What stays once the padding is gone is still bounded.
	code, _ = post("/v1/attempts", map[string]any{"ip": "203.0.113.20", "username": " " + strings.Repeat("u", gatesvc.MaxUsernameBytes+1) + " ", "success": false})
	assert.Equal(t, http.StatusBadRequest, code)
}

// memoryGate is a gate with the default configuration on a memory store,
// closed when the test ends.
func memoryGate(t *testing.T) *gate.Gate {
	t.Helper()
	g, err := gate.New(gate.DefaultConfig(), gate.NewMemoryStore(gate.MemoryOptions{SweepInterval: -1}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	return g
}

// newServer is a gate service with o's settings over a memoryGate, fresh
// tokens and a discarding logger.
func newServer(t *testing.T, o gatesvc.Options) *gatesvc.Server {
	t.Helper()
	o.Gate = memoryGate(t)
	o.Tokens = gatesvc.NewTokens(gatesvc.RandomKey(), nil)
	o.Logger = slog.New(slog.DiscardHandler)
	srv, err := gatesvc.New(o)
	require.NoError(t, err)
	return srv
}

// service returns a poster of JSON bodies to a gate service on a memory
// store.
func service(t *testing.T) func(path string, body any) (int, gatesvc.Response) {
	srv := newServer(t, gatesvc.Options{})
	return func(path string, body any) (int, gatesvc.Response) {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		srv.ServeHTTP(rec, req)
		var res gatesvc.Response
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &res), rec.Body.String())
		return rec.Code, res
	}
}

// A browser cannot report attempts or outcomes: a page that reaches the
// service (from the internal network it listens on, or by DNS rebinding)
// would otherwise post a success that lifts its own block, as text/plain
// needs no CORS preflight. Nothing it sends is counted; the application's
// server, which sends no Origin or Sec-Fetch-Site, is served, and the
// read-only check stays open to the browser headers nginx passes on.
func TestBrowsersCannotReport(t *testing.T) {
	srv := newServer(t, gatesvc.Options{})
	send := func(path, body string, hdr ...string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	const attacker = `{"ip":"198.51.100.7","username":"mallory"}`
	const fail = `{"ip":"198.51.100.7","username":"mallory","success":false}`
	const succeed = `{"ip":"198.51.100.7","username":"mallory","success":true}`
	for i := 0; i < 4; i++ {
		code, _ := send("/v1/attempts", fail)
		require.NotEqual(t, http.StatusForbidden, code, "the application's server is served")
	}
	code, _ := send("/v1/check", attacker)
	require.Equal(t, http.StatusTooManyRequests, code, "blocked")

	code, body := send("/v1/attempts", `{"ip":"198.51.100.8","username":"other"}`)
	require.Equal(t, http.StatusOK, code, body)
	var issued gatesvc.Response
	require.NoError(t, json.Unmarshal([]byte(body), &issued))

	browsers := map[string][]string{
		"cross-site fetch":          {"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"},
		"DNS rebinding":             {"Origin", "http://gate.evil.example:8080", "Sec-Fetch-Site", "same-origin"},
		"plain-http origin":         {"Origin", "http://intranet.example"},
		"opaque origin":             {"Origin", "null"},
		"fetch metadata, no origin": {"Sec-Fetch-Site", "same-site"},
	}
	for name, hdr := range browsers {
		t.Run(name, func(t *testing.T) {
			code, body := send("/v1/attempts", succeed, hdr...)
			assert.Equal(t, http.StatusForbidden, code, body)
			assert.Contains(t, body, "not by a browser")
			code, body = send("/v1/attempts", `{"ip":"198.51.100.9","username":"victim","success":false}`, hdr...)
			assert.Equal(t, http.StatusForbidden, code, body)
			code, body = send("/v1/attempts/"+issued.Token, `{"success":true}`, hdr...)
			assert.Equal(t, http.StatusForbidden, code, body)
			code, _ = send("/v1/check", attacker, hdr...)
			assert.Equal(t, http.StatusTooManyRequests, code, "the check answers, and the block held")
		})
	}
	code, body = send("/v1/check", `{"ip":"198.51.100.9","username":"victim"}`)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"username_failures":0`, "nothing a browser sent was counted")
	code, body = send("/v1/attempts/"+issued.Token, `{"success":true}`)
	assert.Equal(t, http.StatusOK, code, "the token a browser tried is still the server's: %s", body)
}

// With an API key every /v1 route wants it as a bearer token: without it,
// or with another, the answer is 401 and nothing is counted; /healthz and
// /metrics stay open for probes and scrapers. A short key is refused.
func TestAPIKey(t *testing.T) {
	const key = "0123456789abcdef-key"
	_, err := gatesvc.New(gatesvc.Options{Gate: memoryGate(t), Tokens: gatesvc.NewTokens(gatesvc.RandomKey(), nil), APIKey: "short"})
	require.ErrorContains(t, err, "at least 16")
	srv := newServer(t, gatesvc.Options{APIKey: key, Metrics: http.NotFoundHandler()})
	send := func(method, path, body, auth string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec
	}
	const fail = `{"ip":"198.51.100.20","username":"carol","success":false}`
	for _, auth := range []string{"", "Bearer", "Bearer " + key + "x", "Bearer " + key[:len(key)-1], "Basic " + key, key} {
		for _, path := range []string{"/v1/check", "/v1/attempts", "/v1/attempts/whatever"} {
			rec := send(http.MethodPost, path, fail, auth)
			assert.Equal(t, http.StatusUnauthorized, rec.Code, "%q %s", auth, path)
			assert.Equal(t, `Bearer realm="defender gate"`, rec.Header().Get("WWW-Authenticate"))
			assert.Contains(t, rec.Body.String(), "DEFENDER_API_KEY")
		}
	}
	rec := send(http.MethodPost, "/v1/check", `{"ip":"198.51.100.20","username":"carol"}`, "bearer "+key)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Body.String(), `"username_failures":0`, "nothing refused was counted")
	rec = send(http.MethodPost, "/v1/attempts", fail, "Bearer "+key)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Body.String(), `"username_failures":1`)

	assert.NotEqual(t, http.StatusUnauthorized, send(http.MethodGet, "/healthz", "", "").Code)
	assert.NotEqual(t, http.StatusUnauthorized, send(http.MethodGet, "/metrics", "", "").Code)
}
