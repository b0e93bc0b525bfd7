package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

func TestLoginSite(t *testing.T) {
	mem := gate.NewMemoryStore(gate.MemoryOptions{})
	defer mem.Close()
	g, err := gate.New(gate.DefaultConfig(), mem)
	require.NoError(t, err)
	defer g.Close(context.Background())
	h := newSite(g, map[string]string{"alice": "wonderland"})

	try := func(user, pw string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/login",
			strings.NewReader(url.Values{"username": {user}, "password": {pw}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "192.0.2.44:1234"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := try("alice", "wonderland")
	require.Equal(t, http.StatusFound, w.Code)
	assert.Equal(t, "/", w.Header().Get("Location"))
	require.NoError(t, g.Flush(context.Background()))

	for i := 0; i < 3; i++ {
		w = try("alice", "guess")
		require.Equal(t, http.StatusOK, w.Code)
		assert.Contains(t, w.Body.String(), "correct username and password")
	}
	w = try("alice", "guess")
	assert.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Equal(t, gate.LockoutMessage, w.Body.String())
	require.NoError(t, g.Flush(context.Background()))
	assert.Equal(t, http.StatusTooManyRequests, try("alice", "wonderland").Code, "locked out, even with the password")

	// The escaper keeps user input inert in the page.
	assert.Equal(t, "&lt;script&gt;", escape("<script>"))

	// The notifier's address lookup: users of the site only.
	for user, want := range map[string]int{"alice": http.StatusOK, "mallory": http.StatusNotFound} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/defender/email?username="+user, nil))
		assert.Equal(t, want, w.Code, user)
		if want == http.StatusOK {
			assert.JSONEq(t, `{"email":"alice@example.com"}`, w.Body.String())
		}
	}
}

func TestParseUsers(t *testing.T) {
	u, err := parseUsers("a:1, b:2")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"a": "1", "b": "2"}, u)
	_, err = parseUsers("nopassword")
	assert.Error(t, err)
}
