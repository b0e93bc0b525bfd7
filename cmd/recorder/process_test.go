package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// process is the recorder binary running as a child process.
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// recorderBin is the cmd/recorder binary built once by TestMain ("" in
// -short mode).
var recorderBin string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithCommands(m, func(dir string) { recorderBin = filepath.Join(dir, "recorder") },
		"github.com/defender-go/defender/cmd/recorder"))
}

func startRecorder(t *testing.T, env []string, logPath string) *process {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	defer f.Close()
	cmd := exec.Command(recorderBin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start())
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// connectPipeline connects to NATS at natsURL, waits until a recorder
// has created the stream, and opens ClickHouse at dsn; both are closed
// when the test ends.
func connectPipeline(t *testing.T, natsURL, dsn string) (jetstream.JetStream, driver.Conn) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, err := js.Stream(context.Background(), events.StreamName); return err == nil },
		30*time.Second, 50*time.Millisecond, "a recorder creates the stream")
	conn, err := record.Open(dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return js, conn
}

// exited waits up to d for the process to exit, and fails t with what
// and the process's log if it does not.
func (p *process) exited(t *testing.T, d time.Duration, what string) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		b, _ := os.ReadFile(p.log)
		t.Fatalf("%s after %v:\n%s", what, d, b)
	}
}

// TestRecorderProcessKilled kills the recorder with SIGKILL while events
// flow, restarts it, and checks every event is stored and read once. The
// recorder starts before anything else exists: it creates the stream.
func TestRecorderProcessKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the recorder with servers")
	}
	ch := testenv.ClickHouse(t)
	ns := testenv.NATS(t)
	dir := t.TempDir()
	env := []string{
		"DEFENDER_NATS_URL=" + ns.URL,
		"DEFENDER_CLICKHOUSE_URL=" + ch.DSN(),
		"DEFENDER_HTTP_ADDR=127.0.0.1:0",
		"DEFENDER_RECORD_BATCH=500",
		"DEFENDER_RECORD_FLUSH=200ms",
		"DEFENDER_RECORD_ACK_WAIT=2s",
	}
	logPath := filepath.Join(dir, "recorder.log")
	p := startRecorder(t, env, logPath)

	js, conn := connectPipeline(t, ns.URL, ch.DSN())
	ctx := context.Background()

	pub := startPublisher(t, js)

	count := func() uint64 {
		n, err := record.CountAttempts(ctx, conn, record.AttemptFilter{})
		if err != nil {
			return 0
		}
		return n
	}
	require.Eventually(t, func() bool { return count() > 2000 }, time.Minute, 20*time.Millisecond)
	resp, err := http.Get("http://" + listenAddr(t, logPath) + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.done
	killedAt := count()
	time.Sleep(time.Second) // events pile up in the stream meanwhile

	p = startRecorder(t, env, logPath)
	require.Eventually(t, func() bool { return count() > killedAt+2000 }, time.Minute, 20*time.Millisecond)
	published, _ := pub.halt(t)

	require.Eventually(t, func() bool { return count() == uint64(len(published)) }, time.Minute, 50*time.Millisecond)
	ids := storedIDs(t, conn)
	assert.Len(t, ids, len(published))
	for _, id := range published {
		require.Equal(t, 1, ids[id], "event %s", id)
	}
	var rows uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM defender.attempts").Scan(&rows))
	t.Logf("published %d attempts, killed with %d stored; %d rows (%d redelivered duplicates)",
		len(published), killedAt, rows, rows-uint64(len(published)))

	// The restarted recorder serves metrics, and stops cleanly on SIGTERM.
	resp, err = http.Get("http://" + lastListenAddr(t, logPath) + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), "defender_recorder_rows_written_total")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	<-p.done
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode(), "clean exit on SIGTERM")
}

// listenAddr waits for the first "serving metrics" log line and returns its address.
func listenAddr(t *testing.T, logPath string) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		addrs := serveAddrs(logPath)
		if len(addrs) > 0 {
			addr = addrs[0]
		}
		return addr != ""
	}, 30*time.Second, 20*time.Millisecond)
	return addr
}

// lastListenAddr waits for a second "serving metrics" line (the restart).
func lastListenAddr(t *testing.T, logPath string) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		addrs := serveAddrs(logPath)
		if len(addrs) > 1 {
			addr = addrs[len(addrs)-1]
		}
		return addr != ""
	}, 30*time.Second, 20*time.Millisecond)
	return addr
}

func serveAddrs(logPath string) []string {
	f, err := os.Open(logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var addrs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if !strings.Contains(sc.Text(), `"serving metrics"`) {
			continue
		}
		var line struct{ Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Addr != "" {
			addrs = append(addrs, line.Addr)
		}
	}
	return addrs
}

// publisher publishes events with unique ids on JetStream until halted,
// about 5000 a second: attempts of every result, refused ones included,
// and among every 50 events a block or an unblock.
type publisher struct {
	stop atomic.Bool
	wg   sync.WaitGroup

	mu               sync.Mutex
	attempts, blocks []string // ids the stream acknowledged
	err              error
}

// startPublisher starts publishing; it stops when the test ends, if
// halt has not stopped it before.
func startPublisher(t *testing.T, js jetstream.JetStream) *publisher {
	t.Helper()
	p := &publisher{}
	p.wg.Go(func() { p.err = p.run(js) })
	t.Cleanup(func() { p.stop.Store(true); p.wg.Wait() })
	return p
}

func (p *publisher) run(js jetstream.JetStream) error {
	var chunk []sent
	base := time.Now()
	results := []string{events.ResultFailure, events.ResultSuccess, events.ResultBlocked}
	for i := 0; !p.stop.Load(); i++ {
		at := base.Add(time.Duration(i) * time.Millisecond)
		var (
			id, subject string
			data        []byte
			err         error
			block       = i%50 == 25
		)
		if block {
			b := events.Block{V: events.Version, Type: events.TypeBlock, ID: events.NewID(), Time: at,
				Kind: events.KindIP, Subject: "192.0.2.1", Failures: 5, Reason: "auto"}
			until := at.Add(time.Minute)
			b.Until = &until
			if i%100 == 75 {
				b.Type, b.Until, b.Failures, b.Reason = events.TypeUnblock, nil, 0, "admin"
			}
			id, subject = b.ID, b.NATSSubject(events.Subjects{})
			data, err = b.Encode()
		} else {
			a := events.Attempt{V: events.Version, Type: events.TypeAttempt, ID: events.NewID(), Time: at,
				IP: "192.0.2.1", Username: "alice", Result: results[i%len(results)], Path: "/login"}
			if a.Result == events.ResultBlocked {
				a.BlockedBy = []string{events.KindIP}
			}
			id, subject = a.ID, a.NATSSubject(events.Subjects{})
			data, err = a.Encode()
		}
		if err != nil {
			return err
		}
		f, err := js.PublishAsync(subject, data, jetstream.WithMsgID(id))
		if err != nil {
			return err
		}
		chunk = append(chunk, sent{id, block, f})
		if len(chunk) == 50 {
			if err := p.acked(js, chunk); err != nil {
				return err
			}
			chunk = chunk[:0]
			time.Sleep(10 * time.Millisecond)
		}
	}
	return p.acked(js, chunk)
}

// sent is an event published and not yet acknowledged by the stream.
type sent struct {
	id    string
	block bool
	f     jetstream.PubAckFuture
}

// acked waits for the stream's acknowledgements of chunk and records the
// ids.
func (p *publisher) acked(js jetstream.JetStream, chunk []sent) error {
	<-js.PublishAsyncComplete()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range chunk {
		select {
		case <-s.f.Ok():
		case err := <-s.f.Err():
			return fmt.Errorf("publish %s: %w", s.id, err)
		}
		if s.block {
			p.blocks = append(p.blocks, s.id)
		} else {
			p.attempts = append(p.attempts, s.id)
		}
	}
	return nil
}

// halt stops publishing and returns the ids of the attempts and of the
// blocks and unblocks published, each acknowledged by the stream.
func (p *publisher) halt(t *testing.T) (attempts, blocks []string) {
	t.Helper()
	p.stop.Store(true)
	p.wg.Wait()
	require.NoError(t, p.err)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts, p.blocks
}

// storedIDs pages through every stored attempt as the admin lists them,
// each id once, and counts each id.
func storedIDs(t *testing.T, conn driver.Conn) map[string]int {
	t.Helper()
	return pagedIDs(t, func(after record.Cursor) ([]events.Attempt, *record.Cursor, error) {
		return record.QueryAttempts(context.Background(), conn, record.AttemptFilter{Limit: record.MaxLimit, After: after})
	}, record.CursorOf)
}

// storedBlockIDs is storedIDs of the blocks and unblocks.
func storedBlockIDs(t *testing.T, conn driver.Conn) map[string]int {
	t.Helper()
	return pagedIDs(t, func(after record.Cursor) ([]events.Block, *record.Cursor, error) {
		return record.QueryBlocks(context.Background(), conn, record.BlockFilter{Limit: record.MaxLimit, After: after})
	}, record.BlockCursorOf)
}

func pagedIDs[T any](t *testing.T, page func(after record.Cursor) ([]T, *record.Cursor, error), cursor func(T) record.Cursor) map[string]int {
	t.Helper()
	seen := map[string]int{}
	var after record.Cursor
	for {
		rows, next, err := page(after)
		require.NoError(t, err)
		for _, r := range rows {
			seen[cursor(r).ID]++
		}
		if next == nil {
			return seen
		}
		after = *next
	}
}
