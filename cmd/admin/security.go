package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"mime"
	"net/http"
	"strings"
)

// contentSecurityPolicy allows only the admin's own embedded scripts and
// styles: no inline script, no other origin, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders sets the headers every answer carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// basicAuth guards everything but /healthz with HTTP basic auth. User and
// password are compared in constant time (as SHA-256 digests, so that their
// lengths do not leak either). Wrong passwords are counted by client
// address with defender's own gate (see authGuard).
type basicAuth struct {
	user, pass [sha256.Size]byte
	guard      *authGuard
	next       http.Handler
}

func newBasicAuth(user, password string, guard *authGuard, next http.Handler) *basicAuth {
	return &basicAuth{user: sha256.Sum256([]byte(user)), pass: sha256.Sum256([]byte(password)), guard: guard, next: next}
}

// check reports whether the credentials are the admin's.
func (a *basicAuth) check(u, p string) bool {
	gu, gp := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
	return subtle.ConstantTimeCompare(gu[:], a.user[:])&subtle.ConstantTimeCompare(gp[:], a.pass[:]) == 1
}

func (a *basicAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		a.next.ServeHTTP(w, r)
		return
	}
	u, p, ok := r.BasicAuth()
	if !ok {
		// No credentials (a browser's first request): asked for, not counted.
		a.challenge(w, r)
		return
	}
	if d := a.guard.check(r); !d.Allowed {
		a.guard.refuse(w, r, d)
		return
	}
	if a.check(u, p) {
		a.next.ServeHTTP(w, r)
		return
	}
	if d := a.guard.fail(r); !d.Allowed {
		a.guard.refuse(w, r, d)
		return
	}
	a.challenge(w, r)
}

// challenge answers 401 with the basic-auth challenge.
func (a *basicAuth) challenge(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Basic realm="defender admin", charset="UTF-8"`)
	if wantsJSON(r) {
		writeError(w, http.StatusUnauthorized, "authentication required")
		return
	}
	http.Error(w, "401 authentication required", http.StatusUnauthorized)
}

// csrfHeader carries the CSRF token on API calls made by scripts.
const csrfHeader = "X-CSRF-Token"

// csrfField carries the CSRF token in HTML forms.
const csrfField = "csrf"

// csrfToken derives the token of the admin's credentials: forms embed it
// and state-changing requests must return it. It changes with the password
// and is the same on every replica of the admin.
func csrfToken(user, password string) string {
	key := sha256.Sum256([]byte("defender-admin-csrf\x00" + password))
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrf protects state-changing requests in two layers. First
// http.CrossOriginProtection refuses any POST, PUT, PATCH or DELETE that the
// browser marks as cross-site (Sec-Fetch-Site, or an Origin unlike Host).
// Then a request must prove it comes from the admin's own pages or from a
// non-browser client: a valid token (form field or header), or, on the JSON
// API, a request a cross-site page cannot forge without a CORS preflight
// (a JSON body, or DELETE).
type csrf struct {
	token string
	cop   *http.CrossOriginProtection
	next  http.Handler
}

func newCSRF(token string, next http.Handler) *csrf {
	c := &csrf{token: token, cop: http.NewCrossOriginProtection(), next: next}
	c.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deny(w, r, "cross-origin request refused")
	}))
	return c
}

func (c *csrf) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.cop.Handler(http.HandlerFunc(c.serve)).ServeHTTP(w, r)
}

func (c *csrf) serve(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		c.next.ServeHTTP(w, r)
		return
	}
	if c.valid(r.Header.Get(csrfHeader)) {
		c.next.ServeHTTP(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		if r.Method == http.MethodDelete || isJSON(r.Header.Get("Content-Type")) {
			c.next.ServeHTTP(w, r)
			return
		}
		deny(w, r, "missing CSRF token: send "+csrfHeader+" or a JSON body (Content-Type: application/json)")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if c.valid(r.PostFormValue(csrfField)) {
		c.next.ServeHTTP(w, r)
		return
	}
	deny(w, r, "missing or wrong CSRF token: reload the page and try again")
}

func (c *csrf) valid(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(c.token)) == 1
}

// deny answers 403 in the form the client expects.
func deny(w http.ResponseWriter, r *http.Request, msg string) {
	if wantsJSON(r) {
		writeError(w, http.StatusForbidden, msg)
		return
	}
	http.Error(w, "403 "+msg, http.StatusForbidden)
}

// isJSON reports whether a Content-Type is JSON (not one a plain HTML form
// can send).
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// wantsJSON reports whether r is an API call.
func wantsJSON(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/api/") || strings.Contains(r.Header.Get("Accept"), "application/json")
}
