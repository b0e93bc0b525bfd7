package main_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// TestLogsAreJSONWhileRedisIsAway: every line the gate writes is a JSON
// object, also go-redis's own complaints about the Redis it cannot dial
// (they were plain text, "redis: 2026/01/02 pool.go:770: ...", which a log
// pipeline parsing JSON mangles at the moment the operator needs them).
func TestLogsAreJSONWhileRedisIsAway(t *testing.T) {
	t.Parallel()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	redisURL := "redis://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) + "/0" // nothing listens
	p := spawnGate(t, addr, []string{
		"DEFENDER_NATS_LISTEN=127.0.0.1:0",
		"DEFENDER_NATS_STORE_DIR=" + t.TempDir(),
		"DEFENDER_TOKEN_SECRET=test-secret-0123456789",
		"DEFENDER_REDIS_URL=" + redisURL,
		"DEFENDER_REDIS_TIMEOUT=2s",
	})

	require.Eventually(t, func() bool {
		resp, err := http.Get(p.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	}, 60*time.Second, 50*time.Millisecond, "the gate serves, and says Redis is down\n%s", p.out)
	r := p.attempt(t, "203.0.113.90", "alice", false)
	assert.Equal(t, true, r.Body["degraded"], r.Raw)
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), "failed to dial") },
		60*time.Second, 50*time.Millisecond, "go-redis reports its failed dials\n%s", p.out)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.wait(t), p.out.String())
	dials := 0
	for _, line := range strings.Split(strings.TrimSpace(p.out.String()), "\n") {
		var rec map[string]any
		if !assert.NoError(t, json.Unmarshal([]byte(line), &rec), "not a JSON line: %s", line) {
			continue
		}
		assert.Equal(t, "defender-gate", rec["service"], line)
		if msg, _ := rec["msg"].(string); strings.Contains(msg, "failed to dial") {
			dials++
			assert.Equal(t, "redis", rec["component"], line)
			assert.Equal(t, "WARN", rec["level"], line)
		}
	}
	assert.Positive(t, dials, "go-redis's failed dials are logged")
}

// TestSignalWhileNATSIsAwaited: SIGTERM while the gate waits for its NATS
// server at start stops it as asked, with exit status 0 (it exited 1 with
// an error "context canceled", which an orchestrator counts as a crash).
func TestSignalWhileNATSIsAwaited(t *testing.T) {
	t.Parallel()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	p := spawnGate(t, addr, []string{
		"DEFENDER_NATS_URL=nats://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), // nothing listens
		"DEFENDER_TOKEN_SECRET=test-secret-0123456789",
	})
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), "nats connect failed") },
		60*time.Second, 20*time.Millisecond, "the gate waits for NATS\n%s", p.out)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.wait(t), p.out.String())
	assert.NotContains(t, p.out.String(), `"level":"ERROR"`)
}
