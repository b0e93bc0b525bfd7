package main

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/internal/service"
	"github.com/defender-go/defender/pkg/gate"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Server is the admin's web UI and JSON API.
type Server struct {
	gate    *gate.Gate
	hist    *History
	live    *Live // nil without NATS
	dead    func(context.Context) ([]webhook.DeadLetter, error)
	log     *slog.Logger
	csrf    string
	user    string
	pages   map[string]*template.Template
	reg     *prometheus.Registry
	guard   *authGuard
	handler http.Handler
	now     func() time.Time

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	actions  *prometheus.CounterVec
}

// ServerOptions are what a Server is built from.
type ServerOptions struct {
	Gate    *gate.Gate
	History *History
	Live    *Live // optional
	// DeadLetters reads the notifier's webhook calls given up on
	// (optional: without NATS there are none to read).
	DeadLetters func(context.Context) ([]webhook.DeadLetter, error)
	User        string
	Password    string
	Logger      *slog.Logger
	// Registry serves /metrics; the server registers its own metrics there.
	Registry *prometheus.Registry
}

// NewServer builds the handler tree.
func NewServer(o ServerOptions) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	s := &Server{
		gate: o.Gate, hist: o.History, live: o.Live, dead: o.DeadLetters, log: o.Logger, reg: o.Registry, user: o.User,
		csrf: csrfToken(o.User, o.Password), now: time.Now,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "defender_admin_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "defender_admin_http_request_duration_seconds", Help: "HTTP request duration by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "defender_admin_actions_total", Help: "Blocks and unblocks made through the admin, by kind.",
		}, []string{"action", "kind"}),
	}
	for _, c := range []prometheus.Collector{s.requests, s.duration, s.actions} {
		if err := s.reg.Register(c); err != nil {
			return nil, err
		}
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s.pages = pages

	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))

	mux.HandleFunc("GET /api/v1/blocked", s.apiBlocked)
	mux.HandleFunc("POST /api/v1/blocked", s.apiBlock)
	mux.HandleFunc("DELETE /api/v1/blocked/{kind}/{value...}", s.apiUnblock)
	mux.HandleFunc("GET /api/v1/attempts", s.apiAttempts)
	mux.HandleFunc("GET /api/v1/stats/attempts", s.apiStatsAttempts)
	mux.HandleFunc("GET /api/v1/stats/blocks", s.apiStatsBlocks)
	mux.HandleFunc("GET /api/v1/stats/top", s.apiStatsTop)
	mux.HandleFunc("GET /api/v1/events", s.events)
	mux.HandleFunc("GET /api/v1/notifier/dead-letters", s.apiDeadLetters)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint")
	})

	mux.HandleFunc("GET /{$}", s.pageDashboard)
	mux.HandleFunc("GET /blocked", s.pageBlocked)
	mux.HandleFunc("POST /blocked/unblock", s.formUnblock)
	mux.HandleFunc("POST /blocked/block", s.formBlock)
	mux.HandleFunc("GET /attempts", s.pageAttempts)
	for _, k := range gate.Kinds { // /ip/..., /username/..., /spray_net/...
		mux.HandleFunc("GET /"+string(k)+"/{value...}", s.pageSubject(k))
	}
	mux.HandleFunc("GET /search", s.search)
	mux.HandleFunc("GET /notifier", s.pageNotifier)

	var proxy gate.Config
	if o.Gate != nil {
		proxy = o.Gate.Config()
	}
	guard, err := newAuthGuard(proxy, s.reg, s.log)
	if err != nil {
		return nil, err
	}
	s.guard = guard
	var h http.Handler = mux
	h = s.instrument(h)
	h = newCSRF(s.csrf, h)
	h = newBasicAuth(o.User, o.Password, guard, h)
	h = securityHeaders(h)
	s.handler = h
	return s, nil
}

// Close releases what the server holds (its password guard).
func (s *Server) Close() { s.guard.close() }

// ServeHTTP serves the admin.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// instrument counts requests by route pattern and status.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &service.StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		s.requests.WithLabelValues(route, strconv.Itoa(cmp.Or(sw.Status, http.StatusOK))).Inc()
		s.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// healthz answers 200 when Redis answers; ClickHouse and NATS are reported
// but do not fail it (the blocked list and unblocking work without them).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := map[string]string{"redis": "ok", "clickhouse": "ok", "nats": "off"}
	code := http.StatusOK
	if _, err := s.gate.Blocked(ctx, gate.KindIP, 1); err != nil {
		status["redis"], code = err.Error(), http.StatusServiceUnavailable
	}
	if s.hist == nil {
		status["clickhouse"] = "off"
	} else if err := s.hist.Ping(ctx); err != nil {
		status["clickhouse"] = err.Error()
	}
	if s.live != nil {
		status["nats"] = s.live.Status()
	}
	writeJSON(w, code, status)
}

// writeJSON writes v as JSON with the status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

// apiError is the body of every API error.
type apiError struct {
	Error string `json:"error"`
}

// writeError writes {"error": msg} with the status code.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

// writeJSONTo writes v as indented JSON (CLI --json).
func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
