package record_test

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// TestClickHouseOutage stops ClickHouse for a while under a steady flow of
// events: afterwards every event is stored, and read, exactly once.
func TestClickHouseOutage(t *testing.T) {
	outage(t, 10*time.Second)
}

// TestClickHouseOutageLong is the same with a 30 s outage; it runs only
// with DEFENDER_LONG_TESTS=1.
func TestClickHouseOutageLong(t *testing.T) {
	if os.Getenv("DEFENDER_LONG_TESTS") == "" {
		t.Skip("set DEFENDER_LONG_TESTS=1 for the 30 s outage")
	}
	outage(t, 30*time.Second)
}

func outage(t *testing.T, down time.Duration) {
	ch, conn := ownClickHouse(t)
	_, js := natsStream(t)

	// Short timeouts so the test sees several retries and heartbeats.
	rec, _ := runRecorder(t, js, conn, record.Options{
		Batch: 2000, AckWait: 4 * time.Second, InsertTimeout: time.Second, RetryMax: time.Second,
	})
	var (
		mu        sync.Mutex
		published []string
		stop      atomic.Bool
		wg        sync.WaitGroup
	)
	// About 2000 events/s, in bursts of 100.
	wg.Go(func() {
		base := time.Now()
		for i := 0; !stop.Load(); i += 100 {
			as := make([]events.Attempt, 100)
			for j := range as {
				as[j] = newAttempt(i+j, base)
			}
			publishAttempts(t, js, as)
			mu.Lock()
			for _, a := range as {
				published = append(published, a.ID)
			}
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	})
	defer func() { stop.Store(true); wg.Wait() }()

	require.Eventually(t, func() bool { return rec.Stats().Attempts > 0 }, time.Minute, 20*time.Millisecond)
	ch.Kill()
	before := rec.Stats()
	time.Sleep(down) // the outage itself: nothing is asserted on its length
	require.NoError(t, ch.Start())
	require.Eventually(t, func() bool { return rec.Stats().Attempts > before.Attempts }, time.Minute, 50*time.Millisecond)
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	require.Eventually(t, func() bool { return countAttempts(t, conn) == uint64(len(published)) },
		time.Minute, 100*time.Millisecond)
	ids := storedAttemptIDs(t, conn)
	assert.Len(t, ids, len(published))
	for _, id := range published {
		require.Equal(t, 1, ids[id], "event %s", id)
	}
	after := rec.Stats()
	assert.Positive(t, after.Retries, "writes were retried during the outage")
	t.Logf("published %d events; outage %s; %d retries; %d rows written (%d redeliveries)",
		len(published), down, after.Retries, after.Attempts, after.Attempts-uint64(len(published)))

	ctx := context.Background()
	cons, err := js.Consumer(ctx, events.StreamName, record.DefaultConsumer)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ci, err := cons.Info(ctx)
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	}, 30*time.Second, 50*time.Millisecond)
}
