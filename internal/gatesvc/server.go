// Package gatesvc is the HTTP/JSON face of the gate (cmd/gate): it lets
// applications in any language ask the gate whether a login may go on
// and report its outcome. Its routes:
//
//	POST /v1/check                {"ip","username"}                  read-only
//	POST /v1/attempts             {"ip","username","success",...}    one call: count a finished attempt
//	POST /v1/attempts             {"ip","username",...} (no success) two phases: charge, get a token
//	POST /v1/attempts/{token}     {"success":bool}                   two phases: report the outcome
//	GET  /healthz                 200 when the store answers, else 503
//	GET  /metrics                 Prometheus
//
// Every decision is answered 200 (allowed), 429 (blocked, with
// Retry-After unless the block is permanent) or 503 (store down and
// DEFENDER_FAIL_MODE=closed), with a Response body. Every bad request is
// answered 4xx with {"error":"..."}.
package gatesvc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/defender-go/defender/internal/service"
	"github.com/defender-go/defender/internal/truncate"
	"github.com/defender-go/defender/pkg/gate"
)

// Response is the answer to every decision route.
type Response struct {
	// Allowed is true when the attempt may go on (check, begin) or, after
	// an outcome, when the source is not blocked now.
	Allowed bool `json:"allowed"`
	// BlockedBy lists why the source is refused: "ip", "username", "pair".
	BlockedBy []gate.Kind `json:"blocked_by"`
	// RetryAfter is the number of seconds until the source may try again
	// (rounded up); 0 when allowed or when the block never expires.
	RetryAfter int64 `json:"retry_after"`
	// Permanent is true when the block never expires.
	Permanent bool `json:"permanent"`
	// Reason of a block: "auto" or "blacklist".
	Reason string `json:"reason,omitempty"`
	// Failures counted after the call, per kind (0 for kinds not counted).
	IPFailures       int `json:"ip_failures"`
	UsernameFailures int `json:"username_failures"`
	PairFailures     int `json:"pair_failures"`
	// LastChance (two phases, begin) is true when a failure of this
	// attempt blocks its source.
	LastChance bool `json:"last_chance,omitempty"`
	// Degraded is true when the store did not answer in time and the
	// gate's local limiter decided (DEFENDER_FAIL_MODE=local): allowed or
	// refused, by what this gate process has seen.
	Degraded bool `json:"degraded"`
	// Unavailable is true when the store did not answer and
	// DEFENDER_FAIL_MODE=closed refused the attempt (status 503).
	Unavailable bool `json:"unavailable"`
	// Device (smart lockout, after a success) is the client's device
	// token: keep it (a cookie) and send it with the user's next attempts,
	// which then come from a source familiar to the user.
	Device string `json:"device,omitempty"`
	// Observed is true in observe mode (DEFENDER_MODE=observe) for an
	// attempt enforce mode would have refused: it is allowed, and
	// BlockedBy says what would have refused it.
	Observed bool `json:"observed,omitempty"`
	// Token (two phases, begin) identifies the attempt for
	// POST /v1/attempts/{token}; it is valid for ExpiresIn seconds.
	Token     string `json:"token,omitempty"`
	ExpiresIn int64  `json:"expires_in,omitempty"`
	// Error explains a 503.
	Error string `json:"error,omitempty"`
}

// Options configures a Server.
type Options struct {
	// Gate decides; required.
	Gate *gate.Gate
	// Tokens signs two-phase tokens; required.
	Tokens *Tokens
	// Health reports whether the store answers (GET /healthz); nil: always.
	Health func(context.Context) error
	// Metrics serves GET /metrics; nil: 404.
	Metrics http.Handler
	// Registerer receives the service's HTTP metrics; nil: none.
	Registerer prometheus.Registerer
	// Logger (slog.Default()).
	Logger *slog.Logger
	// APIKey, when not empty, must come with every /v1 request as
	// "Authorization: Bearer <key>" (DEFENDER_API_KEY); /healthz and
	// /metrics stay open. At least MinSecretBytes long.
	APIKey string
}

// Server is the gate service's http.Handler.
type Server struct {
	gate   *gate.Gate
	tokens *Tokens
	ttl    time.Duration
	health func(context.Context) error
	log    *slog.Logger
	mux    *http.ServeMux
	m      *serverMetrics
	// apiKey is the SHA-256 of Options.APIKey; keyed says one is set.
	apiKey [sha256.Size]byte
	keyed  bool
}

// New returns the service's handler.
func New(o Options) (*Server, error) {
	if o.Gate == nil || o.Tokens == nil {
		return nil, errors.New("gatesvc: Gate and Tokens are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cfg := o.Gate.Config()
	s := &Server{gate: o.Gate, tokens: o.Tokens, ttl: cfg.PendingTimeout,
		health: o.Health, log: o.Logger, mux: http.NewServeMux()}
	if o.APIKey != "" {
		if len(o.APIKey) < MinSecretBytes {
			return nil, fmt.Errorf("gatesvc: the API key is %d bytes; use at least %d", len(o.APIKey), MinSecretBytes)
		}
		s.apiKey, s.keyed = sha256.Sum256([]byte(o.APIKey)), true
	}
	m, err := newServerMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	s.m = m
	s.mux.Handle("/v1/check", s.api("check", s.check))
	s.mux.Handle("/v1/attempts", s.api("attempts", serversOnly(s.attempt)))
	s.mux.Handle("/v1/attempts/{token}", s.api("outcome", serversOnly(s.outcome)))
	s.mux.Handle("/healthz", s.only("healthz", http.HandlerFunc(s.healthz), http.MethodGet, http.MethodHead))
	if o.Metrics != nil {
		s.mux.Handle("/metrics", s.only("metrics", o.Metrics, http.MethodGet, http.MethodHead))
	}
	s.mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route %s", truncate.UTF8(r.URL.Path, 128)))
	}))
	return s, nil
}

// ServeHTTP implements http.Handler. A panic in a handler is logged and
// answered 500 (if nothing was written yet); the process goes on.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &service.StatusWriter{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			s.m.panics.Inc()
			if rec.Status == 0 {
				writeError(rec, http.StatusInternalServerError, "internal error")
			}
		}
	}()
	s.mux.ServeHTTP(rec, r)
}

// only answers 405 with Allow to methods other than allowed.
func (s *Server) only(route string, h http.Handler, allowed ...string) http.Handler {
	allow := allowed[0]
	for _, m := range allowed[1:] {
		allow += ", " + m
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range allowed {
			if r.Method == m {
				h.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, route, allow))
	})
}

// api wraps a decision route: POST only, metrics, and client errors
// turned into their JSON answer.
func (s *Server) api(route string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	requests := s.m.requests.MustCurryWith(prometheus.Labels{"route": route})
	duration := s.m.duration.WithLabelValues(route)
	return s.only(route, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.m.inFlight.Inc()
		defer s.m.inFlight.Dec()
		start := time.Now()
		rec := &service.StatusWriter{ResponseWriter: w}
		err := s.authorize(rec, r)
		if err == nil {
			err = h(rec, r)
		}
		if err != nil {
			var re *requestError
			switch {
			case errors.As(err, &re):
				writeError(rec, re.status, re.msg)
			default:
				s.log.Error("request failed", "route", route, "err", err)
				writeError(rec, http.StatusInternalServerError, "internal error")
			}
		}
		duration.Observe(time.Since(start).Seconds())
		requests.WithLabelValues(strconv.Itoa(rec.Status)).Inc()
	}), http.MethodPost)
}

// authorize checks the API key, when one is set. Keys are compared as
// SHA-256 digests in constant time, so neither content nor length leaks.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) error {
	if !s.keyed {
		return nil
	}
	scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	got := sha256.Sum256([]byte(strings.TrimSpace(key)))
	if strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare(got[:], s.apiKey[:]) == 1 {
		return nil
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="defender gate"`)
	return &requestError{status: http.StatusUnauthorized,
		msg: "missing or wrong API key: send Authorization: Bearer <DEFENDER_API_KEY>"}
}

// serversOnly refuses requests a browser sent to a route that changes
// state. Outcomes come from the application's server: a browser that
// reaches the service (a page on the internal network the service listens
// on, or DNS rebinding) must not report a success that clears its own
// block, nor failures that block someone else. Browsers put Origin on
// every POST, and Sec-Fetch-Site on requests to trustworthy origins;
// server-side HTTP clients (curl, net/http, requests, PHP, Node's fetch)
// send neither. /v1/check, which counts nothing, stays open to them: nginx's
// auth_request passes the browser's headers on.
func serversOnly(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		for _, name := range []string{"Origin", "Sec-Fetch-Site"} {
			if _, sent := r.Header[name]; sent {
				return &requestError{status: http.StatusForbidden, msg: fmt.Sprintf(
					"refused: the request carries %s, as browsers send; attempts and outcomes are reported by the application's server, not by a browser", name)}
			}
		}
		return h(w, r)
	}
}

// check answers POST /v1/check: counts nothing.
func (s *Server) check(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	req, err := DecodeCheck(body)
	if err != nil {
		return err
	}
	// A client hanging up is not a store outage: the gate bounds the call.
	s.respond(w, s.gate.Check(context.WithoutCancel(r.Context()), req.Attempt()), "")
	return nil
}

// attempt answers POST /v1/attempts: Record with success, Begin without.
func (s *Server) attempt(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	req, err := DecodeAttempt(body)
	if err != nil {
		return err
	}
	// A client that hangs up must not escape counting: the gate bounds
	// store calls by DEFENDER_REDIS_TIMEOUT itself.
	ctx := context.WithoutCancel(r.Context())
	a := req.Attempt()
	if req.Success == nil || *req.Success {
		// Only a login that may succeed needs a device to teach; a
		// reported failure is no reason to sign one.
		a.Device, _ = s.gate.Device(a.Device)
	}
	if req.Success != nil {
		d := s.gate.Record(ctx, a, *req.Success)
		s.respondDevice(w, d, "", *req.Success, a.Device)
		return nil
	}
	t, d := s.gate.Begin(ctx, a)
	if t == nil || !d.Allowed {
		s.respond(w, d, "")
		return nil
	}
	s.respond(w, d, s.tokens.Issue(a, t.Token(), s.ttl))
	return nil
}

// outcome answers POST /v1/attempts/{token}: settles a two-phase attempt.
func (s *Server) outcome(w http.ResponseWriter, r *http.Request) error {
	tk, err := s.tokens.Open(r.PathValue("token"))
	if err != nil {
		return s.tokenError(err)
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	req, err := DecodeOutcome(body)
	if err != nil {
		return err
	}
	if err := s.tokens.Use(tk); err != nil {
		return s.tokenError(err)
	}
	// When the store is late, the gate's fail mode decides (Degraded or
	// Unavailable), and the outcome waits in its backlog for the store.
	d := s.gate.Resume(tk.Attempt, tk.Charge).Finish(context.WithoutCancel(r.Context()), req.Success)
	s.respondDevice(w, d, "", req.Success, tk.Attempt.Device)
	return nil
}

// respondDevice is respond, with the client's device token after a
// success that was let through.
func (s *Server) respondDevice(w http.ResponseWriter, d gate.Decision, token string, success bool, device string) {
	if !success || !d.Allowed {
		device = ""
	}
	s.write(w, d, token, device)
}

func (s *Server) tokenError(err error) error {
	switch {
	case errors.Is(err, ErrTokenExpired):
		s.m.tokenErrors.WithLabelValues("expired").Inc()
		return &requestError{status: http.StatusGone, msg: err.Error()}
	case errors.Is(err, ErrTokenUsed):
		s.m.tokenErrors.WithLabelValues("used").Inc()
		return &requestError{status: http.StatusConflict, msg: err.Error()}
	}
	s.m.tokenErrors.WithLabelValues("invalid").Inc()
	return &requestError{status: http.StatusBadRequest, msg: ErrTokenInvalid.Error() + ": not issued by this service, altered, or signed with another DEFENDER_TOKEN_SECRET"}
}

// respond writes a decision: 503 if the store is down and the gate fails
// closed, 429 if blocked, else 200.
func (s *Server) respond(w http.ResponseWriter, d gate.Decision, token string) {
	s.write(w, d, token, "")
}

func (s *Server) write(w http.ResponseWriter, d gate.Decision, token, device string) {
	res := Response{Device: device,
		Allowed: d.Allowed, BlockedBy: d.BlockedBy, Permanent: d.Permanent,
		IPFailures: d.IPFailures, UsernameFailures: d.UsernameFailures, PairFailures: d.PairFailures,
		LastChance: d.LastChance, Degraded: d.Degraded, Unavailable: d.Unavailable, Observed: d.Observed,
	}
	if res.BlockedBy == nil {
		res.BlockedBy = []gate.Kind{}
	}
	status := http.StatusOK
	switch {
	case d.Unavailable:
		status = http.StatusServiceUnavailable
		res.Allowed = false
		res.Error = "store unavailable (DEFENDER_FAIL_MODE=closed)"
		w.Header().Set("Retry-After", strconv.Itoa(d.RetryAfterSeconds()))
	case !d.Allowed:
		status = http.StatusTooManyRequests
		res.Reason = string(d.Reason)
		if res.Reason == "" {
			res.Reason = string(gate.ReasonAuto)
		}
		if !d.Permanent {
			res.RetryAfter = int64(d.RetryAfterSeconds())
			w.Header().Set("Retry-After", strconv.FormatInt(res.RetryAfter, 10))
		}
	case token != "":
		res.Token = token
		res.ExpiresIn = int64(s.ttl / time.Second)
	}
	writeJSON(w, status, res)
}

// healthz answers 200 when the store answers, else 503.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if s.health != nil {
		if err := s.health(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// serverMetrics are the service's own metrics (the gate and the event
// publisher register theirs).
type serverMetrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	tokenErrors *prometheus.CounterVec
	panics      prometheus.Counter
}

func newServerMetrics(reg prometheus.Registerer) (*serverMetrics, error) {
	m := &serverMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate_http", Name: "requests_total",
			Help: "Decision requests answered, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "defender", Subsystem: "gate_http", Name: "request_duration_seconds",
			Help:    "Time to answer decision requests, by route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "defender", Subsystem: "gate_http", Name: "in_flight_requests",
			Help: "Decision requests being handled now.",
		}),
		tokenErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate_http", Name: "token_rejections_total",
			Help: "Two-phase tokens refused, by reason (invalid, expired, used).",
		}, []string{"reason"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate_http", Name: "panics_total",
			Help: "Requests whose handler panicked (answered 500).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight, m.tokenErrors, m.panics} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("gatesvc metrics: %w", err)
			}
		}
	}
	return m, nil
}
