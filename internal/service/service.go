// Package service holds what defender's binaries (cmd/gate, cmd/recorder,
// cmd/admin) do alike around their own work: their logger and metrics
// registry, stopping at SIGINT or SIGTERM, and an HTTP server run until
// then and shut down gracefully.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Logger returns a service's logger: JSON lines on w from level up, each
// with service=name. Durations are written as Go durations ("5m0s"), as
// the settings take them and a text log shows them, not as nanoseconds.
func Logger(w io.Writer, level slog.Leveler, name string) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: durationString})).With("service", name)
}

// durationString writes a duration attribute as its String.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// PrintfLogger is a slog.Logger as the Printf(ctx, format, args...)
// logger that some libraries write through (go-redis's redis.SetLogger).
// Left to their default, they print plain-text lines on stderr, among the
// service's JSON lines, which a log pipeline parsing JSON then mangles or
// drops (go-redis's "failed to dial" while Redis is away, the lines an
// operator needs then).
type PrintfLogger struct {
	// Log receives the lines.
	Log *slog.Logger
	// Level is the level of every line.
	Level slog.Level
}

// Printf logs the formatted message at l.Level.
func (l PrintfLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	l.Log.Log(ctx, l.Level, fmt.Sprintf(format, v...))
}

// Registry returns a Prometheus registry holding the Go runtime and
// process collectors, for a service's /metrics.
func Registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// SignalContext returns a copy of parent that is done at the first SIGINT
// or SIGTERM. Further ones are ignored until stop releases the signals:
// a shutdown, bounded by its own timeouts, is not cut short by a second
// signal. SIGKILL ends a process that must not wait.
func SignalContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// Listen listens on DEFENDER_HTTP_ADDR's address; the error names the
// variable.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("DEFENDER_HTTP_ADDR: %w", err)
	}
	return ln, nil
}

// NewServer returns an http.Server for h with what every service wants:
// request headers within 10 s, idle connections closed after 2 min, the
// server's own errors logged at warn. Tighten it further as h needs.
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// ErrShutdownTimeout is returned by HTTP.Run when requests were still in
// flight at the shutdown deadline, and their connections were closed.
var ErrShutdownTimeout = errors.New("requests still in flight at the shutdown deadline")

// HTTP is an HTTP server that serves until its context ends, then shuts
// down gracefully.
type HTTP struct {
	// Server serves; its RegisterOnShutdown functions run when the
	// shutdown starts (to end long-lived responses such as event streams,
	// which the shutdown would otherwise wait for).
	Server *http.Server
	// Listener is where it serves (see Listen).
	Listener net.Listener
	// Timeout bounds the shutdown: the draining of requests in flight,
	// then Drained.
	Timeout time.Duration
	// Drained, if set, runs once the requests have drained (or were cut
	// off), with what is left of Timeout: to close what the handlers used.
	Drained func(ctx context.Context)
	// Log tells when the shutdown starts (slog.Default() when nil).
	Log *slog.Logger
}

// Run serves until ctx ends, then stops accepting connections, waits up
// to Timeout for the requests in flight and runs Drained. It returns nil
// after a graceful shutdown, an error wrapping ErrShutdownTimeout if it
// had to close connections with requests in flight, or the server's own
// failure to serve.
func (h HTTP) Run(ctx context.Context) error {
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	served := make(chan error, 1)
	go func() { served <- h.Server.Serve(h.Listener) }()
	select {
	case err := <-served:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining requests", "timeout", h.Timeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.Timeout)
	defer cancel()
	var err error
	if serr := h.Server.Shutdown(sctx); serr != nil {
		_ = h.Server.Close()
		err = fmt.Errorf("http shutdown: %w (%w)", ErrShutdownTimeout, serr)
	}
	<-served
	if h.Drained != nil {
		h.Drained(sctx)
	}
	return err
}

// Health is a service's /healthz: 503 "starting: waiting for <what>"
// until Ready, then 200 "ok" for as long as the process lives (outages
// of the servers it uses are retried and logged; a restart would not
// help). Compose and scripts/stack.sh start what depends on a service
// once it answers 200.
type Health struct{ waiting atomic.Pointer[string] }

// WaitFor says what the service waits for now.
func (h *Health) WaitFor(what string) { h.waiting.Store(&what) }

// Ready makes /healthz answer 200.
func (h *Health) Ready() { h.waiting.Store(nil) }

func (h *Health) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if what := h.waiting.Load(); what != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "starting: waiting for %s\n", *what)
		return
	}
	fmt.Fprintln(w, "ok")
}
