package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// TestHealthzWaitsUntilRecording: while ClickHouse cannot be reached the
// recorder's /healthz answers 503 and says what it waits for. Compose and
// scripts/stack.sh start the admin once the recorder is healthy, as the
// recorder creates the schema the admin reads; it answered ok from the
// first moment. (Once recording, /healthz answers 200: see
// TestRecorderProcessKilled.)
func TestHealthzWaitsUntilRecording(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the recorder with servers")
	}
	ns := testenv.NATS(t)
	logPath := filepath.Join(t.TempDir(), "recorder.log")
	p := startRecorder(t, []string{
		"DEFENDER_NATS_URL=" + ns.URL,
		"DEFENDER_CLICKHOUSE_URL=clickhouse://127.0.0.1:1/defender",
		"DEFENDER_HTTP_ADDR=127.0.0.1:0",
	}, logPath)
	url := "http://" + listenAddr(t, logPath) + "/healthz"
	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "ClickHouse")
	}, 30*time.Second, 50*time.Millisecond, "last answer: %q", body)
	assert.Contains(t, body, "starting: waiting for ClickHouse")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	p.exited(t, 30*time.Second, "the recorder did not stop on SIGTERM while waiting for ClickHouse")
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode())
}
