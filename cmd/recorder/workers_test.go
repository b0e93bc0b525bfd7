package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// TestRecorderWorkersKilled runs three recorder processes on the one
// durable consumer while events flow, kills two of them with SIGKILL
// mid-batch and restarts one, and checks through ClickHouse that every
// event is stored, each read once as the admin reads, that what JetStream
// had delivered to the killed workers was delivered again rather than
// lost, and that every worker wrote its share.
//
// It sees the recorders only from outside (their /metrics, the
// consumer's state, ClickHouse), so that it holds whatever way they
// fetch, batch and acknowledge. A recorder that acknowledged before its
// insert, or with an ack-all covering events other workers still hold,
// fails it: the events a killed worker held are then lost.
func TestRecorderWorkersKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the recorder with servers")
	}
	ch := testenv.ClickHouse(t)
	ns := testenv.NATS(t)
	dir := t.TempDir()
	env := func(clickHouseAddr string) []string {
		return []string{
			"DEFENDER_NATS_URL=" + ns.URL,
			"DEFENDER_CLICKHOUSE_URL=clickhouse://" + clickHouseAddr + "/defender",
			"DEFENDER_HTTP_ADDR=127.0.0.1:0",
			"DEFENDER_RECORD_BATCH=500",
			"DEFENDER_RECORD_FLUSH=200ms",
			"DEFENDER_RECORD_ACK_WAIT=2s", // a dead worker's events come back within the test
		}
	}
	// w0 reaches ClickHouse through a link the test cuts, for w0 alone.
	link := startLink(t, ch.Addr)
	ws := []*worker{
		startWorker(t, dir, "w0", env(link.addr())),
		startWorker(t, dir, "w1", env(ch.Addr)),
		startWorker(t, dir, "w2", env(ch.Addr)),
	}

	js, conn := connectPipeline(t, ns.URL, ch.DSN())
	ctx := context.Background()
	stored := func() uint64 {
		n, err := record.CountAttempts(ctx, conn, record.AttemptFilter{})
		if err != nil {
			return 0
		}
		return n
	}

	pub := startPublisher(t, js)

	// 1. The three share the consumer: each writes rows.
	for _, w := range ws {
		if !assert.Eventually(t, func() bool { p, err := w.progress(); return err == nil && p.written > 0 },
			time.Minute, 20*time.Millisecond, "%s writes rows", w.name) {
			// Say where it stood: a failure here (seen once in CI) told nothing.
			p, err := w.progress()
			out, _ := os.ReadFile(w.log)
			t.Fatalf("%s wrote no rows: %+v %v; its log ends:\n%s", w.name, p, err, out[max(0, len(out)-4096):])
		}
	}

	// 2. w0 is killed mid-batch: holding events it has not acknowledged.
	// Its link to ClickHouse is cut first: it still takes a batch (and at
	// most one more, fetched ahead), but none of its inserts can succeed
	// any more, so its rows written stop while its events fetched do not.
	// Once it has failed a write since the cut, all its earlier successes
	// are counted, and fetched - written is a number of events whose
	// insert has not succeeded, still in its hands however late the kill
	// lands. A recorder acknowledges an event only once its insert
	// succeeded, so JetStream must deliver those again: checked at the
	// end, from the consumer's count of deliveries. (Acknowledged before
	// the insert, or by an ack-all of w1 or w2, they are lost instead.)
	before, err := ws[0].progress()
	require.NoError(t, err)
	link.cut()
	var w0 progress
	if !assert.Eventually(t, func() bool {
		p, err := ws[0].progress()
		w0 = p
		return err == nil && p.retries > before.retries && p.inHand() > 0
	}, 30*time.Second, 20*time.Millisecond) {
		p, err := ws[0].progress()
		t.Fatalf("w0 holds no batch it cannot write: %+v %v (before the cut: %+v)", p, err, before)
	}
	ws[0].kill(t)
	cons, err := js.Consumer(ctx, events.StreamName, record.DefaultConsumer)
	require.NoError(t, err)
	ci, err := cons.Info(ctx)
	require.NoError(t, err)
	deliveredAtKill := ci.Delivered.Stream

	// 3. The two left go on, and acknowledge all that was delivered
	// before the kill, w0's events included once the ack wait has passed.
	// Then w1 is killed too, at a moment when it holds events: at the
	// first scrape of its metrics that shows events taken and not
	// written, the kill following within a millisecond or so. Unlike
	// w0's, that batch may be written in the meantime (at these rates w1
	// is then already taking the next one, which it also holds): this is
	// the kill at any point of the cycle, the insert's included, whose
	// redeliveries store rows twice.
	require.Eventually(t, func() bool {
		ci, err := cons.Info(ctx)
		return err == nil && ci.AckFloor.Stream >= deliveredAtKill
	}, time.Minute, 50*time.Millisecond, "what was delivered before w0's kill (stream sequence %d) is acknowledged", deliveredAtKill)
	var w1 progress
	require.Eventually(t, func() bool {
		p, err := ws[1].progress()
		w1 = p
		return err == nil && p.inHand() > 0
	}, 30*time.Second, time.Millisecond, "w1 holds events")
	ws[1].kill(t)

	// 4. w0 comes back, and takes its share beside w2.
	restarted := startWorker(t, dir, "w0-restarted", env(ch.Addr))
	require.Eventually(t, func() bool { p, err := restarted.progress(); return err == nil && p.written > 0 },
		time.Minute, 20*time.Millisecond, "the restarted w0 writes rows")
	restartedAt := stored()
	require.Eventually(t, func() bool { return stored() > restartedAt+2000 }, time.Minute, 20*time.Millisecond,
		"w2 and the restarted w0 go on")
	attempts, blocks := pub.halt(t)

	// 5. The consumer has delivered every event and holds none
	// unacknowledged, the killed workers' ones included.
	stream, err := js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	si, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(len(attempts)+len(blocks)), si.State.Msgs, "the stream holds each event once")
	drained := func(ci *jetstream.ConsumerInfo) bool {
		return ci.NumPending == 0 && ci.NumAckPending == 0 && ci.Delivered.Stream == si.State.LastSeq
	}
	if !assert.Eventually(t, func() bool { ci, err := cons.Info(ctx); return err == nil && drained(ci) },
		time.Minute, 50*time.Millisecond) {
		ci, err := cons.Info(ctx)
		t.Fatalf("the consumer does not drain: %+v %v", ci, err)
	}
	ci, err = cons.Info(ctx)
	require.NoError(t, err)
	require.True(t, drained(ci), "%+v", ci)
	redelivered := ci.Delivered.Consumer - si.State.Msgs
	assert.GreaterOrEqual(t, redelivered, uint64(w0.inHand()),
		"JetStream delivered again the events w0 held unacknowledged when it was killed")

	// 6. A recorder acknowledges what it wrote, so ClickHouse now holds
	// every event, without waiting for it: each id once as results read
	// it (uniqExact, LIMIT 1 BY id, the admin's pages). Rows stored twice
	// (a redelivered batch, or an insert retried after ClickHouse took it
	// but did not answer in time) are allowed, and merged away some day.
	for _, table := range []struct {
		name string
		ids  []string
		read map[string]int
	}{
		{"attempts", attempts, storedIDs(t, conn)},
		{"blocks", blocks, storedBlockIDs(t, conn)},
	} {
		var uniq, once, n, twice uint64
		require.NoError(t, conn.QueryRow(ctx, "SELECT uniqExact(id), count() FROM defender."+table.name).Scan(&uniq, &n))
		require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM (SELECT id FROM defender."+table.name+" LIMIT 1 BY id)").Scan(&once))
		require.NoError(t, conn.QueryRow(ctx,
			"SELECT count() FROM (SELECT id FROM defender."+table.name+" GROUP BY id HAVING count() > 1)").Scan(&twice))
		assert.Equal(t, len(table.ids), int(uniq), "%s: uniqExact(id)", table.name)
		assert.Equal(t, len(table.ids), int(once), "%s: LIMIT 1 BY id", table.name)
		published := map[string]bool{}
		var missing, notOnce, unknown []string
		for _, id := range table.ids {
			published[id] = true
			if n := table.read[id]; n == 0 {
				missing = append(missing, id)
			} else if n > 1 {
				notOnce = append(notOnce, id)
			}
		}
		for id := range table.read {
			if !published[id] {
				unknown = append(unknown, id)
			}
		}
		assert.Zero(t, len(missing), "%s: published and not stored, of %d: %v", table.name, len(table.ids), some(missing))
		assert.Zero(t, len(notOnce), "%s: read more than once: %v", table.name, some(notOnce))
		assert.Zero(t, len(unknown), "%s: stored and never published: %v", table.name, some(unknown))
		t.Logf("%s: %d published, %d rows, %d ids stored twice", table.name, len(table.ids), n, twice)
	}

	// 7. Every worker wrote a share: w0 and w1 before their kills.
	w2, err := ws[2].progress()
	require.NoError(t, err)
	w0b, err := restarted.progress()
	require.NoError(t, err)
	for name, p := range map[string]progress{"w0": w0, "w1": w1, "w2": w2, "w0-restarted": w0b} {
		assert.Positive(t, p.written, "%s wrote no rows", name)
	}
	t.Logf("rows written: w0 %.0f (killed holding %.0f), w1 %.0f (killed, %.0f in hand at the last scrape), w2 %.0f, restarted w0 %.0f; %d deliveries again",
		w0.written, w0.inHand(), w1.written, w1.inHand(), w2.written, w0b.written, redelivered)
}

// some is the first few of ids, for a message.
func some(ids []string) []string { return ids[:min(len(ids), 3)] }

// worker is a recorder process of TestRecorderWorkersKilled.
type worker struct {
	*process
	name, metrics string // metrics is its /metrics URL
}

func startWorker(t *testing.T, dir, name string, env []string) *worker {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	p := startRecorder(t, env, logPath)
	return &worker{process: p, name: name, metrics: "http://" + listenAddr(t, logPath) + "/metrics"}
}

// kill kills the worker with SIGKILL and waits for it to be gone.
func (w *worker) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
	w.exited(t, 30*time.Second, w.name+" still runs after SIGKILL")
}

// progress is what a worker's /metrics says of its work so far.
type progress struct {
	// fetched is the events it took from the consumer, written the rows it
	// wrote into ClickHouse (both counting redeliveries), retries its
	// failed writes.
	fetched, written, retries float64
}

// inHand is the events the worker took and has not written.
func (p progress) inHand() float64 { return p.fetched - p.written }

// progress reads the worker's metrics.
func (w *worker) progress() (progress, error) {
	m, err := testenv.Scrape(w.metrics)
	if err != nil {
		return progress{}, err
	}
	return progress{
		fetched: m["defender_recorder_batch_size_sum"],
		written: m["defender_recorder_rows_written_total"],
		retries: m["defender_recorder_retries_total"],
	}, nil
}

// link forwards TCP connections to a server until cut, then closes them
// and every later one, as a failed network would, for the processes that
// reach the server through it and no others.
type link struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	isCut bool
	conns []net.Conn
}

func startLink(t *testing.T, target string) *link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := &link{ln: ln, target: target}
	l.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.wg.Go(func() { l.forward(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		l.cut()
		l.wg.Wait()
	})
	return l
}

func (l *link) addr() string { return l.ln.Addr().String() }

func (l *link) forward(client net.Conn) {
	server, err := net.Dial("tcp", l.target)
	if err != nil {
		client.Close()
		return
	}
	l.mu.Lock()
	if l.isCut {
		l.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	l.conns = append(l.conns, client, server)
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, dir := range [][2]net.Conn{{client, server}, {server, client}} {
		wg.Go(func() {
			_, _ = io.Copy(dir[1], dir[0])
			client.Close()
			server.Close()
		})
	}
	wg.Wait()
}

// cut closes the connections and refuses new ones from now on.
func (l *link) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.isCut = true
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}
