package gate_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// loginSite is a form login with one user: success redirects, failure
// re-renders the form with 200, as a Django login view does.
type loginSite struct {
	calls atomic.Int32
}

func (s *loginSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	if r.Method == http.MethodPost && r.PostFormValue("password") == "secret" {
		http.Redirect(w, r, "/welcome", http.StatusFound)
		return
	}
	w.Header().Set("Content-Type", "text/html")
	_, _ = io.WriteString(w, "<form>please log in</form>")
}

func post(t *testing.T, h http.Handler, remote, user, password string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{"username": {user}, "password": {password}}
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = remote + ":5555"
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func memGate(t *testing.T, cfg gate.Config) (*gate.Gate, *events) {
	t.Helper()
	return newGate(t, memBackend(t), cfg)
}

func TestMiddlewareFormLogin(t *testing.T) {
	g, ev := memGate(t, gate.DefaultConfig())
	site := &loginSite{}
	h := g.Middleware(site)

	for i := 1; i <= 3; i++ {
		w := post(t, h, "203.0.113.5", "marcus", "wrong")
		require.Equal(t, http.StatusOK, w.Code, "failure %d re-renders the form", i)
		assert.Contains(t, w.Body.String(), "please log in")
	}
	w := post(t, h, "203.0.113.5", "marcus", "wrong")
	require.Equal(t, http.StatusTooManyRequests, w.Code, "the failure that blocks gets the lockout")
	assert.Equal(t, gate.LockoutMessage, w.Body.String())
	assert.Equal(t, "300", w.Header().Get("Retry-After"))
	assert.EqualValues(t, 4, site.calls.Load())

	require.NoError(t, g.Flush(ctx))
	w = post(t, h, "203.0.113.5", "marcus", "secret")
	assert.Equal(t, http.StatusTooManyRequests, w.Code, "blocked: even the right password is refused")
	assert.EqualValues(t, 4, site.calls.Load(), "the handler did not run")
	retry := w.Header().Get("Retry-After")
	assert.NotEmpty(t, retry)

	// GET of the form from the blocked IP is refused too, and not counted.
	r := httptest.NewRequest(http.MethodGet, "/login", nil)
	r.RemoteAddr = "203.0.113.5:1"
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	assert.Equal(t, http.StatusTooManyRequests, w.Code)

	require.NoError(t, g.Flush(ctx))
	assert.Len(t, ev.blocks(true), 2)
	assert.Len(t, ev.Attempts(), 5)
}

func TestMiddlewareSuccessResets(t *testing.T) {
	g, ev := memGate(t, gate.DefaultConfig())
	h := g.Middleware(&loginSite{})
	for round := 0; round < 3; round++ {
		for i := 0; i < 3; i++ {
			require.Equal(t, http.StatusOK, post(t, h, "203.0.113.6", "ken", "wrong").Code)
		}
		w := post(t, h, "203.0.113.6", "ken", "secret")
		require.Equal(t, http.StatusFound, w.Code)
		assert.Equal(t, "/welcome", w.Header().Get("Location"))
		require.NoError(t, g.Flush(ctx))
	}
	assert.Empty(t, ev.Transitions())
}

func TestMiddlewareOptions(t *testing.T) {
	t.Run("lockout URL", func(t *testing.T) {
		cfg := gate.DefaultConfig()
		cfg.FailureLimit, cfg.IPFailureLimit, cfg.UsernameFailureLimit = 0, 0, 0
		cfg.LockoutURL = "/locked"
		g, _ := memGate(t, cfg)
		h := g.Middleware(&loginSite{})
		w := post(t, h, "203.0.113.7", "joffrey", "wrong")
		assert.Equal(t, http.StatusFound, w.Code)
		assert.Equal(t, "/locked", w.Header().Get("Location"))
	})
	t.Run("lockout template", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "lockout.html")
		require.NoError(t, os.WriteFile(path, []byte(
			`<h1>Locked out</h1>You have attempted to login {{.failure_limit}} times, with no success. `+
				`Your account is locked for {{.cooloff_time_seconds}} seconds ({{.cooloff_time_minutes}} minutes)`), 0o600))
		cfg := gate.DefaultConfig()
		cfg.LockoutTemplate = path
		cfg.LockoutCooloffs = []time.Duration{120 * time.Second}
		g, _ := memGate(t, cfg)
		h := g.Middleware(&loginSite{})
		var w *httptest.ResponseRecorder
		for i := 0; i < 4; i++ {
			w = post(t, h, "203.0.113.8", "<b>eve</b>", "wrong")
		}
		assert.Equal(t, http.StatusTooManyRequests, w.Code)
		assert.Contains(t, w.Body.String(), "login 3 times")
		assert.Contains(t, w.Body.String(), "locked for 120 seconds (2 minutes)")
	})
	t.Run("bad template is a start error", func(t *testing.T) {
		cfg := gate.DefaultConfig()
		cfg.LockoutTemplate = filepath.Join(t.TempDir(), "missing.html")
		_, err := gate.New(cfg, gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy()}))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "DEFENDER_LOCKOUT_TEMPLATE")
	})
	t.Run("permanent lockout text", func(t *testing.T) {
		cfg := gate.DefaultConfig()
		cfg.LockoutCooloffs = []time.Duration{0}
		g, _ := memGate(t, cfg)
		h := g.Middleware(&loginSite{})
		var w *httptest.ResponseRecorder
		for i := 0; i < 4; i++ {
			w = post(t, h, "203.0.113.9", "perm", "wrong")
		}
		assert.Equal(t, http.StatusTooManyRequests, w.Code)
		assert.Equal(t, gate.PermanentLockoutMessage, w.Body.String())
		assert.Empty(t, w.Header().Get("Retry-After"))
	})
	t.Run("API view: failure status and text", func(t *testing.T) {
		cfg := gate.DefaultConfig()
		g, _ := memGate(t, cfg)
		api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.PostFormValue("password") == "secret" {
				_, _ = io.WriteString(w, `{"token":"t"}`)
				return
			}
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid credentials"}`)
		})
		h := g.Middleware(api, gate.FailureStatus(http.StatusUnauthorized, "invalid credentials"))
		for i := 0; i < 3; i++ {
			assert.Equal(t, http.StatusUnauthorized, post(t, h, "203.0.113.10", "api", "no").Code)
		}
		assert.Equal(t, http.StatusTooManyRequests, post(t, h, "203.0.113.10", "api", "no").Code)
	})
	t.Run("explicit outcome and username function", func(t *testing.T) {
		g, ev := memGate(t, gate.DefaultConfig())
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// A JSON endpoint that always answers 200 but reports the truth.
			gate.ReportOutcome(r, false)
			_, _ = io.WriteString(w, `{"ok":false}`)
		})
		h := g.Middleware(handler, gate.UsernameFunc(func(r *http.Request) string { return r.Header.Get("X-User") }))
		for i := 0; i < 3; i++ {
			assert.Equal(t, http.StatusOK, post(t, h, "203.0.113.11", "", "", "X-User", "hdr-user").Code)
		}
		assert.Equal(t, http.StatusTooManyRequests, post(t, h, "203.0.113.11", "", "", "X-User", "hdr-user").Code)
		require.NoError(t, g.Flush(ctx))
		assert.Equal(t, "hdr-user", ev.Attempts()[0].Username)
	})
}

func TestMiddlewareReverseProxy(t *testing.T) {
	cfg := gate.DefaultConfig()
	cfg.BehindReverseProxy = true
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cfg.DisableUsernameLockout = true
	g, _ := memGate(t, cfg)
	h := g.Middleware(&loginSite{})
	// Through the trusted proxy: the client in the header is counted.
	for i := 0; i < 4; i++ {
		post(t, h, "10.0.0.2", "u"+itoa(i), "wrong", "X-Forwarded-For", "203.0.113.50")
	}
	require.NoError(t, g.Flush(ctx))
	assert.Equal(t, http.StatusTooManyRequests, post(t, h, "10.0.0.2", "x", "secret", "X-Forwarded-For", "203.0.113.50").Code)
	assert.Equal(t, http.StatusFound, post(t, h, "10.0.0.2", "x", "secret", "X-Forwarded-For", "203.0.113.51").Code)
	// A client talking directly cannot forge the header to dodge its block
	// or to get a victim blocked.
	for i := 0; i < 4; i++ {
		post(t, h, "198.51.100.9", "v"+itoa(i), "wrong", "X-Forwarded-For", "203.0.113.99")
	}
	require.NoError(t, g.Flush(ctx))
	assert.Equal(t, http.StatusFound, post(t, h, "10.0.0.2", "y", "secret", "X-Forwarded-For", "203.0.113.99").Code,
		"the forged address was not blocked")
	assert.Equal(t, http.StatusTooManyRequests, post(t, h, "198.51.100.9", "z", "secret", "X-Forwarded-For", "1.1.1.1").Code,
		"the forger itself was")
}

// TestMiddlewareUsernameInQuery: a Go login handler commonly reads its
// fields with r.FormValue, which falls back to the query string when the
// body has no such field. An attacker who moved the username to the URL
// (POST /login?username=alice, password in the body) had the password of
// alice checked while the gate, reading the body only, counted no
// username: guesses from many addresses never blocked alice.
func TestMiddlewareUsernameInQuery(t *testing.T) {
	cfg := gate.DefaultConfig()
	cfg.IPFailureLimit = 100
	g, ev := memGate(t, cfg)
	checked := map[string]int{}
	site := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.FormValue("username")
		checked[user]++
		if user == "alice" && r.FormValue("password") == "secret" {
			http.Redirect(w, r, "/welcome", http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, "<form>please log in</form>")
	})
	h := g.Middleware(site)
	send := func(ip, password string) int {
		body := url.Values{"password": {password}}.Encode()
		r := httptest.NewRequest(http.MethodPost, "/login?username=alice", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = ip + ":1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for i := 0; i < 3; i++ {
		assert.Equal(t, http.StatusOK, send("198.51.100."+itoa(40+i), "guess"+itoa(i)))
	}
	assert.Equal(t, http.StatusTooManyRequests, send("198.51.100.43", "guess3"), "the failure that blocks alice")
	require.NoError(t, g.Flush(ctx))
	assert.Equal(t, http.StatusTooManyRequests, send("198.51.100.44", "secret"), "alice is blocked, whatever the address")
	assert.Equal(t, 4, checked["alice"], "the handler checked four passwords of alice")
	require.NotEmpty(t, ev.Attempts())
	assert.Equal(t, "alice", ev.Attempts()[0].Username)

	// In the body the username wins over the query, as for r.FormValue.
	_, ip := fresh()
	form := url.Values{"username": {"bob"}, "password": {"x"}}
	r := httptest.NewRequest(http.MethodPost, "/login?username=carol", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = ip + ":1"
	h.ServeHTTP(httptest.NewRecorder(), r)
	require.NoError(t, g.Flush(ctx))
	atts := ev.Attempts()
	assert.Equal(t, "bob", atts[len(atts)-1].Username)
}
