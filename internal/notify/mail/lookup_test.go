package mail

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// site is the site's lookup endpoint: it answers from answers by
// username and counts the requests for each.
type site struct {
	mu       sync.Mutex
	answers  map[string]answer
	requests map[string]int
	last     *http.Request
}

type answer struct {
	status int
	body   string
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("username")
	s.mu.Lock()
	s.requests[user]++
	s.last = r.Clone(context.Background())
	a, ok := s.answers[user]
	s.mu.Unlock()
	if !ok {
		a = answer{http.StatusNotFound, `{"error": "no such user"}`}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_, _ = w.Write([]byte(a.body))
}

func (s *site) count(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[user]
}

func (s *site) lastRequest() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// startSite runs a lookup endpoint until the test ends.
func startSite(t *testing.T, answers map[string]answer) (*site, *httptest.Server) {
	t.Helper()
	s := &site{answers: answers, requests: map[string]int{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func newLookup(t *testing.T, o LookupOptions) *Lookup {
	t.Helper()
	l, err := NewLookup(o)
	require.NoError(t, err)
	return l
}

func TestLookupEmail(t *testing.T) {
	s, srv := startSite(t, map[string]answer{
		"alice":    {200, `{"email": "alice@example.org", "name": "Alice"}`},
		"noemail":  {200, `{"name": "No Mail"}`},
		"null":     {200, `{"email": null}`},
		"broken":   {500, `oops`},
		"notjson":  {200, `<html>login</html>`},
		"huge":     {200, `{"email": "a@example.org", "pad": "` + strings.Repeat("x", 70<<10) + `"}`},
		"redirect": {302, ``},
	})
	l := newLookup(t, LookupOptions{URL: srv.URL + "/defender/email?username={username}", Header: "X-Api-Key: k3y"})
	ctx := context.Background()

	addr, found, err := l.Email(ctx, "alice")
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, "alice@example.org", addr)
	assert.Equal(t, "k3y", s.lastRequest().Header.Get("X-Api-Key"))
	assert.Equal(t, "/defender/email", s.lastRequest().URL.Path)

	for _, user := range []string{"nobody", "noemail", "null"} {
		addr, found, err := l.Email(ctx, user)
		require.NoError(t, err, user)
		assert.False(t, found, user)
		assert.Empty(t, addr, user)
	}
	for user, want := range map[string]string{
		"broken":   "500 Internal Server Error",
		"notjson":  "not {",
		"huge":     "larger than 64 KiB",
		"redirect": "302 Found",
	} {
		_, found, err := l.Email(ctx, user)
		require.Error(t, err, user)
		assert.Contains(t, err.Error(), want, user)
		assert.False(t, found, user)
		assert.False(t, Permanent(err), "%s: %v", user, err)
	}
}

func TestLookupCache(t *testing.T) {
	s, srv := startSite(t, map[string]answer{
		"alice":  {200, `{"email": "alice@example.org"}`},
		"broken": {500, ``},
	})
	l := newLookup(t, LookupOptions{URL: srv.URL + "?username={username}", CacheTTL: time.Minute})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	ctx := context.Background()

	for range 3 {
		addr, found, err := l.Email(ctx, "alice")
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, "alice@example.org", addr)
		_, found, err = l.Email(ctx, "nobody")
		require.NoError(t, err)
		assert.False(t, found)
	}
	assert.Equal(t, 1, s.count("alice"), "found is cached")
	assert.Equal(t, 1, s.count("nobody"), "not found is cached")

	for range 3 {
		_, _, err := l.Email(ctx, "broken")
		require.Error(t, err)
	}
	assert.Equal(t, 3, s.count("broken"), "errors are not cached")

	now = now.Add(time.Minute)
	_, _, err := l.Email(ctx, "alice")
	require.NoError(t, err)
	assert.Equal(t, 2, s.count("alice"), "asked again after CacheTTL")
}

func TestLookupCacheEvictsLeastRecentlyUsed(t *testing.T) {
	s, srv := startSite(t, map[string]answer{})
	l := newLookup(t, LookupOptions{URL: srv.URL, CacheSize: 2})
	ctx := context.Background()
	ask := func(user string) {
		_, _, err := l.Email(ctx, user)
		require.NoError(t, err)
	}
	ask("a")
	ask("b")
	ask("a") // a is now the most recently used
	ask("c") // evicts b
	ask("a")
	ask("b")
	assert.Equal(t, 1, s.count("a"))
	assert.Equal(t, 2, s.count("b"))
	assert.Equal(t, 1, s.count("c"))
}

func TestLookupEscapesUsername(t *testing.T) {
	names := []string{"jo doe", "a&admin=1", "Zoë 山田", "x/../y?z=1#f", "+plus%41"}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			s, srv := startSite(t, map[string]answer{})
			for _, tmpl := range []string{
				srv.URL + "/email?username={username}",
				srv.URL + "/email?v=2",
				srv.URL + "/email",
			} {
				l := newLookup(t, LookupOptions{URL: tmpl})
				_, _, err := l.Email(context.Background(), name)
				require.NoError(t, err)
				q := s.lastRequest().URL.Query()
				assert.Equal(t, []string{name}, q["username"], tmpl)
				assert.Empty(t, q["admin"], tmpl)
				assert.Equal(t, "/email", s.lastRequest().URL.Path, tmpl)
			}
		})
	}
	t.Run("in the path", func(t *testing.T) {
		s, srv := startSite(t, map[string]answer{})
		l := newLookup(t, LookupOptions{URL: srv.URL + "/users/{username}/email"})
		_, _, err := l.Email(context.Background(), "jo doe/../x")
		require.NoError(t, err)
		assert.Equal(t, "/users/"+url.PathEscape("jo doe/../x")+"/email", s.lastRequest().URL.EscapedPath())
	})
}

func TestLookupRefusesBadAddresses(t *testing.T) {
	bad := map[string]string{
		"name":     `{"email": "\"Bank\" <evil@example.com>"}`,
		"list":     `{"email": "a@example.org, b@example.org"}`,
		"noat":     `{"email": "not-an-address"}`,
		"crlf":     `{"email": "a@example.org\r\nBcc: b@example.org"}`,
		"comment":  `{"email": "a@example.org (admin)"}`,
		"brackets": `{"email": "<a@example.org>"}`,
	}
	answers := map[string]answer{}
	for user, body := range bad {
		answers[user] = answer{200, body}
	}
	s, srv := startSite(t, answers)
	l := newLookup(t, LookupOptions{URL: srv.URL})
	for user := range bad {
		_, found, err := l.Email(context.Background(), user)
		require.Error(t, err, user)
		assert.False(t, found)
		assert.True(t, Permanent(err), "%s: %v", user, err)
		_, _, err = l.Email(context.Background(), user)
		require.Error(t, err, user)
		assert.Equal(t, 2, s.count(user), "%s: not cached", user)
	}
}

func TestLookupTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: the handler returns, Close need not wait
	l := newLookup(t, LookupOptions{URL: srv.URL, Timeout: 50 * time.Millisecond})
	_, found, err := l.Email(context.Background(), "alice")
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, found)
	assert.False(t, Permanent(err))
}

func TestNewLookupOptions(t *testing.T) {
	tests := []struct {
		name    string
		o       LookupOptions
		wantErr string
	}{
		{"no URL", LookupOptions{}, "URL is empty"},
		{"scheme", LookupOptions{URL: "ftp://site/{username}"}, "scheme"},
		{"no host", LookupOptions{URL: "https:///email"}, "no host"},
		{"fragment", LookupOptions{URL: "https://site/email#x"}, "fragment"},
		{"bad URL keeps its secret", LookupOptions{URL: "https://user:s3cret@site:port/"}, "not a valid URL"},
		{"header without colon", LookupOptions{URL: "https://site/", Header: "X-Api-Key s3cret"}, "Header"},
		{"header with newline", LookupOptions{URL: "https://site/", Header: "X-Api-Key: s3cret\r\nX-Other: 1"}, "Header"},
		{"negative timeout", LookupOptions{URL: "https://site/", Timeout: -1}, "Timeout"},
		{"negative size", LookupOptions{URL: "https://site/", CacheSize: -1}, "CacheSize"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewLookup(tc.o)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
			assert.NotContains(t, err.Error(), "s3cret")
		})
	}
}

func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{`{"email": "a@example.org"}`, `{"email": ""}`, `{}`, `null`, `{"email": "\"x\" <a@b>"}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		addr, found, err := parseAnswer(body)
		if err != nil || !found {
			assert.Empty(t, addr)
			return
		}
		a, err := parseAddr(addr)
		require.NoError(t, err, "an accepted address parses again")
		assert.Equal(t, addr, a.Address)
		assert.Empty(t, a.Name)
		assert.False(t, strings.ContainsAny(addr, "\r\n<>,"), "%q", addr)
	})
}

// TestLookupRefusalsAndDots: a username the site refuses (4xx) is an
// error retrying will not fix; "." and ".." never reach the URL's path.
func TestLookupRefusalsAndDots(t *testing.T) {
	var asked []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.EscapedPath())
		mu.Unlock()
		switch {
		case strings.Contains(r.URL.Path, "/refused/"):
			http.Error(w, "no", http.StatusForbidden)
		case strings.Contains(r.URL.Path, "/busy/"):
			http.Error(w, "later", http.StatusTooManyRequests)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	l, err := NewLookup(LookupOptions{URL: srv.URL + "/users/{username}/email"})
	require.NoError(t, err)
	_, _, err = l.Email(context.Background(), "refused")
	require.Error(t, err)
	assert.True(t, Permanent(err), "a 403 is the site refusing the name: %v", err)
	_, _, err = l.Email(context.Background(), "busy")
	require.Error(t, err)
	assert.False(t, Permanent(err), "a 429 is worth another try")
	for _, name := range []string{".", ".."} {
		_, found, err := l.Email(context.Background(), name)
		require.NoError(t, err)
		assert.False(t, found, name)
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"/users/refused/email", "/users/busy/email"}, asked, "the dots asked nothing")
}
