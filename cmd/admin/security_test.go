package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

func TestBasicAuth(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	// One wrong credential per path, a wrong password or a wrong user in
	// turn: all come from one address, which may make adminFailureLimit
	// wrong tries (authguard_test.go) before it is refused for a while.
	for i, path := range []string{"/", "/blocked", "/attempts", "/api/v1/blocked", "/api/v1/attempts", "/metrics", "/static/app.css", "/ip/192.0.2.1"} {
		resp, _ := e.do("GET", path, nil, http.Header{"Authorization": {"none"}})
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)
		assert.Equal(t, `Basic realm="defender admin", charset="UTF-8"`, resp.Header.Get("WWW-Authenticate"), path)

		req, err := http.NewRequest("GET", e.http.URL+path, nil)
		require.NoError(t, err)
		if i%2 == 0 {
			req.SetBasicAuth(testUser, "wrong")
		} else {
			req.SetBasicAuth("root", testPassword)
		}
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)

		resp, _ = e.do("GET", path, nil, nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
	resp, body := e.do("DELETE", "/api/v1/blocked/ip/192.0.2.1", nil, http.Header{"Authorization": {"none"}})
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.JSONEq(t, `{"error":"authentication required"}`, body)

	resp, body = e.do("GET", "/healthz", nil, http.Header{"Authorization": {"none"}})
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"redis":"ok","clickhouse":"ok","nats":"off"}`, body)
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	for _, path := range []string{"/", "/blocked", "/api/v1/blocked", "/static/dashboard.js"} {
		resp, _ := e.do("GET", path, nil, nil)
		assert.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"), path)
		assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
		csp := resp.Header.Get("Content-Security-Policy")
		assert.Contains(t, csp, "script-src 'self'", path)
		assert.NotContains(t, csp, "unsafe-inline", path)
		assert.Contains(t, csp, "frame-ancestors 'none'", path)
	}
	// No inline script anywhere: every <script> has a src.
	for _, path := range []string{"/", "/blocked", "/attempts", "/ip/192.0.2.1", "/username/alice"} {
		_, body := e.do("GET", path, nil, nil)
		for _, tag := range strings.Split(body, "<script")[1:] {
			assert.True(t, strings.HasPrefix(tag, ` src="/static/`), "inline script on %s: %.60s", path, tag)
		}
		assert.NotContains(t, body, " on", "no inline event handlers")
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	e.block(gate.KindIP, "192.0.2.1", time.Hour)
	crossSite := http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}
	oldBrowser := http.Header{"Origin": {"https://evil.example"}}
	with := func(h http.Header, kv ...string) http.Header {
		out := h.Clone()
		if out == nil {
			out = http.Header{}
		}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	form := func(v url.Values) *stringsReader { return &stringsReader{v.Encode()} }
	formHdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	token := csrfToken(testUser, testPassword)

	tests := []struct {
		name, method, path string
		body               string
		hdr                http.Header
		want               int
	}{
		{"cross-site DELETE", "DELETE", "/api/v1/blocked/ip/192.0.2.1", "", crossSite, 403},
		{"cross-site DELETE with token", "DELETE", "/api/v1/blocked/ip/192.0.2.1", "", with(crossSite, csrfHeader, token), 403},
		{"cross-origin DELETE, old browser", "DELETE", "/api/v1/blocked/ip/192.0.2.1", "", oldBrowser, 403},
		{"cross-site JSON POST", "POST", "/api/v1/blocked", `{"kind":"ip","value":"192.0.2.2"}`, with(crossSite, "Content-Type", "application/json"), 403},
		{"cross-site form POST to the API", "POST", "/api/v1/blocked", `kind=ip&value=192.0.2.2`, with(crossSite, "Content-Type", "application/x-www-form-urlencoded"), 403},
		{"simple POST to the API without token", "POST", "/api/v1/blocked", `{"kind":"ip","value":"192.0.2.2"}`, http.Header{"Content-Type": {"text/plain"}}, 403},
		{"cross-site form unblock", "POST", "/blocked/unblock", form(url.Values{"kind": {"ip"}, "value": {"192.0.2.1"}, "csrf": {token}}).s(), with(crossSite, "Content-Type", "application/x-www-form-urlencoded"), 403},
		{"form unblock without token", "POST", "/blocked/unblock", form(url.Values{"kind": {"ip"}, "value": {"192.0.2.1"}}).s(), formHdr, 403},
		{"form unblock with a wrong token", "POST", "/blocked/unblock", form(url.Values{"kind": {"ip"}, "value": {"192.0.2.1"}, "csrf": {"x" + token}}).s(), formHdr, 403},
		{"form block without token", "POST", "/blocked/block", form(url.Values{"kind": {"ip"}, "value": {"192.0.2.3"}, "duration": {"1h"}}).s(), formHdr, 403},
		// What the admin's own pages and non-browser clients send:
		{"same-origin JSON POST", "POST", "/api/v1/blocked", `{"kind":"ip","value":"192.0.2.4","duration":"1h"}`, http.Header{"Content-Type": {"application/json"}, "Sec-Fetch-Site": {"same-origin"}}, 201},
		{"POST with token header", "POST", "/api/v1/blocked", `{"kind":"ip","value":"192.0.2.5","duration":"1h"}`, http.Header{csrfHeader: {token}, "Content-Type": {"text/plain"}}, 201},
		{"form block with token", "POST", "/blocked/block", form(url.Values{"kind": {"ip"}, "value": {"192.0.2.6"}, "duration": {"1h"}, "csrf": {token}}).s(), with(formHdr, "Sec-Fetch-Site", "same-origin"), 303},
		{"DELETE from curl", "DELETE", "/api/v1/blocked/ip/192.0.2.1", "", nil, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do(tc.method, tc.path, strings.NewReader(tc.body), tc.hdr)
			assert.Equal(t, tc.want, resp.StatusCode, body)
		})
	}
	ips := e.blocked(gate.KindIP)
	assert.NotContains(t, ips, "192.0.2.1", "unblocked by the last request only")
	assert.NotContains(t, ips, "192.0.2.2")
	assert.NotContains(t, ips, "192.0.2.3")
	assert.Subset(t, ips, []string{"192.0.2.4", "192.0.2.5", "192.0.2.6"})
}

// s reads a strings.Reader back (for table fields).
func (r *stringsReader) s() string { return r.str }

type stringsReader struct{ str string }

func TestHTMLEscaping(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	evil := `<script>alert(1)</script>`
	e.block(gate.KindUsername, evil, time.Hour)
	e.block(gate.KindUsername, `"><img src=x onerror=alert(2)>`, time.Hour)
	e.insertAttempts([]attempt{{ts: time.Now().UTC(), ip: "192.0.2.1", user: evil, result: "failure", path: "/login?<b>", userAgent: `"><script>alert(3)</script>`}})

	for _, path := range []string{"/blocked", "/attempts", "/username/" + url.PathEscape(evil), "/ip/192.0.2.1", "/attempts?username=" + url.QueryEscape(evil)} {
		resp, body := e.do("GET", path, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.NotContains(t, body, "<script>alert", path)
		assert.NotContains(t, body, "<img src=x", path)
		assert.Contains(t, body, "&lt;script&gt;alert(1)&lt;/script&gt;", path)
	}
	_, body := e.do("GET", "/blocked", nil, nil)
	assert.Contains(t, body, `href="/username/%3Cscript%3Ealert%281%29%3C%2Fscript%3E"`)
}

func TestFormsRedirect(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	e.block(gate.KindUsername, "a/b c", time.Hour)
	token := csrfToken(testUser, testPassword)
	hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	v := url.Values{"kind": {"username"}, "value": {"a/b c"}, "csrf": {token}, "next": {"/username/a%2Fb%20c"}}
	resp, _ := e.do("POST", "/blocked/unblock", strings.NewReader(v.Encode()), hdr)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/username/a%2Fb%20c?done=unblocked&kind=username&value=a%2Fb+c", resp.Header.Get("Location"))
	assert.Empty(t, e.blocked(gate.KindUsername))

	// Only local paths: no open redirect.
	for _, next := range []string{"https://evil.example/", "//evil.example/", "/\\evil.example"} {
		v.Set("next", next)
		resp, _ = e.do("POST", "/blocked/unblock", strings.NewReader(v.Encode()), hdr)
		assert.True(t, strings.HasPrefix(resp.Header.Get("Location"), "/blocked?"), next)
	}

	v = url.Values{"kind": {"ip"}, "value": {"2001:db8::7"}, "duration": {"permanent"}, "csrf": {token}}
	resp, _ = e.do("POST", "/blocked/block", strings.NewReader(v.Encode()), hdr)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, body := e.do("GET", resp.Header.Get("Location"), nil, nil)
	assert.Contains(t, body, "Blocked ip 2001:db8::/64.")
	assert.Contains(t, body, "permanent")

	v.Set("value", "not an ip")
	resp, body = e.do("POST", "/blocked/block", strings.NewReader(v.Encode()), hdr)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, body, "class=\"alert\"")
}

func TestLiveEvents(t *testing.T) {
	e := newEnv(t, envOpts{})
	req, err := http.NewRequest("GET", e.http.URL+"/api/v1/events", nil)
	require.NoError(t, err)
	req.SetBasicAuth(testUser, testPassword)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	lines := bufio.NewScanner(resp.Body)
	readFrame := func() (event, data string) {
		for lines.Scan() {
			l := lines.Text()
			switch {
			case strings.HasPrefix(l, "event: "):
				event = strings.TrimPrefix(l, "event: ")
			case strings.HasPrefix(l, "data: "):
				data = strings.TrimPrefix(l, "data: ")
			case l == "" && event != "":
				return event, data
			}
		}
		t.Fatalf("stream ended: %v", lines.Err())
		return
	}

	// A block made by the admin's API is published and comes back live.
	resp2, body := e.do("POST", "/api/v1/blocked", strings.NewReader(`{"kind":"username","value":"<b>Zoë</b>","duration":"1h"}`),
		http.Header{"Content-Type": {"application/json"}})
	require.Equal(t, http.StatusCreated, resp2.StatusCode, body)
	ev, data := readFrame()
	assert.Equal(t, "block", ev)
	le := decode[LiveEvent](t, data)
	assert.Equal(t, "username", le.Kind)
	assert.Equal(t, "<b>zoë</b>", le.Value)
	assert.InDelta(t, 3600, le.RetryAfter, 5)
	assert.NotContains(t, data, "<b>", "JSON escapes HTML")

	resp2, _ = e.do("DELETE", "/api/v1/blocked/username/"+url.PathEscape("<b>Zoë</b>"), nil, nil)
	require.Equal(t, http.StatusOK, resp2.StatusCode)
	ev, data = readFrame()
	assert.Equal(t, "unblock", ev)
	assert.Equal(t, "<b>zoë</b>", decode[LiveEvent](t, data).Value)
}

func TestLiveEventsOffWithoutNATS(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	resp, _ := e.do("GET", "/api/v1/events", nil, nil)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode, "EventSource stops reconnecting on 204")
	_, body := e.do("GET", "/blocked", nil, nil)
	assert.Contains(t, body, "Live updates off")
}

func TestBlockedPageCap(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	for i := 0; i <= blockedPageLimit; i++ {
		e.block(gate.KindIP, fmt.Sprintf("10.0.%d.%d", i/256, i%256), time.Hour)
	}
	_, body := e.do("GET", "/blocked", nil, nil)
	assert.Equal(t, blockedPageLimit, strings.Count(body, `<tr data-value="10.0.`))
	assert.Contains(t, body, "More than 1000 are blocked")
	_, body = e.do("GET", "/api/v1/blocked", nil, nil)
	assert.Len(t, decode[BlockedList](t, body).IPs, blockedPageLimit+1, "the API lists all")
}
