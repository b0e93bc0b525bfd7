package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify"
	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// notifierBin is the cmd/notifier binary built once by TestMain ("" in
// -short mode).
var notifierBin string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithCommands(m, func(dir string) { notifierBin = filepath.Join(dir, "notifier") },
		"github.com/defender-go/defender/cmd/notifier"))
}

// proc is the notifier running as a child process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startNotifier runs the binary with env and waits until it is healthy
// (consuming).
func startNotifier(t *testing.T, env []string) *proc {
	t.Helper()
	port := testenv.FreePort(t)
	logPath := filepath.Join(t.TempDir(), "notifier.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	defer logf.Close()
	cmd := exec.Command(notifierBin)
	cmd.Env = append(os.Environ(), append(env, "DEFENDER_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port))...)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("notifier log:\n%s", b)
		}
	})
	require.Eventually(t, func() bool {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "the notifier consumes")
	return p
}

// world is NATS with the stream, an SMTP server and the site's lookup
// (user N is userN@example.com), and the notifier's environment for them.
type world struct {
	js   jetstream.JetStream
	smtp *testenv.SMTPServer
	env  []string
}

func newWorld(t *testing.T, smtp testenv.SMTPOptions) *world {
	t.Helper()
	if notifierBin == "" {
		t.Skip("needs the notifier binary (not built with -short)")
	}
	ns := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, js, err := events.Connect(ctx, ns.URL, "notifier-test")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	_, err = events.EnsureStream(ctx, js, events.StreamConfig{})
	require.NoError(t, err)
	lookup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"email": r.URL.Query().Get("username") + "@example.com"})
	}))
	t.Cleanup(lookup.Close)
	w := &world{js: js, smtp: testenv.SMTP(t, smtp)}
	w.env = []string{
		"DEFENDER_NATS_URL=" + ns.URL,
		"DEFENDER_SMTP_HOST=" + w.smtp.Host, "DEFENDER_SMTP_PORT=" + strconv.Itoa(w.smtp.Port), "DEFENDER_SMTP_TLS=none",
		"DEFENDER_MAIL_FROM=Defender <no-reply@example.com>",
		"DEFENDER_MAIL_LOOKUP_URL=" + lookup.URL + "/email?username={username}",
		"DEFENDER_NOTIFY_ACK_WAIT=3s",
	}
	return w
}

// block publishes a block of username as a gate does.
func (w *world) block(t *testing.T, user string) {
	t.Helper()
	b := events.NewBlock(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindUsername, Subject: user, Blocked: true,
		Until: time.Now().Add(5 * time.Minute), Failures: 4, Reason: gate.ReasonAuto, IP: "203.0.113.9"}, "test")
	data, err := b.Encode()
	require.NoError(t, err)
	_, err = w.js.Publish(context.Background(), b.NATSSubject(events.Subjects{}), data)
	require.NoError(t, err)
}

// settled waits until the notifiers have acknowledged every block event.
func (w *world) settled(t *testing.T, within time.Duration) {
	t.Helper()
	testenv.ConsumerDone(t, w.js, events.StreamName, notify.DefaultDurable, within)
}

// byUser groups the received mails by recipient.
func (w *world) byUser() map[string][]testenv.SMTPMessage {
	out := map[string][]testenv.SMTPMessage{}
	for _, m := range w.smtp.Messages() {
		out[strings.Join(m.To, ",")] = append(out[strings.Join(m.To, ",")], m)
	}
	return out
}

// TestKilledWhileSending: a notifier SIGKILLed with mails in flight loses
// none; another instance takes over, and only the mails that were in
// flight may go twice, with the same Message-ID.
func TestKilledWhileSending(t *testing.T) {
	t.Parallel()
	w := newWorld(t, testenv.SMTPOptions{DataDelay: 300 * time.Millisecond})
	first := startNotifier(t, w.env)
	const users = 20
	for i := range users {
		w.block(t, "user"+strconv.Itoa(i))
	}
	require.Eventually(t, func() bool { return len(w.smtp.Messages()) >= 3 }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	<-first.done
	// Sent but not acknowledged by the server when the process died.
	inFlight := w.smtp.MailCommands() - len(w.smtp.Messages())
	startNotifier(t, w.env)
	w.settled(t, 90*time.Second)

	mails := w.byUser()
	require.Len(t, mails, users, "every blocked user is mailed")
	twice := 0
	for to, ms := range mails {
		require.LessOrEqual(t, len(ms), 2, to)
		if len(ms) == 2 {
			twice++
			assert.Equal(t, ms[0].Header("Message-Id"), ms[1].Header("Message-Id"), "%s: a repeat has the same Message-ID", to)
		}
	}
	t.Logf("%d mails in flight at the kill, %d users mailed twice", inFlight, twice)
	assert.LessOrEqual(t, twice, max(inFlight, 0)+1, "only what was in flight repeats (%d in flight)", inFlight)
}

// TestSMTPDown30s: mails wait while the SMTP server is away for 30 s, and
// go out, once each, when it returns.
func TestSMTPDown30s(t *testing.T) {
	t.Parallel()
	w := newWorld(t, testenv.SMTPOptions{})
	w.smtp.Stop()
	startNotifier(t, w.env)
	w.block(t, "frank")
	w.block(t, "grace")
	time.Sleep(30 * time.Second)
	assert.Empty(t, w.smtp.Messages())
	w.smtp.Start()
	w.settled(t, 90*time.Second)
	mails := w.byUser()
	assert.Len(t, mails["frank@example.com"], 1)
	assert.Len(t, mails["grace@example.com"], 1)
}
