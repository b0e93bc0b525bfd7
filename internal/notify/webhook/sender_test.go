package webhook_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
)

// seriesCount is the number of series of the metric name in reg.
func seriesCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

// deadLetters collects the dead letters of a sender.
type deadLetters struct {
	mu  sync.Mutex
	got []webhook.DeadLetter
}

func (d *deadLetters) write(_ context.Context, dl webhook.DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, dl)
	return nil
}

func (d *deadLetters) all() []webhook.DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]webhook.DeadLetter{}, d.got...)
}

func TestNewChecksOptions(t *testing.T) {
	ep := []webhook.Endpoint{{URL: "https://a.example/hook"}}
	tests := []struct {
		name string
		o    webhook.Options
		err  string
	}{
		{name: "no endpoint", o: webhook.Options{Secrets: [][]byte{secret}}, err: "no endpoint"},
		{name: "no secret", o: webhook.Options{Endpoints: ep}, err: "no signing secret"},
		{name: "short secret", o: webhook.Options{Endpoints: ep, Secrets: [][]byte{secret, []byte("short")}},
			err: "secret 2 is 5 bytes, want at least 16"},
		{name: "bad URL", o: webhook.Options{Endpoints: []webhook.Endpoint{{URL: "ftp://a.example/SECRET"}}, Secrets: [][]byte{secret}},
			err: "webhook endpoint 1: ftp://a.example/…: scheme"},
		{name: "bad format", o: webhook.Options{Endpoints: []webhook.Endpoint{{URL: "https://a.example/", Format: "xml"}}, Secrets: [][]byte{secret}},
			err: `unknown format "xml"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := webhook.New(tc.o)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
			assert.NotContains(t, err.Error(), "SECRET")
		})
	}
	_, err := webhook.New(webhook.Options{Endpoints: ep, Secrets: [][]byte{secret}})
	assert.NoError(t, err, "the defaults")
}

// A receiver that fails three times then takes the batch gets it once;
// Deliver waits for that and returns nil.
func TestRetryThenDeliver(t *testing.T) {
	rc := newReceiver(t, func(n int, _ http.ResponseWriter, _ *http.Request) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	reg := prometheus.NewRegistry()
	var dl deadLetters
	o := options(reg, webhook.Endpoint{URL: rc.srv.URL + "/hook"})
	o.DeadLetter = dl.write
	s, _ := start(t, o)

	require.NoError(t, s.Deliver(context.Background(), block(1)))
	assert.Len(t, rc.got(), 4, "requests")
	accepted := rc.accepted()
	require.Len(t, accepted, 1, "2xx answers")
	assert.Equal(t, []events.Block{block(1)}, decode(t, accepted[0].body).Blocks)
	assert.Empty(t, dl.all())

	host := rc.host()
	assert.Equal(t, 3.0, testenv.Metric(t, reg, "defender_notifier_webhook_retried_total", "endpoint", host))
	assert.Equal(t, 3.0, testenv.Metric(t, reg, "defender_notifier_webhook_failed_total", "endpoint", host))
	assert.Equal(t, 1.0, testenv.Metric(t, reg, "defender_notifier_webhook_sent_total", "endpoint", host))
	assert.Equal(t, 1.0, testenv.Metric(t, reg, "defender_notifier_webhook_blocks_total", "endpoint", host))
	assert.Equal(t, 0.0, testenv.Metric(t, reg, "defender_notifier_webhook_dead_lettered_total", "endpoint", host))
	assert.Equal(t, 1, seriesCount(t, reg, "defender_notifier_webhook_retried_total"),
		"one series: the endpoint label is the host alone")
}

// A receiver that always fails ends in one dead letter after Attempts
// tries; one that refuses (a 4xx) at once. Deliver returns nil either way.
func TestDeadLetter(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		attempts int // expected calls
	}{
		{name: "always 500", status: http.StatusInternalServerError, attempts: 4},
		{name: "always 429", status: http.StatusTooManyRequests, attempts: 4},
		{name: "refused 400", status: http.StatusBadRequest, attempts: 1},
		{name: "refused 410", status: http.StatusGone, attempts: 1},
		{name: "redirect not followed", status: http.StatusFound, attempts: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, func(int, http.ResponseWriter, *http.Request) int { return tc.status })
			reg := prometheus.NewRegistry()
			var dl deadLetters
			o := options(reg, webhook.Endpoint{URL: rc.srv.URL + "/hook"})
			o.Attempts = 4
			o.DeadLetter = dl.write
			o.Now = func() time.Time { return epoch }
			s, _ := start(t, o)

			blocks := []events.Block{block(1), block(2), block(3)}
			var wg sync.WaitGroup
			for _, b := range blocks {
				wg.Go(func() { assert.NoError(t, s.Deliver(context.Background(), b)) })
			}
			wg.Wait()

			letters := dl.all()
			require.Len(t, letters, 1, "dead letters")
			got := letters[0]
			assert.Equal(t, rc.host(), got.Endpoint)
			assert.ElementsMatch(t, blocks, got.Blocks)
			assert.Equal(t, tc.attempts, got.Attempts)
			assert.Contains(t, got.Err, "answered "+strconv.Itoa(tc.status))
			assert.Equal(t, epoch, got.Time)
			assert.Len(t, rc.got(), tc.attempts, "requests")
			assert.Equal(t, 1.0, testenv.Metric(t, reg, "defender_notifier_webhook_dead_lettered_total", "endpoint", rc.host()))
			assert.Equal(t, float64(tc.attempts-1), testenv.Metric(t, reg, "defender_notifier_webhook_retried_total"))
			assert.Equal(t, 0.0, testenv.Metric(t, reg, "defender_notifier_webhook_blocks_total"))
		})
	}
}

// A 429's Retry-After is honoured within MaxBackoff: here an hour, cut
// to 20ms, so that the test does not wait.
func TestRetryAfterCapped(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) int {
		if n == 1 {
			w.Header().Set("Retry-After", "3600")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	s, _ := start(t, options(prometheus.NewRegistry(), webhook.Endpoint{URL: rc.srv.URL}))
	require.NoError(t, s.Deliver(context.Background(), block(1)))
	assert.Len(t, rc.got(), 2)
	assert.Len(t, rc.accepted(), 1)
}

// Concurrent Deliver calls within one Interval share a call: every block
// arrives once, in one or two calls.
func TestBatching(t *testing.T) {
	rc := newReceiver(t, nil)
	reg := prometheus.NewRegistry()
	o := options(reg, webhook.Endpoint{URL: rc.srv.URL})
	o.Interval = 200 * time.Millisecond
	s, _ := start(t, o)

	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { assert.NoError(t, s.Deliver(context.Background(), block(i))) })
	}
	wg.Wait()

	calls := rc.accepted()
	assert.LessOrEqual(t, len(calls), 2, "calls")
	seen := map[string]int{}
	for _, c := range calls {
		blocks := decode(t, c.body).Blocks
		assert.Equal(t, strconv.Itoa(len(blocks)), c.header.Get("Defender-Batch"))
		for _, b := range blocks {
			seen[b.ID]++
		}
	}
	assert.Len(t, seen, n, "blocks delivered")
	for id, k := range seen {
		assert.Equal(t, 1, k, "block %s delivered %d times", id, k)
	}
	assert.Equal(t, float64(n), testenv.Metric(t, reg, "defender_notifier_webhook_blocks_total"))
}

// No call carries more than MaxBatch blocks; the rest go in later calls.
func TestMaxBatch(t *testing.T) {
	rc := newReceiver(t, nil)
	o := options(prometheus.NewRegistry(), webhook.Endpoint{URL: rc.srv.URL})
	o.MaxBatch = 30
	s, _ := start(t, o)

	const n = 100
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { assert.NoError(t, s.Deliver(context.Background(), block(i))) })
	}
	wg.Wait()

	seen := map[string]int{}
	calls := rc.accepted()
	assert.GreaterOrEqual(t, len(calls), 4)
	for _, c := range calls {
		blocks := decode(t, c.body).Blocks
		assert.LessOrEqual(t, len(blocks), 30)
		for _, b := range blocks {
			seen[b.ID]++
		}
	}
	assert.Len(t, seen, n)
	for id, k := range seen {
		assert.Equal(t, 1, k, "block %s", id)
	}
}

// Deliver returns when every endpoint has the block; a failing endpoint
// does not hold up the others' answer beyond its own attempts.
func TestEveryEndpoint(t *testing.T) {
	good := newReceiver(t, nil)
	slack := newReceiver(t, nil)
	bad := newReceiver(t, func(int, http.ResponseWriter, *http.Request) int { return http.StatusBadGateway })
	var dl deadLetters
	o := options(prometheus.NewRegistry(),
		webhook.Endpoint{URL: good.srv.URL},
		webhook.Endpoint{URL: slack.srv.URL + "/services/T/B/X", Format: webhook.FormatSlack},
		webhook.Endpoint{URL: bad.srv.URL})
	o.Attempts = 2
	o.DeadLetter = dl.write
	s, _ := start(t, o)

	require.NoError(t, s.Deliver(context.Background(), block(7)))
	assert.Len(t, good.accepted(), 1)
	assert.Len(t, slack.accepted(), 1)
	assert.Len(t, bad.got(), 2)
	letters := dl.all()
	require.Len(t, letters, 1)
	assert.Equal(t, bad.host(), letters[0].Endpoint)
}

// Deliver returns its context's error when the context ends before the
// block is delivered; Run returns once its context ends, and the Deliver
// calls still waiting then return Run's context's error.
func TestCancel(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) int {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return http.StatusServiceUnavailable
	})
	t.Cleanup(func() { close(release) }) // before the server's Close, which waits for handlers
	o := options(prometheus.NewRegistry(), webhook.Endpoint{URL: rc.srv.URL})
	o.Timeout = 200 * time.Millisecond
	o.Attempts = 1000 // never gives up during the test
	s, stop := start(t, o)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.Deliver(ctx, block(1))
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	waiting := make(chan error, 1)
	go func() { waiting <- s.Deliver(context.Background(), block(2)) }()
	stop() // returns once Run has returned
	assert.ErrorIs(t, <-waiting, context.Canceled, "a Deliver waiting when Run stops")
	assert.ErrorIs(t, s.Deliver(context.Background(), block(3)), context.Canceled, "a Deliver after Run")

	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	assert.ErrorIs(t, s.Deliver(canceled, block(4)), context.Canceled)
	assert.Error(t, s.Run(context.Background()), "a second Run")
	requireNoSenderGoroutine(t)
}

// Logs, errors and dead letters name an endpoint by its host: the path of
// a Slack webhook is its secret.
func TestNoURLPathInLogs(t *testing.T) {
	rc := newReceiver(t, func(int, http.ResponseWriter, *http.Request) int { return http.StatusInternalServerError })
	closed := newReceiver(t, nil)
	closedURL := closed.srv.URL
	closed.srv.Close() // connection refused: net/http's error quotes the URL

	var logs testenv.SyncBuffer
	var dl deadLetters
	o := options(prometheus.NewRegistry(),
		webhook.Endpoint{URL: rc.srv.URL + "/services/T000/B000/SECRETPATH?token=SECRETQUERY", Format: webhook.FormatSlack},
		webhook.Endpoint{URL: closedURL + "/hook/SECRETPATH"})
	o.Attempts = 2
	o.DeadLetter = dl.write
	o.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, stop := start(t, o)

	require.NoError(t, s.Deliver(context.Background(), block(1)))
	stop()
	letters := dl.all()
	require.Len(t, letters, 2)
	for _, l := range letters {
		assert.NotContains(t, l.Err, "SECRET")
		assert.NotContains(t, l.Endpoint, "SECRET")
	}
	assert.Contains(t, logs.String(), "endpoint="+rc.host())
	assert.NotContains(t, logs.String(), "SECRET")
}

// A DeadLetter that fails is counted and logged as an error; the block
// still counts as given up.
func TestDeadLetterError(t *testing.T) {
	rc := newReceiver(t, func(int, http.ResponseWriter, *http.Request) int { return http.StatusBadRequest })
	var logs testenv.SyncBuffer
	reg := prometheus.NewRegistry()
	o := options(reg, webhook.Endpoint{URL: rc.srv.URL})
	o.DeadLetter = func(context.Context, webhook.DeadLetter) error { return errors.New("disk full") }
	o.Log = slog.New(slog.NewTextHandler(&logs, nil))
	s, stop := start(t, o)

	require.NoError(t, s.Deliver(context.Background(), block(1)))
	stop()
	assert.Equal(t, 1.0, testenv.Metric(t, reg, "defender_notifier_webhook_dead_letter_write_failed_total", "endpoint", rc.host()))
	assert.Equal(t, 1.0, testenv.Metric(t, reg, "defender_notifier_webhook_dead_lettered_total", "endpoint", rc.host()))
	assert.Regexp(t, `level=ERROR msg="webhook dead letter not written[^"]*".*err="disk full"`, logs.String())
}
