package main_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every bad request gets a 4xx with a JSON error, never a 5xx, and the
// service goes on.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	g := startGate(t)
	begun := g.begin(t, "203.0.113.30", "alice")
	token := begun.Body["token"].(string)
	const js = "application/json"
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
		err         string // part of the error message
		allow       string
	}{
		{"malformed JSON", "POST", "/v1/attempts", js, `{"ip":"1.2.3.4",`, 400, "malformed JSON", ""},
		{"not JSON", "POST", "/v1/check", js, `ip=1.2.3.4`, 400, "JSON object", ""},
		{"unknown field", "POST", "/v1/attempts", js, `{"ip":"1.2.3.4","password":"x","success":false}`, 400, `unknown field "password"`, ""},
		{"unknown field on check", "POST", "/v1/check", js, `{"ip":"1.2.3.4","success":false}`, 400, `unknown field "success"`, ""},
		{"missing ip", "POST", "/v1/attempts", js, `{"username":"alice","success":false}`, 400, `"ip" is required`, ""},
		{"null ip", "POST", "/v1/check", js, `{"ip":null}`, 400, `"ip" is required`, ""},
		{"empty ip", "POST", "/v1/check", js, `{"ip":"  "}`, 400, `"ip" is required`, ""},
		{"bad ip", "POST", "/v1/attempts", js, `{"ip":"999.1.1.1","success":false}`, 400, "not an IP address", ""},
		{"hostname as ip", "POST", "/v1/check", js, `{"ip":"example.com"}`, 400, "not an IP address", ""},
		{"ip of the wrong type", "POST", "/v1/check", js, `{"ip":1234}`, 400, `"ip" must be a string`, ""},
		{"oversized body", "POST", "/v1/attempts", js, `{"ip":"1.2.3.4","path":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "larger than", ""},
		{"long username", "POST", "/v1/attempts", js, `{"ip":"1.2.3.4","username":"` + strings.Repeat("u", 1025) + `","success":false}`, 400, "longer than 1024 bytes", ""},
		{"invalid UTF-8", "POST", "/v1/attempts", js, "{\"ip\":\"1.2.3.4\",\"username\":\"al\xffice\",\"success\":false}", 400, "UTF-8", ""},
		{"trailing garbage", "POST", "/v1/attempts", js, `{"ip":"1.2.3.4","success":false} {"ip":"5.6.7.8"}`, 400, "after the JSON object", ""},
		{"trailing junk", "POST", "/v1/check", js, `{"ip":"1.2.3.4"}x`, 400, "after the JSON object", ""},
		{"success as string", "POST", "/v1/attempts", js, `{"ip":"1.2.3.4","success":"false"}`, 400, `"success" must be true or false`, ""},
		{"success as number", "POST", "/v1/attempts", js, `{"ip":"1.2.3.4","success":0}`, 400, `"success" must be true or false`, ""},
		{"success null", "POST", "/v1/attempts", js, `{"ip":"1.2.3.4","success":null}`, 400, `"success" must be true or false`, ""},
		{"array body", "POST", "/v1/attempts", js, `[{"ip":"1.2.3.4"}]`, 400, "JSON object", ""},
		{"null body", "POST", "/v1/attempts", js, `null`, 400, "JSON object", ""},
		{"empty body", "POST", "/v1/attempts", js, ``, 400, "empty body", ""},
		{"multipart content type", "POST", "/v1/attempts", "multipart/form-data; boundary=x", `{"ip":"1.2.3.4"}`, 415, "not application/json", ""},
		{"xml content type", "POST", "/v1/check", "application/xml", `{"ip":"1.2.3.4"}`, 415, "not application/json", ""},
		{"bad content type", "POST", "/v1/check", "json;;;", `{"ip":"1.2.3.4"}`, 415, "not application/json", ""},
		{"form content type, form body", "POST", "/v1/attempts", "application/x-www-form-urlencoded", `ip=1.2.3.4&success=false`, 400, "JSON object", ""},
		{"GET attempts", "GET", "/v1/attempts", "", ``, 405, "not allowed", "POST"},
		{"PUT check", "PUT", "/v1/check", js, `{"ip":"1.2.3.4"}`, 405, "not allowed", "POST"},
		{"DELETE token", "DELETE", "/v1/attempts/" + token, "", ``, 405, "not allowed", "POST"},
		{"POST healthz", "POST", "/healthz", js, `{}`, 405, "not allowed", "GET, HEAD"},
		{"POST metrics", "POST", "/metrics", js, `{}`, 405, "not allowed", "GET, HEAD"},
		{"unknown route", "POST", "/v1/nope", js, `{}`, 404, "no route", ""},
		{"outcome without success", "POST", "/v1/attempts/" + token, js, `{}`, 400, `"success" is required`, ""},
		{"outcome with extra field", "POST", "/v1/attempts/" + token, js, `{"success":true,"ip":"1.2.3.4"}`, 400, `unknown field "ip"`, ""},
		{"outcome success as string", "POST", "/v1/attempts/" + token, js, `{"success":"true"}`, 400, `"success" must be true or false`, ""},
		{"outcome of a huge token", "POST", "/v1/attempts/" + strings.Repeat("a", 9000), js, `{"success":true}`, 400, "invalid token", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.do(t, tc.method, tc.path, tc.contentType, bytes.NewReader([]byte(tc.body)))
			assert.Equal(t, tc.status, r.Status, r.Raw)
			assert.Contains(t, r.Body["error"], tc.err)
			if tc.allow != "" {
				assert.Equal(t, tc.allow, r.Header.Get("Allow"))
			}
		})
	}

	// Accepted variants: no content type, a JSON content type with
	// parameters, a +json type.
	for _, ct := range []string{"", "application/json; charset=utf-8", "application/vnd.defender+json"} {
		r := g.do(t, "POST", "/v1/check", ct, strings.NewReader(`{"ip":"1.2.3.4"}`))
		assertAllowed(t, r, "content type %q", ct)
	}
	// A bad outcome body did not use up the token.
	assertAllowed(t, g.finish(t, token, false))

	// Nothing was counted by the bad requests, and the service is fine.
	assert.Equal(t, 0, g.check(t, "1.2.3.4", "alice").num("ip_failures"))
	h := g.do(t, http.MethodGet, "/healthz", "", nil)
	assert.Equal(t, http.StatusOK, h.Status)
	m := g.do(t, http.MethodGet, "/metrics", "", nil)
	assert.NotContains(t, m.Raw, `code="500"`)
}

// A body cut short by the client is a 400, and a HEAD on healthz works.
func TestTruncatedBody(t *testing.T) {
	t.Parallel()
	g := startGate(t)
	req, err := http.NewRequest(http.MethodPost, g.URL+"/v1/attempts", io.NopCloser(strings.NewReader(`{"ip":"1.2.`)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	head, err := client.Head(g.URL + "/healthz")
	require.NoError(t, err)
	head.Body.Close()
	assert.Equal(t, http.StatusOK, head.StatusCode)
}

// What `curl -d '{...}'` sends (a JSON body labelled form-urlencoded) and
// a client that sets no content type are served like application/json:
// the body must still be one strict JSON object.
func TestJSONUnderLenientContentTypes(t *testing.T) {
	t.Parallel()
	g := startGate(t)
	for i, ct := range []string{"application/x-www-form-urlencoded", "text/plain; charset=utf-8", ""} {
		ip := "203.0.113." + string(rune('1'+i))
		r := g.do(t, http.MethodPost, "/v1/attempts", ct, strings.NewReader(`{"ip":"`+ip+`","username":"carol","success":false}`))
		assert.Equal(t, http.StatusOK, r.Status, "content type %q: %s", ct, r.Raw)
		c := g.do(t, http.MethodPost, "/v1/check", ct, strings.NewReader(`{"ip":"`+ip+`"}`))
		assert.Equal(t, http.StatusOK, c.Status, "content type %q: %s", ct, c.Raw)
		assert.Equal(t, true, c.Body["allowed"])
	}
}
