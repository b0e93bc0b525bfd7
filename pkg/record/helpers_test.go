package record_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

var subjects = events.Subjects{}

// natsStream starts an embedded NATS with the DEFENDER stream.
func natsStream(t testing.TB) (*testenv.NATSServer, jetstream.JetStream) {
	t.Helper()
	ns := testenv.NATS(t)
	nc, err := nats.Connect(ns.URL)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	require.NoError(t, err)
	_, err = events.EnsureStream(context.Background(), js, events.StreamConfig{Subjects: subjects})
	require.NoError(t, err)
	return ns, js
}

// newAttempt is the i-th test attempt, at base plus i ms.
func newAttempt(i int, base time.Time) events.Attempt {
	results := []string{events.ResultSuccess, events.ResultFailure, events.ResultBlocked}
	a := events.Attempt{
		V:                events.Version,
		Type:             events.TypeAttempt,
		ID:               events.NewID(),
		Time:             base.Add(time.Duration(i) * time.Millisecond).UTC().Truncate(time.Millisecond),
		IP:               fmt.Sprintf("10.0.%d.%d", i/250%250, i%250),
		Username:         fmt.Sprintf("user%d", i%50),
		Result:           results[i%3],
		Path:             "/login",
		UserAgent:        "test/1.0",
		Gate:             "gate-a",
		IPFailures:       i % 7,
		UsernameFailures: i % 5,
		PairFailures:     i % 3,
	}
	if a.Result == events.ResultBlocked {
		a.BlockedBy = []string{events.KindIP, events.KindUsername}
	}
	return a
}

// publishAttempts publishes attempts asynchronously with their ids as
// message ids and waits for every acknowledgement.
func publishAttempts(t testing.TB, js jetstream.JetStream, as []events.Attempt) {
	t.Helper()
	wait := func() {
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			t.Fatal("publish acks did not come")
		}
	}
	for i := range as {
		data, err := as[i].Encode()
		require.NoError(t, err)
		_, err = js.PublishAsync(as[i].NATSSubject(subjects), data, jetstream.WithMsgID(as[i].ID))
		require.NoError(t, err)
		if i%1000 == 999 { // stay below the 4096 acks allowed in flight
			wait()
		}
	}
	wait()
}

// publishRaw publishes data on subject and waits for the stream's ack.
func publishRaw(t testing.TB, js jetstream.JetStream, subject string, data []byte, msgID string) {
	t.Helper()
	opts := []jetstream.PublishOpt{}
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	_, err := js.Publish(context.Background(), subject, data, opts...)
	require.NoError(t, err)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// runRecorder runs a recorder until the test ends (or stop is called) and
// checks that Run returned nil.
func runRecorder(t testing.TB, js jetstream.JetStream, conn driver.Conn, opts record.Options) (r *record.Recorder, stop func()) {
	t.Helper()
	if opts.Flush == 0 {
		opts.Flush = 200 * time.Millisecond
	}
	r, err := record.New(js, conn, opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = r.Run(ctx) })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			require.NoError(t, runErr, "Run")
		})
	}
	t.Cleanup(stop)
	return r, stop
}

// storedAttemptIDs pages through every attempt with QueryAttempts and
// returns how often each id was listed.
func storedAttemptIDs(t testing.TB, conn driver.Conn) map[string]int {
	t.Helper()
	seen := map[string]int{}
	f := record.AttemptFilter{Limit: record.MaxLimit}
	for {
		page, next, err := record.QueryAttempts(context.Background(), conn, f)
		require.NoError(t, err)
		for _, a := range page {
			seen[a.ID]++
		}
		if next == nil {
			return seen
		}
		require.Equal(t, record.CursorOf(page[len(page)-1]), *next, "the next page starts after this one's last row")
		f.After = *next
	}
}

// countAttempts counts the distinct stored attempts.
func countAttempts(t testing.TB, conn driver.Conn) uint64 {
	t.Helper()
	n, err := record.CountAttempts(context.Background(), conn, record.AttemptFilter{})
	require.NoError(t, err)
	return n
}

// physicalRows counts a table's rows, duplicates included.
func physicalRows(t testing.TB, conn driver.Conn, table string) uint64 {
	t.Helper()
	var n uint64
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count() FROM defender."+table).Scan(&n))
	return n
}
