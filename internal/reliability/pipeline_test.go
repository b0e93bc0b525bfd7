package reliability_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// Outages of the pipeline test. The issue asks for ClickHouse stopped
// 30 s; CI stops it 10 s (the recorder's behaviour does not change past
// its first retries, and the package must stay within a few minutes),
// DEFENDER_LONG_TESTS=1 the full 30 s.
const (
	natsDown       = 3 * time.Second
	clickHouseDown = 10 * time.Second
	clickHouseLong = 30 * time.Second
)

// TestPipelineFaults sends attempts through two cmd/gate processes into
// NATS JetStream and one cmd/recorder process into ClickHouse, and under
// that load: restarts NATS, kills the recorder (SIGKILL) while it holds a
// batch it has not acknowledged, stops ClickHouse for a while and kills
// the recorder again during that outage, then makes the recorder write a
// batch it cannot acknowledge (NATS away) and kills it, so that JetStream
// redelivers stored events. Afterwards every attempt the gates answered
// is in ClickHouse exactly once: no event lost, none counted twice. The parts are proven alone elsewhere: pkg/events'
// TestPublisherSurvivesOutage (NATS down under the publisher),
// pkg/record's TestClickHouseOutage (ClickHouse down under the recorder)
// and cmd/recorder's TestRecorderProcessKilled (SIGKILL); this is all of
// them at once, through the real services.
func TestPipelineFaults(t *testing.T) {
	needServers(t, "redis-server", "clickhouse")
	chDown := clickHouseDown
	if os.Getenv("DEFENDER_LONG_TESTS") != "" {
		chDown = clickHouseLong
	}
	ctx := context.Background()
	rs := testenv.Redis(t)
	ns := testenv.NATS(t)
	ch := testenv.ClickHouse(t)

	var gs []*gateProc
	for i := range 2 {
		gs = append(gs, startGate(t, fmt.Sprintf("pipeline-gate-%d", i),
			"DEFENDER_REDIS_URL="+rs.URL, "DEFENDER_NATS_URL="+ns.URL,
			"DEFENDER_REDIS_TIMEOUT=2s"))
	}
	recAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	recEnv := []string{
		"DEFENDER_NATS_URL=" + ns.URL,
		"DEFENDER_CLICKHOUSE_URL=" + ch.DSN(),
		"DEFENDER_HTTP_ADDR=" + recAddr,
		"DEFENDER_RECORD_BATCH=500",
		"DEFENDER_RECORD_FLUSH=200ms",
		"DEFENDER_RECORD_ACK_WAIT=2s",
	}
	recLog := filepath.Join(t.TempDir(), "recorder.log")
	rec := startRecorder(t, recLog, recEnv...)

	conn, err := record.Open(ch.DSN())
	require.NoError(t, err)
	defer conn.Close()
	// stored is the number of distinct attempt ids in ClickHouse (0 while
	// it is down or not migrated yet).
	stored := func() uint64 {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT uniqExact(id) FROM defender.attempts").Scan(&n); err != nil {
			return 0
		}
		return n
	}

	client := loadClient(30 * time.Second)
	defer client.CloseIdleConnections()
	load := startAttempts(gs, client, 4)
	defer load.halt()
	require.Eventually(t, func() bool { return stored() > 500 }, time.Minute, 50*time.Millisecond,
		"attempts reach ClickHouse")

	// 1. NATS restarts (same port, same JetStream store).
	sentBefore := load.sent.Load()
	ns.Shutdown()
	time.Sleep(natsDown)
	ns.Start()
	natsBack := time.Now()
	sentDuringNATS := load.sent.Load() - sentBefore
	target := load.sent.Load()
	require.Eventually(t, func() bool { return stored() >= target }, time.Minute, 50*time.Millisecond,
		"what was sent while NATS was down reaches ClickHouse")
	natsCatchUp := time.Since(natsBack)
	t.Logf("NATS down %s: %d attempts answered meanwhile; all stored %s after NATS was back",
		natsDown, sentDuringNATS, natsCatchUp.Round(time.Millisecond))

	// 2. The recorder is killed holding a batch: delivered, not acknowledged.
	js := jetStream(t, ns.URL)
	var ackPending int
	require.Eventually(t, func() bool {
		ackPending = consumerAckPending(ctx, js)
		return ackPending > 0
	}, 30*time.Second, time.Millisecond, "the recorder holds unacknowledged events")
	rec.kill()
	killedStored := stored()
	time.Sleep(500 * time.Millisecond)
	rec = startRecorder(t, recLog, recEnv...)
	target = load.sent.Load()
	require.Eventually(t, func() bool { return stored() >= target }, time.Minute, 50*time.Millisecond,
		"the restarted recorder catches up")
	t.Logf("recorder SIGKILLed with %d events delivered and unacknowledged (%d stored); caught up after restart",
		ackPending, killedStored)

	// 3. ClickHouse stops; halfway through, the recorder (retrying its
	// batch) is killed and restarted too.
	storedBefore := stored()
	sentBefore = load.sent.Load()
	ch.Stop()
	chStopped := time.Now()
	time.Sleep(chDown / 2)
	ackPending = consumerAckPending(ctx, js)
	rec.kill()
	rec = startRecorder(t, recLog, recEnv...)
	time.Sleep(time.Until(chStopped.Add(chDown)))
	require.NoError(t, ch.Start())
	chBack := time.Now()
	sentDuringCH := load.sent.Load() - sentBefore
	target = load.sent.Load()
	require.Eventually(t, func() bool { return stored() >= target }, 2*time.Minute, 100*time.Millisecond,
		"what was sent while ClickHouse was down reaches it")
	chCatchUp := time.Since(chBack)
	t.Logf("ClickHouse stopped %s (%d stored before): %d attempts answered meanwhile; recorder SIGKILLed mid-outage with %d unacknowledged; all stored %s after ClickHouse was back",
		chDown, storedBefore, sentDuringCH, ackPending, chCatchUp.Round(time.Millisecond))

	// 4. Acknowledgements lost: ClickHouse stops again so that the
	// recorder holds a batch; NATS goes away; ClickHouse comes back and
	// the recorder writes the batch but cannot acknowledge it; it is
	// killed before NATS returns. JetStream redelivers what was already
	// stored to the next recorder: those duplicates must not show.
	ch.Stop()
	require.Eventually(t, func() bool { return consumerAckPending(ctx, js) > 0 }, 30*time.Second, 10*time.Millisecond,
		"the recorder holds a batch it cannot write")
	ns.Shutdown()
	// written is what the running recorder has inserted (-1 if unknown).
	written := func() float64 {
		m, err := testenv.Scrape("http://" + recAddr + "/metrics")
		if err != nil {
			return -1
		}
		return m[`defender_recorder_rows_written_total{table="attempts"}`]
	}
	writtenBefore := written()
	require.GreaterOrEqual(t, writtenBefore, 0.0)
	require.NoError(t, ch.Start())
	require.Eventually(t, func() bool { return written() > writtenBefore }, time.Minute, 10*time.Millisecond,
		"the recorder writes its batch while NATS is away")
	writtenUnacked := written() - writtenBefore
	rec.kill()
	storedAtKill := stored()
	ns.Start()
	rec = startRecorder(t, recLog, recEnv...)
	target = load.sent.Load()
	require.Eventually(t, func() bool { return stored() >= target }, time.Minute, 50*time.Millisecond,
		"the last recorder catches up")

	time.Sleep(time.Second)
	answered, errs, statuses := load.halt()
	require.Empty(t, errs, "every attempt answered")
	for status := range statuses {
		assert.Contains(t, []int{http.StatusOK, http.StatusTooManyRequests}, status, "statuses %v", statuses)
	}

	// Nothing lost on the way: the gates published every event...
	waitPublished(t, gs...)
	// Attempts carry no message id: one whose acknowledgement the restart
	// lost is stored again, a copy the recorder stores once.
	inStream := streamCount(ctx, t, js, "defender.attempt.>")
	assert.GreaterOrEqual(t, inStream, uint64(len(answered)), "the stream holds each attempt")
	t.Logf("the stream holds %d attempt messages for %d attempts", inStream, len(answered))
	// ...and ClickHouse holds each once.
	require.Eventually(t, func() bool { return stored() == uint64(len(answered)) }, 2*time.Minute, 100*time.Millisecond,
		"ClickHouse holds %d distinct attempts, want %d", stored(), len(answered))
	var rows, finalRows, ids, agents uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM defender.attempts").Scan(&rows))
	require.NoError(t, conn.QueryRow(ctx,
		"SELECT count(), uniqExact(id), uniqExact(user_agent) FROM defender.attempts FINAL").Scan(&finalRows, &ids, &agents))
	assert.Equal(t, uint64(len(answered)), finalRows, "FINAL: one row per attempt")
	assert.Equal(t, finalRows, ids, "FINAL: no id twice")
	assert.Equal(t, finalRows, agents, "FINAL: no attempt twice")
	assert.Equal(t, uint64(len(answered)), countByRecordQuery(ctx, t, conn), "record.CountAttempts reads each id once")
	perAgent := storedAgents(ctx, t, conn)
	missing := 0
	for ua := range answered {
		if perAgent[ua] != 1 {
			missing++
			if missing <= 5 {
				t.Errorf("attempt %s stored %d times", ua, perAgent[ua])
			}
		}
	}
	assert.Zero(t, missing, "attempts not stored exactly once")
	assert.Zero(t, metric(t, "http://"+recAddr, "defender_recorder_dead_letters_total"), "no event dead-lettered")
	// The last recorder wrote the events new to ClickHouse and, again,
	// those whose acknowledgement died with its predecessor.
	rewritten := written() - float64(finalRows-storedAtKill)
	assert.Positive(t, rewritten, "stored events whose acknowledgement was lost were delivered and written again")
	t.Logf("acks lost: the recorder wrote at least %.0f rows while NATS was away and was killed; the next one wrote %.0f stored rows again",
		writtenUnacked, rewritten)
	t.Logf("%d attempts answered (%v), %d in ClickHouse, %d raw rows now (%d duplicates not merged yet; FINAL and the query helpers read one); events lost: %d",
		len(answered), statuses, finalRows, rows, rows-finalRows, missing)
}

// attempts sends one-call attempts (POST /v1/attempts with success) until
// halted; each carries its own user agent, rel-<n>, by which ClickHouse's
// rows are matched to what was sent.
type attempts struct {
	seq      atomic.Int64
	sent     atomic.Uint64 // attempts answered so far
	mu       sync.Mutex
	answered map[string]bool
	statuses map[int]int
	errs     []error
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

func startAttempts(gs []*gateProc, client *http.Client, workers int) *attempts {
	a := &attempts{answered: map[string]bool{}, statuses: map[int]int{}, stop: make(chan struct{})}
	for range workers {
		a.wg.Go(func() {
			for {
				select {
				case <-a.stop:
					return
				default:
				}
				n := a.seq.Add(1)
				ua := "rel-" + strconv.FormatInt(n, 10)
				r := post(client, gs[int(n)%len(gs)].URL+"/v1/attempts", map[string]any{
					"ip": fmt.Sprintf("198.18.%d.%d", n/256%8, n%256), "username": fmt.Sprintf("user-%d", n%1000),
					"success": n%4 != 0, "path": "/login", "user_agent": ua,
				})
				a.mu.Lock()
				if r.Err != nil {
					a.errs = append(a.errs, fmt.Errorf("%s: %w", ua, r.Err))
				} else {
					a.answered[ua] = true
					a.statuses[r.Status]++
					a.sent.Add(1)
				}
				a.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	return a
}

// halt stops the senders (once) and returns what was answered.
func (a *attempts) halt() (answered map[string]bool, errs []error, statuses map[int]int) {
	a.once.Do(func() { close(a.stop) })
	a.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.answered, a.errs, a.statuses
}

// jetStream connects to the NATS server at url for the test's queries.
func jetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// consumerAckPending is how many events the recorder's durable consumer
// has delivered and not had acknowledged (-1 if unknown).
func consumerAckPending(ctx context.Context, js jetstream.JetStream) int {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, events.StreamName, record.DefaultConsumer)
	if err != nil {
		return -1
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return -1
	}
	return ci.NumAckPending
}

// streamCount is the number of messages on subjects matching filter.
func streamCount(ctx context.Context, t *testing.T, js jetstream.JetStream, filter string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	require.NoError(t, err)
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// countByRecordQuery counts attempts as the admin does.
func countByRecordQuery(ctx context.Context, t *testing.T, conn driver.Conn) uint64 {
	t.Helper()
	n, err := record.CountAttempts(ctx, conn, record.AttemptFilter{})
	require.NoError(t, err)
	return n
}

// storedAgents counts the rows of each rel-<n> user agent, FINAL.
func storedAgents(ctx context.Context, t *testing.T, conn driver.Conn) map[string]int {
	t.Helper()
	rows, err := conn.Query(ctx, "SELECT user_agent, count() FROM defender.attempts FINAL GROUP BY user_agent")
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var ua string
		var n uint64
		require.NoError(t, rows.Scan(&ua, &n))
		if strings.HasPrefix(ua, "rel-") {
			out[ua] = int(n)
		}
	}
	require.NoError(t, rows.Err())
	return out
}
