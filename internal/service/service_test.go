package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/service"
)

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	log := service.Logger(&buf, slog.LevelWarn, "defender-test")
	log.Info("hidden")
	log.Warn("shown", "ip", "192.0.2.1")
	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line), buf.String())
	assert.Equal(t, "shown", line["msg"])
	assert.Equal(t, "defender-test", line["service"])
	assert.Equal(t, "192.0.2.1", line["ip"])
}

// Durations are logged as Go durations, as the settings take them, in
// plain attributes, groups, loggers' own attributes and values that
// resolve to a duration.
func TestLoggerWritesDurationsAsStrings(t *testing.T) {
	var buf bytes.Buffer
	log := service.Logger(&buf, slog.LevelInfo, "defender-test").With("cooloff", 5*time.Minute)
	log.Info("blocked", "duration", 300*time.Second, slog.Group("store", slog.Duration("timeout", 100*time.Millisecond)),
		"retry", durationValuer(90*time.Second), "count", 3)
	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line), buf.String())
	assert.Equal(t, "5m0s", line["duration"])
	assert.Equal(t, "5m0s", line["cooloff"])
	assert.Equal(t, map[string]any{"timeout": "100ms"}, line["store"])
	assert.Equal(t, "1m30s", line["retry"])
	assert.Equal(t, float64(3), line["count"], "other numbers stay numbers")
}

type durationValuer time.Duration

func (d durationValuer) LogValue() slog.Value { return slog.DurationValue(time.Duration(d)) }

func TestRegistry(t *testing.T) {
	families, err := service.Registry().Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	assert.True(t, names["go_goroutines"])
	assert.True(t, names["process_start_time_seconds"])
}

func TestSignalContext(t *testing.T) {
	ctx, stop := service.SignalContext(context.Background())
	defer stop()
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not end the context")
	}
}

func TestListenNamesTheVariable(t *testing.T) {
	ln, err := service.Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, err = service.Listen(ln.Addr().String())
	require.ErrorContains(t, err, "DEFENDER_HTTP_ADDR")
}

// answered counts the requests the test handler has answered.
var answered atomic.Int32

// server runs h until the returned cancel, with one handler that answers
// after release is closed (or at once when release is nil).
func server(t *testing.T, timeout time.Duration, release chan struct{}, drained func(context.Context)) (url string, started chan struct{}, cancel context.CancelFunc, done chan error) {
	t.Helper()
	ln, err := service.Listen("127.0.0.1:0")
	require.NoError(t, err)
	started = make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		if release != nil {
			<-release
		}
		_, _ = io.WriteString(w, "done")
		answered.Add(1)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan error, 1)
	h := service.HTTP{Server: &http.Server{Handler: mux}, Listener: ln, Timeout: timeout, Drained: drained,
		Log: slog.New(slog.DiscardHandler)}
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(cancel)
	return "http://" + ln.Addr().String(), started, cancel, done
}

// get requests url in the background.
func get(url string) chan string {
	out := make(chan string, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- string(b)
	}()
	return out
}

// A request in flight at shutdown is answered; then Drained runs, with a
// deadline, and Run returns nil.
func TestHTTPDrainsRequestsInFlight(t *testing.T) {
	release := make(chan struct{})
	before := answered.Load()
	var answeredFirst, deadline bool
	url, started, cancel, done := server(t, 10*time.Second, release, func(ctx context.Context) {
		answeredFirst = answered.Load() == before+1
		_, deadline = ctx.Deadline()
	})
	answer := get(url)
	<-started
	cancel()
	time.Sleep(50 * time.Millisecond) // the shutdown has begun and waits
	close(release)
	require.NoError(t, <-done)
	assert.Equal(t, "done", <-answer)
	assert.True(t, answeredFirst, "the request was answered before Drained ran")
	assert.True(t, deadline)
}

// A request still running at the deadline has its connection closed, and
// Run says so.
func TestHTTPShutdownTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	url, started, cancel, done := server(t, 100*time.Millisecond, release, nil)
	answer := get(url)
	<-started
	cancel()
	err := <-done
	require.ErrorIs(t, err, service.ErrShutdownTimeout)
	assert.Contains(t, <-answer, "error")
}

// A server that cannot serve returns at once.
func TestHTTPServeFailure(t *testing.T) {
	ln, err := service.Listen("127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	err = service.HTTP{Server: &http.Server{}, Listener: ln, Timeout: time.Second}.Run(context.Background())
	require.ErrorContains(t, err, "http: ")
}

func TestNewServer(t *testing.T) {
	h := http.NotFoundHandler()
	s := service.NewServer(h, slog.New(slog.DiscardHandler))
	assert.NotNil(t, s.Handler)
	assert.Equal(t, 10*time.Second, s.ReadHeaderTimeout)
	assert.Equal(t, 2*time.Minute, s.IdleTimeout)
	assert.NotNil(t, s.ErrorLog)
}
