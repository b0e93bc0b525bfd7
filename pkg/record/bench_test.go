package record_test

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// BenchmarkRecorderThroughput measures how fast one recorder moves a
// backlog from the stream into ClickHouse: b.N attempts are published
// first (not timed), then the recorder drains them. Run it with a fixed
// count, e.g. -benchtime=300000x.
func BenchmarkRecorderThroughput(b *testing.B) {
	for _, batch := range []int{record.DefaultBatch, 50000} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) { benchmarkThroughput(b, batch) })
	}
}

func benchmarkThroughput(b *testing.B, batch int) {
	_, conn := sharedClickHouse(b)
	_, js := natsStream(b)
	base := time.Now().Add(-time.Hour)
	const chunk = 10000
	for i := 0; i < b.N; i += chunk {
		as := make([]events.Attempt, min(chunk, b.N-i))
		for j := range as {
			as[j] = newAttempt(i+j, base)
		}
		publishAttempts(b, js, as)
	}

	b.ResetTimer()
	start := time.Now()
	rec, stop := runRecorder(b, js, conn, record.Options{Batch: batch, Flush: record.DefaultFlush})
	for rec.Stats().Attempts < uint64(b.N) {
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	s := rec.Stats()
	b.ReportMetric(float64(s.Attempts)/float64(max(s.Batches, 1)), "events/batch")
}

// TestPublishToQueryableLag publishes attempts at a steady rate and
// measures, for each, the time from its publish to the moment the query
// helpers count it. It logs the distribution and asserts nothing about
// it. One recorder writes in stream order, so once CountAttempts reaches
// k the first k events are stored.
func TestPublishToQueryableLag(t *testing.T) {
	for _, flush := range []time.Duration{record.DefaultFlush, 200 * time.Millisecond} {
		t.Run("flush="+flush.String(), func(t *testing.T) { measureLag(t, flush) })
	}
}

func measureLag(t *testing.T, flush time.Duration) {
	_, conn := sharedClickHouse(t)
	_, js := natsStream(t)
	const (
		rate     = 10000 // events/s: the steady flow the lag is specified at
		duration = 4 * time.Second
		tick     = 10 * time.Millisecond
		perTick  = rate * int(tick) / int(time.Second)
	)
	rec, _ := runRecorder(t, js, conn, record.Options{Flush: flush})

	n := rate * int(duration/time.Second)
	sent := make([]time.Time, n)
	var published atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(tick)
		defer tk.Stop()
		base := time.Now()
		for i := 0; i < n; {
			<-tk.C
			for j := 0; j < perTick && i < n; j, i = j+1, i+1 {
				a := newAttempt(i, base)
				data, err := a.Encode()
				if err != nil {
					panic(err)
				}
				sent[i] = time.Now()
				// A server slower than the rate (under -race) holds the
				// publish until acknowledgements make room, rather than
				// failing it: the lag is measured, not asserted.
				if _, err := js.PublishAsync(a.NATSSubject(subjects), data, jetstream.WithMsgID(a.ID),
					jetstream.WithStallWait(time.Minute)); err != nil {
					panic(err)
				}
			}
			published.Store(int64(i))
		}
		<-js.PublishAsyncComplete()
	})

	ctx := context.Background()
	seen := make([]time.Time, n)
	next := 0
	deadline := time.Now().Add(duration + time.Minute)
	for next < n {
		require.True(t, time.Now().Before(deadline), "only %d of %d events queryable after %s", next, n, duration+time.Minute)
		c, err := record.CountAttempts(ctx, conn, record.AttemptFilter{})
		require.NoError(t, err)
		now := time.Now()
		for ; next < int(c) && next < n; next++ {
			seen[next] = now
		}
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	c, err := record.CountAttempts(ctx, conn, record.AttemptFilter{})
	require.NoError(t, err)
	require.EqualValues(t, n, c, "every event stored once")

	lags := make([]time.Duration, n)
	for i := range lags {
		lags[i] = seen[i].Sub(sent[i])
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	q := func(p float64) time.Duration { return lags[int(p*float64(n-1))].Round(time.Millisecond) }
	st := rec.Stats()
	t.Logf("publish-to-queryable lag at %d events/s over %s (batch %d, flush %s): p50 %s, p90 %s, p99 %s, max %s; %.0f events/batch",
		rate, duration, record.DefaultBatch, flush, q(0.5), q(0.9), q(0.99), q(1),
		float64(st.Attempts)/float64(max(st.Batches, 1)))
}
