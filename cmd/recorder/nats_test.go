package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// TestRecorderRefusedByNATS: a NATS server that refuses the recorder's
// credentials stops it with exit status 1 and a log line naming
// DEFENDER_NATS_URL and the refusal, without the password. It waited
// for ever, saying nothing, with /healthz answering ok.
func TestRecorderRefusedByNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the recorder with servers")
	}
	port := testenv.NATSWithUser(t, "recorder", "right-password").Server.Addr().(*net.TCPAddr).Port

	logPath := filepath.Join(t.TempDir(), "recorder.log")
	p := startRecorder(t, []string{
		fmt.Sprintf("DEFENDER_NATS_URL=nats://recorder:wrong-password@127.0.0.1:%d", port),
		"DEFENDER_CLICKHOUSE_URL=clickhouse://127.0.0.1:1/defender",
		"DEFENDER_HTTP_ADDR=127.0.0.1:0",
	}, logPath)
	p.exited(t, 2*time.Minute, "the recorder still waits for NATS")
	b, err := os.ReadFile(logPath)
	require.NoError(t, err)
	assert.Equal(t, 1, p.cmd.ProcessState.ExitCode(), "%s", b)
	assert.Contains(t, string(b), "DEFENDER_NATS_URL")
	assert.Contains(t, string(b), "Authorization Violation")
	assert.NotContains(t, string(b), "wrong-password")
}
