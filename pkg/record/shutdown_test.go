package record_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// TestShutdownFlushes cancels Run while a batch is in hand (fetched, not
// yet full): Run writes it before returning, and leaves no goroutine.
func TestShutdownFlushes(t *testing.T) {
	_, conn := sharedClickHouse(t)
	_, js := natsStream(t)
	ctx := context.Background()
	as := make([]events.Attempt, 100)
	for i := range as {
		as[i] = newAttempt(i, time.Now())
	}
	publishAttempts(t, js, as)
	// A long flush: the batch is still filling when Run is cancelled.
	opts := record.Options{Flush: 2 * time.Second, AckWait: 30 * time.Second}
	// The consumer's goroutines in the (embedded) server are no leak:
	// create it before counting.
	r, err := record.New(js, conn, opts)
	require.NoError(t, err)
	_, err = js.CreateOrUpdateConsumer(ctx, events.StreamName, r.ConsumerConfig())
	require.NoError(t, err)
	goroutines := runtime.NumGoroutine()

	rec, stop := runRecorder(t, js, conn, opts)
	require.Eventually(t, func() bool {
		cons, err := js.Consumer(ctx, events.StreamName, record.DefaultConsumer)
		if err != nil {
			return false
		}
		ci, err := cons.Info(ctx)
		return err == nil && ci.NumAckPending == len(as)
	}, 10*time.Second, 10*time.Millisecond, "all delivered to the fetch in flight")
	assert.Zero(t, rec.Stats().Attempts)

	stop() // returns once Run has returned
	assert.EqualValues(t, len(as), rec.Stats().Attempts)
	assert.EqualValues(t, len(as), countAttempts(t, conn))
	// Polled by hand: Eventually's own goroutine would count.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !assert.LessOrEqual(t, runtime.NumGoroutine(), goroutines, "goroutines left behind") {
		buf := make([]byte, 1<<20)
		t.Logf("goroutines: %d, were %d\n%s", runtime.NumGoroutine(), goroutines, buf[:runtime.Stack(buf, true)])
	}
}

// TestShutdownWithoutClickHouse: when the batch in hand cannot be written
// before ShutdownTimeout, Run says so and hands the events back to
// JetStream for another recorder.
func TestShutdownWithoutClickHouse(t *testing.T) {
	ch, conn := ownClickHouse(t)
	_, js := natsStream(t)
	ctx := context.Background()
	ch.Kill()

	r, err := record.New(js, conn, record.Options{Flush: 100 * time.Millisecond, ShutdownTimeout: 500 * time.Millisecond,
		InsertTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = r.Run(rctx) })
	as := []events.Attempt{newAttempt(0, time.Now())}
	publishAttempts(t, js, as)
	require.Eventually(t, func() bool { return r.Stats().Retries > 0 }, 30*time.Second, 10*time.Millisecond)
	cancel()
	wg.Wait()
	require.Error(t, runErr)
	assert.Contains(t, runErr.Error(), "not written at shutdown")

	// Handed back: a recorder with ClickHouse up writes it at once, not
	// after the ack wait.
	require.NoError(t, ch.Start())
	rec2, _ := runRecorder(t, js, conn, record.Options{})
	require.Eventually(t, func() bool { return rec2.Stats().Attempts == 1 }, 30*time.Second, 10*time.Millisecond)
	assert.EqualValues(t, 1, countAttempts(t, conn))
}

// TestRecordersShareConsumer runs three recorders on one consumer: they
// split the work and every event is stored once.
func TestRecordersShareConsumer(t *testing.T) {
	_, conn := sharedClickHouse(t)
	_, js := natsStream(t)
	var recs []*record.Recorder
	for range 3 {
		r, _ := runRecorder(t, js, conn, record.Options{Batch: 500, Flush: 50 * time.Millisecond})
		recs = append(recs, r)
	}
	as := make([]events.Attempt, 20000)
	for i := range as {
		as[i] = newAttempt(i, time.Now())
	}
	publishAttempts(t, js, as)
	total := func() (n uint64) {
		for _, r := range recs {
			n += r.Stats().Attempts
		}
		return n
	}
	require.Eventually(t, func() bool { return total() >= uint64(len(as)) }, time.Minute, 20*time.Millisecond)
	busy := 0
	for _, r := range recs {
		if r.Stats().Attempts > 0 {
			busy++
		}
	}
	assert.Greater(t, busy, 1, "the work is shared")
	ids := storedAttemptIDs(t, conn)
	assert.Len(t, ids, len(as))
	for _, a := range as {
		require.Equal(t, 1, ids[a.ID])
	}
}
