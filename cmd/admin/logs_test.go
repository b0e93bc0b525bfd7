package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// TestRedisLogsInTheServiceLog: go-redis's own lines (its failed dials
// while Redis is away) go to the admin's JSON log, not as plain text
// ("redis: 2026/01/02 pool.go:770: ...") straight to the process's stderr.
func TestRedisLogsInTheServiceLog(t *testing.T) {
	env := map[string]string{
		"DEFENDER_REDIS_URL":      "redis://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) + "/0", // nothing listens
		"DEFENDER_ADMIN_PASSWORD": testPassword,
		"DEFENDER_HTTP_ADDR":      "127.0.0.1:0",
	}
	code, _, stderr := runCLI(t, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "serve")
	assert.Equal(t, 1, code, stderr)
	dials := logRecords(stderr, "failed to dial")
	for _, rec := range dials {
		assert.Equal(t, "redis", rec["component"], rec)
		assert.Equal(t, "defender-admin", rec["service"], rec)
	}
	assert.NotEmpty(t, dials, "go-redis's failed dials are in the admin's log:\n%s", stderr)
}

// TestNATSLogsInTheServiceLog: the NATS connection's lines (why it cannot
// connect) are in the admin's JSON log, with service=defender-admin; they
// went to slog's default logger, plain text without the service. The
// error at the end names DEFENDER_NATS_URL.
func TestNATSLogsInTheServiceLog(t *testing.T) {
	r := testenv.Redis(t)
	env := map[string]string{
		"DEFENDER_REDIS_URL":      r.URL,
		"DEFENDER_NATS_URL":       "nats://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), // nothing listens
		"DEFENDER_ADMIN_PASSWORD": testPassword,
		"DEFENDER_HTTP_ADDR":      "127.0.0.1:0",
	}
	code, _, stderr := runCLI(t, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "serve")
	assert.Equal(t, 1, code, stderr)
	assert.Contains(t, stderr, "admin: DEFENDER_NATS_URL: ")
	refused := logRecords(stderr, "nats connect failed")
	for _, rec := range refused {
		assert.Equal(t, "defender-admin", rec["service"], rec)
		assert.Equal(t, "nats", rec["component"], rec)
	}
	assert.NotEmpty(t, refused, "the NATS connection's failures are in the admin's log:\n%s", stderr)
}

// logRecords are the JSON log lines of stderr whose message contains
// msgPart; lines that are not JSON (the closing "admin: ..." error) are
// skipped.
func logRecords(stderr, msgPart string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(stderr, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if msg, _ := rec["msg"].(string); strings.Contains(msg, msgPart) {
			out = append(out, rec)
		}
	}
	return out
}

// TestSignalWhileNATSIsAwaited: SIGTERM while the admin waits for its NATS
// server at start stops it as asked, with exit status 0 (it exited 1,
// "admin: ... context canceled", which an orchestrator counts as a crash).
func TestSignalWhileNATSIsAwaited(t *testing.T) {
	r := testenv.Redis(t)
	env := map[string]string{
		"DEFENDER_REDIS_URL":      r.URL,
		"DEFENDER_NATS_URL":       "nats://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), // nothing listens
		"DEFENDER_ADMIN_PASSWORD": testPassword,
		"DEFENDER_HTTP_ADDR":      "127.0.0.1:0",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testenv.SyncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"serve"}, &stdout, &stderr, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}()
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "nats connect failed") },
		60*time.Second, 20*time.Millisecond, "the admin waits for NATS\n%s", &stderr)
	cancel() // as SIGTERM does
	assert.Equal(t, 0, <-code, stderr.String())
	assert.NotContains(t, stderr.String(), `"level":"ERROR"`)
}
