package main

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// Hostile input to the admin, beside security_test.go (basic auth, CSRF
// and escaping basics).

// TestHostileCredentials: every malformed or near-miss Authorization is
// refused, on pages and on state-changing API calls, and changes nothing:
// 401, or 429 once the near misses from this address passed the admin's
// limit of wrong passwords (authguard_test.go).
func TestHostileCredentials(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	e.block(gate.KindIP, "192.0.2.50", time.Hour)
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	// testPassword is "s3cret pässword" (precomposed ä).
	bad := []string{
		"",
		"Basic",
		"Basic ",
		"Basic !!!not-base64!!!",
		"Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+testPassword)), // no colon
		basic(":"),
		basic(testUser + ":"),
		basic(":" + testPassword),
		basic(testUser + ":" + testPassword + " "),
		basic(testUser + ":" + strings.TrimSuffix(testPassword, "d")),
		basic(strings.ToUpper(testUser) + ":" + testPassword),
		basic(testUser + ":" + strings.ToUpper(testPassword)),
		basic(testUser + ":s3cret pa\u0308ssword"), // decomposed ä
		basic(testUser + ":" + testPassword + "\x00"),
		basic(testUser + "\x00:" + testPassword),
		basic(testUser + ":" + strings.Repeat("x", 40<<10)),
		"Bearer " + testPassword,
		"Digest username=\"admin\"",
		"basic" + strings.Repeat(" ", 1000) + base64.StdEncoding.EncodeToString([]byte("x:y")),
	}
	for _, auth := range bad {
		hdr := http.Header{"Authorization": {auth}}
		if auth == "" {
			hdr.Set("Authorization", "none")
		}
		for _, rq := range []struct{ method, path string }{
			{"GET", "/blocked"}, {"GET", "/api/v1/blocked"}, {"DELETE", "/api/v1/blocked/ip/192.0.2.50"},
		} {
			resp, body := e.do(rq.method, rq.path, nil, hdr)
			assert.Contains(t, []int{http.StatusUnauthorized, http.StatusTooManyRequests}, resp.StatusCode,
				"%.60q %s %s", auth, rq.method, rq.path)
			assert.NotContains(t, body, "192.0.2.50")
			assert.NotContains(t, body, csrfToken(testUser, testPassword), "no token to the unauthenticated")
			assert.Empty(t, resp.Header.Get("Set-Cookie"))
		}
	}
	// Credentials in the query string or a cookie are not credentials.
	resp, _ := e.do("GET", "/blocked?user="+testUser+"&password="+url.QueryEscape(testPassword), nil,
		http.Header{"Authorization": {"none"}, "Cookie": {"user=" + testUser + "; password=x"}})
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Equal(t, []string{"192.0.2.50"}, e.blocked(gate.KindIP), "nothing was unblocked")
}

// TestHostileCSRF adds the less common forgeries to TestCSRF: sibling
// sites, sandboxed frames, a token for other credentials, method
// override, a JSON type hidden in a parameter, state change by GET.
func TestHostileCSRF(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	e.block(gate.KindIP, "192.0.2.60", time.Hour)
	form := url.Values{"kind": {"ip"}, "value": {"192.0.2.60"}}.Encode()
	token := csrfToken(testUser, testPassword)
	formHdr := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name, method, path, body string
		hdr                      http.Header
	}{
		{"same-site sibling", "POST", "/blocked/unblock", form + "&csrf=" + token, formHdr("Sec-Fetch-Site", "same-site")},
		{"sandboxed frame (Origin null)", "POST", "/blocked/unblock", form, formHdr("Origin", "null")},
		{"token of other credentials", "POST", "/blocked/unblock", form + "&csrf=" + csrfToken(testUser, "other"), formHdr()},
		{"token of another user", "POST", "/blocked/unblock", form + "&csrf=" + csrfToken("root", testPassword), formHdr()},
		{"token in the query string", "POST", "/blocked/unblock?csrf=" + token, form, formHdr()},
		{"empty token", "POST", "/blocked/unblock", form + "&csrf=", formHdr()},
		{"two tokens, first wrong", "POST", "/blocked/unblock", form + "&csrf=x&csrf=" + token, formHdr()},
		{"method override header", "POST", "/api/v1/blocked", form, formHdr("X-HTTP-Method-Override", "DELETE")},
		{"JSON type in a parameter", "POST", "/api/v1/blocked", `{"kind":"ip","value":"192.0.2.61","duration":"1h"}`,
			http.Header{"Content-Type": {"text/plain; x=application/json"}}},
		{"cross-site with JSON type", "DELETE", "/api/v1/blocked/ip/192.0.2.60", "",
			http.Header{"Sec-Fetch-Site": {"cross-site"}, "Content-Type": {"application/json"}}},
		{"GET of a form action", "GET", "/blocked/unblock?" + form + "&csrf=" + token, "", nil},
		{"PUT of a form action", "PUT", "/blocked/unblock", form + "&csrf=" + token, formHdr("Sec-Fetch-Site", "cross-site")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do(tc.method, tc.path, strings.NewReader(tc.body), tc.hdr)
			assert.Contains(t, []int{http.StatusForbidden, http.StatusMethodNotAllowed}, resp.StatusCode, body)
		})
	}
	assert.Equal(t, []string{"192.0.2.60"}, e.blocked(gate.KindIP), "nothing changed")
}

// TestHostileReflection: what a link can put in a page (paths, query
// parameters, flash notices, error messages) comes back escaped, on
// every page and in the API's JSON.
func TestHostileReflection(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	payloads := []string{
		`<script>alert(1)</script>`,
		`"><svg onload=alert(2)>`,
		`'><img src=x onerror=alert(3)>`,
		`javascript:alert(4)`,
		`</title><script>alert(5)</script>`,
	}
	for _, p := range payloads {
		q := url.QueryEscape(p)
		paths := []string{
			"/username/" + url.PathEscape(p),
			"/ip/" + url.PathEscape(p),
			"/pair/" + url.PathEscape(p),
			"/attempts?username=" + q + "&ip=" + q + "&result=" + q + "&since=" + q,
			"/blocked?done=blocked&kind=username&value=" + q,
			"/blocked?done=unblocked&kind=" + q + "&value=" + q,
			"/?window=" + q,
		}
		for _, path := range paths {
			resp, body := e.do("GET", path, nil, nil)
			assert.Less(t, resp.StatusCode, 500, path)
			assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html"), path)
			assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'", path)
			// Text of the payload may show (escaped); no tag of it may,
			// whether in text or by breaking out of an attribute.
			for _, raw := range []string{"<script>alert", "<svg onload", "<img src=x", "href=\"javascript:"} {
				assert.NotContains(t, body, raw, path)
			}
		}
		for _, path := range []string{"/api/v1/blocked?limit=" + q, "/api/v1/attempts?ip=" + q + "&since=" + q,
			"/api/v1/stats/attempts?window=" + q} {
			resp, body := e.do("GET", path, nil, nil)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode, path)
			assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"), path)
			assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
			assert.NotContains(t, body, "<", "JSON escapes HTML: %s", path)
		}
		resp, _ := e.do("GET", "/search?q="+q, nil, nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		assert.True(t, strings.HasPrefix(resp.Header.Get("Location"), "/username/"), "search stays local: %s", resp.Header.Get("Location"))
	}
}

// TestHostileNames: glob-like and separator-like names through the API:
// listed literally, and unblocking one (however its path is written)
// lifts that block only.
func TestHostileNames(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	names := []string{"*", "?", "[a-z]", "a*", "a:b", "username:alice", "../ip/192.0.2.70", "%2f", "a|b"}
	victims := []string{"alice", "a", "b"}
	for _, n := range append(append([]string{}, names...), victims...) {
		e.block(gate.KindUsername, n, time.Hour)
	}
	e.block(gate.KindIP, "192.0.2.70", time.Hour)

	_, body := e.do("GET", "/api/v1/blocked", nil, nil)
	assert.ElementsMatch(t, append(append([]string{}, names...), victims...), values(decode[BlockedList](t, body).Usernames))

	// A path that leaves its segment is cleaned by the router into
	// another route, never into an unblock of someone else.
	resp, _ := e.do("DELETE", "/api/v1/blocked/username/../ip/192.0.2.70", nil, nil)
	assert.NotEqual(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, []string{"192.0.2.70"}, e.blocked(gate.KindIP))

	left := append([]string{}, names...)
	for _, n := range names {
		resp, body := e.do("DELETE", "/api/v1/blocked/username/"+url.PathEscape(n), nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", n, body)
		res := decode[UnblockResult](t, body)
		assert.Equal(t, n, res.Value)
		assert.True(t, res.Unblocked, n)
		left = left[1:]
		assert.ElementsMatch(t, append(append([]string{}, left...), victims...), e.blocked(gate.KindUsername), "after unblocking %q", n)
	}
	assert.Equal(t, []string{"192.0.2.70"}, e.blocked(gate.KindIP))
}
