package gate

import (
	"bytes"
	"context"
	"net/http"
)

// MiddlewareOption configures Middleware.
type MiddlewareOption func(*middleware)

// UsernameFunc replaces the default username extraction (the form field
// DEFENDER_USERNAME_FORM_FIELD of a POST, as r.FormValue reads it).
func UsernameFunc(f func(*http.Request) string) MiddlewareOption {
	return func(m *middleware) { m.username = f }
}

// FailureStatus makes a response with this status (and, if text is not
// empty, a body containing text) a failure and every other response a
// success: django-defender's watch_login(status_code=401, msg=...), for API
// views. By default a response is a success when it redirects (status 302
// or a Location header) and a failure otherwise.
func FailureStatus(status int, text string) MiddlewareOption {
	return func(m *middleware) { m.failStatus, m.failText = status, []byte(text) }
}

type middleware struct {
	g          *Gate
	next       http.Handler
	username   func(*http.Request) string
	failStatus int
	failText   []byte
}

// Middleware protects a login handler, like django-defender's watch_login.
// A POST is an attempt: a blocked source gets the lockout answer without the
// handler running; otherwise the attempt is charged, the handler runs, and
// its outcome is taken from ReportOutcome if the handler called it, else
// inferred from the response. The failure that blocks is answered with the
// lockout instead of the handler's response. Other methods are only checked
// (a blocked source cannot even see the form) and never counted.
//
// The store is called once, before the handler; the outcome is written in
// the background (see Gate.Flush), so every login costs one round trip on
// its critical path.
func (g *Gate) Middleware(next http.Handler, opts ...MiddlewareOption) http.Handler {
	m := &middleware{g: g, next: next}
	field := g.cfg.UsernameFormField
	// FormValue, as a Go handler usually reads it: the body's field, else
	// the query's. Reading the body alone, a username moved to the URL was
	// checked by such a handler but counted by nobody.
	m.username = func(r *http.Request) string { return r.FormValue(field) }
	for _, o := range opts {
		o(m)
	}
	return m
}

type outcomeKey struct{}

// outcome is where ReportOutcome leaves the handler's verdict.
type outcome struct {
	set     bool
	success bool
}

// ReportOutcome tells the Middleware whether the password check passed,
// overriding what it would infer from the response. Call it from the
// protected handler before writing the response; outside Middleware it
// does nothing.
func ReportOutcome(r *http.Request, success bool) {
	if o, ok := r.Context().Value(outcomeKey{}).(*outcome); ok {
		o.set, o.success = true, success
	}
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := m.g
	a := Attempt{IP: g.ips.clientIP(r), Path: r.URL.Path, UserAgent: r.UserAgent()}
	if r.Method != http.MethodPost {
		if d := g.Check(r.Context(), a); !d.Allowed {
			g.WriteLockout(w, r, d)
			return
		}
		m.next.ServeHTTP(w, r)
		return
	}
	a.Username = m.username(r)
	// Smart lockout: the browser's device token, or a new one, which its
	// first login teaches and the response sets.
	var cookie string
	if c, err := r.Cookie(DeviceCookie); err == nil {
		cookie = c.Value
	}
	var newDevice bool
	a.Device, newDevice = g.Device(cookie)
	t, d := g.Begin(r.Context(), a)
	if !d.Allowed {
		g.WriteLockout(w, r, d)
		return
	}
	o := &outcome{}
	bw := &bufferedWriter{w: w, header: http.Header{}, status: http.StatusOK}
	settled := false
	defer func() {
		if !settled { // the handler panicked: count it as a failure
			t.FinishAsync(false)
		}
	}()
	m.next.ServeHTTP(bw, r.WithContext(context.WithValue(r.Context(), outcomeKey{}, o)))
	success := o.success
	if !o.set {
		success = m.inferSuccess(bw)
	}
	settled = true
	t.FinishAsync(success)
	if !success && t.LastChance() && !bw.committed && g.cfg.Mode != ModeObserve {
		// The failure that blocks is answered with the lockout, as in
		// django-defender; the block itself is written in the background.
		g.WriteLockout(w, r, t.lockoutDecision())
		return
	}
	if success && newDevice && !bw.committed {
		g.SetDeviceCookie(bw, r, a.Device)
	}
	bw.commit()
}

// inferSuccess applies django-defender's rules to the handler's response.
func (m *middleware) inferSuccess(bw *bufferedWriter) bool {
	if m.failStatus != 0 {
		failed := bw.status == m.failStatus && bytes.Contains(bw.body.Bytes(), m.failText)
		return !failed
	}
	return bw.status == http.StatusFound || bw.header.Get("Location") != ""
}

// maxBuffered is how much of a response the middleware holds back so that
// it can still replace it with the lockout answer.
const maxBuffered = 1 << 20

// bufferedWriter holds the handler's response until the outcome is known.
// A handler that flushes, or writes more than maxBuffered, is streamed
// (committed) instead.
type bufferedWriter struct {
	w         http.ResponseWriter
	header    http.Header
	status    int
	body      bytes.Buffer
	wrote     bool
	committed bool
}

func (b *bufferedWriter) Header() http.Header {
	if b.committed {
		return b.w.Header()
	}
	return b.header
}

func (b *bufferedWriter) WriteHeader(status int) {
	if b.committed {
		b.w.WriteHeader(status)
		return
	}
	if !b.wrote {
		b.status, b.wrote = status, true
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.committed {
		return b.w.Write(p)
	}
	b.wrote = true
	if b.body.Len()+len(p) > maxBuffered {
		b.commit()
		return b.w.Write(p)
	}
	return b.body.Write(p)
}

// Flush commits what is held and flushes it.
func (b *bufferedWriter) Flush() {
	b.commit()
	if f, ok := b.w.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (b *bufferedWriter) Unwrap() http.ResponseWriter { return b.w }

// commit sends what is held to the real writer; later writes pass through.
func (b *bufferedWriter) commit() {
	if b.committed {
		return
	}
	b.committed = true
	dst := b.w.Header()
	for k, v := range b.header {
		dst[k] = v
	}
	b.w.WriteHeader(b.status)
	if b.body.Len() > 0 {
		_, _ = b.w.Write(b.body.Bytes())
	}
}
