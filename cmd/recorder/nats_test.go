package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
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

// TestRecorderRefusesOldNATS: on Debian bookworm's nats-server (2.9) the
// recorder exits with status 1 within seconds, logging one line that
// names the server's version and the one it needs, without the password,
// and creates nothing on the server. It retried its consumer for ever,
// logging "multiple consumer filter subjects not supported by
// nats-server". Whether NATS is up before the recorder or comes later,
// the version is checked once connected.
func TestRecorderRefusesOldNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the recorder with servers")
	}
	for _, recorderFirst := range []bool{false, true} {
		name := "NATS first"
		if recorderFirst {
			name = "recorder first"
		}
		t.Run(name, func(t *testing.T) {
			port := testenv.FreePort(t)
			startNATS := func() *testenv.NATSProcess {
				return testenv.RunNATSOn(t, testenv.DebianNATS, port, "--user", "recorder", "--pass", "secret-pw")
			}
			var old *testenv.NATSProcess
			if !recorderFirst {
				old = startNATS()
			}
			logPath := filepath.Join(t.TempDir(), "recorder.log")
			p := startRecorder(t, []string{
				fmt.Sprintf("DEFENDER_NATS_URL=nats://recorder:secret-pw@127.0.0.1:%d", port),
				"DEFENDER_CLICKHOUSE_URL=clickhouse://127.0.0.1:1/defender",
				"DEFENDER_HTTP_ADDR=127.0.0.1:0",
			}, logPath)
			if recorderFirst {
				listenAddr(t, logPath) // it is up, waiting for NATS
				old = startNATS()
			}
			p.exited(t, 15*time.Second, "the recorder still runs on an old NATS")
			b, err := os.ReadFile(logPath)
			require.NoError(t, err)
			log := string(b)
			assert.Equal(t, 1, p.cmd.ProcessState.ExitCode(), "%s", log)
			var errLines []string
			for line := range strings.Lines(log) {
				if strings.Contains(line, `"level":"ERROR"`) {
					errLines = append(errLines, line)
				}
			}
			require.Len(t, errLines, 1, "%s", log)
			assert.Contains(t, errLines[0], "DEFENDER_NATS_URL: NATS server "+old.Version+" at nats://xxxxx@127.0.0.1:")
			assert.Contains(t, errLines[0], "is too old: defender's recorder needs 2.10 or later")
			assert.Contains(t, errLines[0], "go install github.com/nats-io/nats-server/v2@")
			assert.NotContains(t, log, "secret-pw")
			assert.NotContains(t, log, "cannot create consumer")

			nc, err := nats.Connect(old.URL, nats.UserInfo("recorder", "secret-pw"))
			require.NoError(t, err)
			defer nc.Close()
			js, err := jetstream.New(nc)
			require.NoError(t, err)
			_, err = js.Stream(t.Context(), events.StreamName)
			assert.ErrorIs(t, err, jetstream.ErrStreamNotFound, "the recorder created nothing on the old server")
		})
	}
}
