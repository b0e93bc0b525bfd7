package reliability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/gatesvc"
	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
)

// bins are the cmd/gate, cmd/recorder and example login site binaries
// TestMain builds ("" in -short mode).
var bins struct{ gate, recorder, loginapp string }

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithCommands(m, func(dir string) {
		bins.gate, bins.recorder = filepath.Join(dir, "gate"), filepath.Join(dir, "recorder")
		bins.loginapp = filepath.Join(dir, "loginapp")
	}, "github.com/defender-go/defender/cmd/gate", "github.com/defender-go/defender/cmd/recorder",
		"github.com/defender-go/defender/examples/loginapp"))
}

// needServers skips t in -short mode, or when a server it needs is not
// installed ("redis-server", "clickhouse"). CI installs them (.ci/run).
func needServers(t *testing.T, servers ...string) {
	t.Helper()
	if testing.Short() || bins.gate == "" {
		t.Skip("-short: not starting servers and processes")
	}
	for _, s := range servers {
		switch s {
		case "redis-server":
			if _, err := exec.LookPath("redis-server"); err != nil {
				t.Skip("SKIPPED: redis-server is not installed (Debian package redis-server; CI installs it, see .ci/run)")
			}
		case "clickhouse":
			if !haveClickHouse() {
				t.Skip("SKIPPED: clickhouse-server is not installed (Debian package clickhouse-server; CI installs it, see .ci/run)")
			}
		default:
			t.Fatalf("unknown server %q", s)
		}
	}
}

// haveClickHouse looks for the server where testenv does.
func haveClickHouse() bool {
	for _, name := range []string{"clickhouse-server", "clickhouse"} {
		if _, err := exec.LookPath(name); err == nil {
			return true
		}
	}
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// proc is a child process (a gate or a recorder) with its output in a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startProc starts bin with env over the caller's environment stripped of
// DEFENDER_ variables, appending its output to logPath. The process is
// stopped (SIGTERM, then SIGKILL after 20 s) when the test ends, and its
// output shown if the test failed.
func startProc(t *testing.T, name, bin, logPath string, env []string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	defer f.Close()
	cmd := exec.Command(bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEFENDER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start(), "start %s", name)
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		start := time.Now()
		p.stop()
		if d := time.Since(start); d > 2*time.Second {
			t.Logf("%s took %s to stop", name, d.Round(time.Millisecond))
		}
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("%s output (last 4 KiB):\n%s", name, tail(out, 4096))
		}
	})
	return p
}

// kill stops the process at once (SIGKILL), as a crash would.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits, killing the process after 20 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.kill()
	}
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// tokenSecret is shared by the gates of a test, so a token issued by one
// is accepted by any.
const tokenSecret = "DEFENDER_TOKEN_SECRET=reliability-test-secret-0123456789"

// gateProc is a cmd/gate process.
type gateProc struct {
	*proc
	URL string
}

// startGate starts cmd/gate on a free port with env (at least
// DEFENDER_NATS_URL and DEFENDER_REDIS_URL) and waits until /healthz
// answers 200.
func startGate(t *testing.T, name string, env ...string) *gateProc {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	full := append([]string{
		"DEFENDER_HTTP_ADDR=" + addr,
		"DEFENDER_GATE_NAME=" + name,
		"DEFENDER_LOG_LEVEL=warn",
		tokenSecret,
	}, env...)
	g := &gateProc{
		proc: startProc(t, name, bins.gate, filepath.Join(t.TempDir(), name+".log"), full),
		URL:  "http://" + addr,
	}
	require.Eventually(t, func() bool {
		if g.exited() {
			return true
		}
		resp, err := http.Get(g.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "%s never healthy", name)
	require.False(t, g.exited(), "%s exited at start", name)
	return g
}

// startRecorder starts cmd/recorder with env, appending to logPath (a
// restart keeps one log).
func startRecorder(t *testing.T, logPath string, env ...string) *proc {
	t.Helper()
	return startProc(t, "recorder", bins.recorder, logPath, env)
}

// loadClient sends the tests' requests: many connections per gate, and a
// deadline on every request (the deadline the tests hold answers to).
func loadClient(deadline time.Duration) *http.Client {
	return &http.Client{
		Timeout: deadline,
		Transport: &http.Transport{
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// answer is one answer of a gate, or the error instead of it.
type answer struct {
	Status  int
	Body    gatesvc.Response
	Start   time.Time
	Latency time.Duration
	Err     error
}

// post sends body as JSON to url and decodes the gate's answer.
func post(c *http.Client, url string, body any) answer {
	b, err := json.Marshal(body)
	if err != nil {
		return answer{Err: err}
	}
	a := answer{Start: time.Now()}
	resp, err := c.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		a.Latency, a.Err = time.Since(a.Start), err
		return a
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	a.Latency, a.Status = time.Since(a.Start), resp.StatusCode
	if err != nil {
		a.Err = err
		return a
	}
	if err := json.Unmarshal(raw, &a.Body); err != nil {
		a.Err = fmt.Errorf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return a
}

// metric reads one metric of a process's /metrics, failing the test if
// the page cannot be read.
func metric(t *testing.T, baseURL, name string) float64 {
	t.Helper()
	m, err := testenv.Scrape(baseURL + "/metrics")
	require.NoError(t, err)
	v, ok := m[name]
	require.True(t, ok, "%s has no metric %s", baseURL, name)
	return v
}

// waitPublished waits until every event each gate queued is acknowledged
// by JetStream, and none was dropped or given up.
func waitPublished(t *testing.T, gates ...*gateProc) {
	t.Helper()
	for _, g := range gates {
		require.Eventually(t, func() bool {
			m, err := testenv.Scrape(g.URL + "/metrics")
			return err == nil && m["defender_events_queued_total"] > 0 &&
				m["defender_events_published_total"] == m["defender_events_queued_total"]
		}, time.Minute, 50*time.Millisecond, "%s never published all its events", g.name)
		require.Zero(t, metric(t, g.URL, "defender_events_dropped_total"), "%s dropped events", g.name)
		require.Zero(t, metric(t, g.URL, "defender_events_unsent_total"), "%s gave events up", g.name)
	}
}

// waitReplayed waits until each gate has written its backlog (the
// outcomes it decided locally while the store was late) to the store.
func waitReplayed(t *testing.T, gates ...*gateProc) {
	t.Helper()
	for _, g := range gates {
		require.Eventually(t, func() bool {
			m, err := testenv.Scrape(g.URL + "/metrics")
			return err == nil && m["defender_gate_backlog_outcomes"] == 0
		}, 30*time.Second, 50*time.Millisecond, "%s never replayed its backlog", g.name)
	}
}

// streamBlocks reads every block event of the DEFENDER stream on the NATS
// server at url.
func streamBlocks(t *testing.T, url string) []events.Block {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"defender.block.>"}})
	require.NoError(t, err)
	var out []events.Block
	for {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(300*time.Millisecond))
		require.NoError(t, err)
		n := 0
		for m := range batch.Messages() {
			b, err := events.DecodeBlock(m.Data())
			require.NoError(t, err, "block event %s", m.Data())
			out = append(out, b)
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			require.NoError(t, err)
		}
		if n == 0 {
			return out
		}
	}
}

// latencies summarises answer times: count, median, 99th percentile, max.
type latencies []time.Duration

func (l latencies) String() string {
	if len(l) == 0 {
		return "none"
	}
	s := append(latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) time.Duration { return s[int(p*float64(len(s)-1))].Round(10 * time.Microsecond) }
	return fmt.Sprintf("n=%d p50=%s p99=%s max=%s", len(s), q(.5), q(.99), s[len(s)-1].Round(10*time.Microsecond))
}
