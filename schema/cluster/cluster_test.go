package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/record"
	"github.com/defender-go/defender/schema/cluster"
)

// TestRecorderThroughDistributed: two clickhouse-servers, each a shard of
// the cluster "defender" with the clustered schema (ReplacingMergeTree:
// no ZooKeeper here). The recorder, connected to the first, writes events
// (some delivered twice) through the Distributed tables; through either
// server record's query helpers list every id exactly once, newest first,
// across pages and time windows; each id's copies live on one shard, and
// both shards hold rows. record.Cleanup, run on each shard, removes the
// days past the expiration from both.
func TestRecorderThroughDistributed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ch := testenv.ClickHouseCluster(t, 2)
	conns := make([]driver.Conn, len(ch.Servers))
	for i, s := range ch.Servers {
		conn, err := record.Open(s.DSN())
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		conns[i] = conn
		require.NoError(t, cluster.Apply(ctx, conn, cluster.Options{Cluster: ch.Name}), "on %s", s.Addr)
		// Again, as after an upgrade that brought migrations: every
		// statement is idempotent, ADD COLUMN included.
		require.NoError(t, cluster.Apply(ctx, conn, cluster.Options{Cluster: ch.Name}), "again on %s", s.Addr)
		// The single-node migrations find the tables in place.
		_, err = record.Migrate(ctx, conn)
		require.NoError(t, err, "record.Migrate over the clustered schema")
		var engine string
		require.NoError(t, conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = 'defender' AND name = 'attempts'").Scan(&engine))
		require.Equal(t, "Distributed", engine)
		empty, _, err := record.QueryAttempts(ctx, conn, record.AttemptFilter{})
		require.NoError(t, err)
		assert.Empty(t, empty, "no attempt yet")
	}

	ns := testenv.NATS(t)
	nc, err := nats.Connect(ns.URL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = events.EnsureStream(ctx, js, events.StreamConfig{})
	require.NoError(t, err)
	// Attempts over the last four days, newest first; a redelivery of
	// some (the same event under another message id); a block.
	const n, again = 2000, 300
	now := time.Now().UTC().Truncate(time.Second)
	at := func(i int) time.Time {
		return now.Add(-time.Duration(i) * 173 * time.Second).Add(time.Duration(i%3) * time.Millisecond)
	}
	var ids []string
	publish := func(subject string, data []byte, msgID string) {
		_, err := js.PublishAsync(subject, data, jetstream.WithMsgID(msgID))
		require.NoError(t, err)
	}
	for i := 0; i < n; i++ {
		a := events.NewAttempt(gate.AttemptRecord{Time: at(i),
			IP: fmt.Sprintf("10.1.%d.%d", i/250, i%250), Username: fmt.Sprintf("user%d", i%40),
			Outcome: gate.OutcomeFailure, Path: "/login"}, "gate-a")
		data, err := a.Encode()
		require.NoError(t, err)
		publish(a.NATSSubject(events.Subjects{}), data, a.ID)
		if i < again {
			publish(a.NATSSubject(events.Subjects{}), data, a.ID+"-again")
		}
		ids = append(ids, a.ID)
	}
	b := events.NewBlock(gate.TransitionRecord{Time: now, Kind: gate.KindUsername, Subject: "user1", Blocked: true,
		Until: now.Add(time.Minute), Failures: 4, Reason: gate.ReasonAuto}, "gate-a")
	data, err := b.Encode()
	require.NoError(t, err)
	publish(b.NATSSubject(events.Subjects{}), data, b.ID)
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publish acks did not come")
	}

	rec, err := record.New(js, conns[0], record.Options{Flush: 200 * time.Millisecond, Batch: 500})
	require.NoError(t, err)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rec.Run(rctx) }()
	// Distributed inserts reach the other shard in the background.
	for i, conn := range conns {
		require.Eventually(t, func() bool {
			got, err := record.CountAttempts(ctx, conn, record.AttemptFilter{})
			return err == nil && got == n
		}, 30*time.Second, 100*time.Millisecond, "server %d counts every attempt once", i)
	}
	stop()
	require.NoError(t, <-done)

	for i, conn := range conns {
		// Pages small enough that many end among redelivered copies.
		var got []string
		f := record.AttemptFilter{Limit: 70}
		for {
			page, next, err := record.QueryAttempts(ctx, conn, f)
			require.NoError(t, err, "server %d", i)
			for _, a := range page {
				got = append(got, a.ID)
			}
			if next == nil {
				break
			}
			f.After = *next
		}
		require.Equal(t, ids, got, "server %d lists every attempt once, newest first", i)
		user, _, err := record.QueryAttempts(ctx, conn, record.AttemptFilter{Usernames: []string{"user7"}, Limit: record.MaxLimit})
		require.NoError(t, err)
		assert.Len(t, user, n/40, "server %d: one user's attempts", i)
		blocks, _, err := record.QueryBlocks(ctx, conn, record.BlockFilter{})
		require.NoError(t, err)
		require.Len(t, blocks, 1, "server %d: the block", i)
		assert.Equal(t, b.ID, blocks[0].ID)
		var parts uint64
		require.NoError(t, conn.QueryRow(ctx, "SELECT sum(rows) FROM defender.cluster_parts"+
			" WHERE database = 'defender' AND table = 'attempts_local' AND active").Scan(&parts))
		assert.GreaterOrEqual(t, parts, uint64(n), "server %d: cluster_parts sees both shards' rows", i)
	}

	// Each id's copies are on one shard; both shards hold some.
	shards := make([]map[string]bool, len(conns))
	total := 0
	for i, conn := range conns {
		rows, err := conn.Query(ctx, "SELECT DISTINCT toString(id) FROM defender.attempts_local")
		require.NoError(t, err)
		shards[i] = map[string]bool{}
		for rows.Next() {
			var id string
			require.NoError(t, rows.Scan(&id))
			shards[i][id] = true
		}
		require.NoError(t, rows.Err())
		rows.Close()
		assert.NotEmpty(t, shards[i], "shard %d holds rows", i)
		total += len(shards[i])
		t.Logf("shard %d: %d ids", i, len(shards[i]))
	}
	assert.Equal(t, n, total, "no id on two shards")

	// Each shard's views count the rows it stores; through either server
	// the Distributed tables over them add both shards' counts, a
	// redelivered copy counting as a row of its own (docs/DESIGN.md).
	week := now.Add(-7 * 24 * time.Hour)
	for i, conn := range conns {
		require.Eventually(t, func() bool {
			cs, err := record.AttemptCounts(ctx, conn, week, time.Hour)
			return err == nil && sumCounts(cs) == n+again
		}, 30*time.Second, 100*time.Millisecond, "server %d: the chart counts every stored row", i)
		top, err := record.Top(ctx, conn, "username", week, 100)
		require.NoError(t, err)
		require.Len(t, top, 40, "server %d: every user failed", i)
		total := 0
		for _, e := range top {
			total += e.Failures
			assert.InDelta(t, n/40, e.Failures, again/40+1, "server %d: %s", i, e.Value)
		}
		assert.Equal(t, n+again, total, "server %d: the top table counts every stored row", i)
		user, _, err := record.QueryAttempts(ctx, conn, record.AttemptFilter{Usernames: []string{"user7"}, Limit: 10})
		require.NoError(t, err)
		var want []string
		for j := 7; len(want) < 10; j += 40 {
			want = append(want, ids[j])
		}
		assert.Equal(t, want, idsOf(user), "server %d: one user's newest attempts, bounded by attempts_by_subject", i)
	}

	// Cleanup with a cutoff halfway between two attempts, a little over
	// three days ago: run on each shard, it removes the older attempts of
	// both.
	const kept = 1500
	keep := time.Since(at(kept)) - 86*time.Second
	for i, conn := range conns {
		_, err := record.Cleanup(ctx, conn, keep)
		require.NoError(t, err, "cleanup on shard %d", i)
	}
	for i, conn := range conns {
		got, err := record.CountAttempts(ctx, conn, record.AttemptFilter{})
		require.NoError(t, err)
		assert.EqualValues(t, kept, got, "server %d after cleanup", i)
		left, _, err := record.QueryAttempts(ctx, conn, record.AttemptFilter{Limit: record.MaxLimit})
		require.NoError(t, err)
		assert.Equal(t, ids[:kept], idsOf(left), "server %d lists what is left", i)
		// The views lose the days dropped whole, not the boundary day.
		cs, err := record.AttemptCounts(ctx, conn, time.Unix(0, 0), 24*time.Hour)
		require.NoError(t, err)
		require.NotEmpty(t, cs)
		for _, c := range cs {
			assert.False(t, c.Start.Before(time.Now().Add(-keep).Truncate(24*time.Hour)), "server %d: a view kept %s", i, c.Start)
		}
	}
}

func sumCounts(cs []record.Count) int {
	n := 0
	for _, c := range cs {
		n += int(c.N)
	}
	return n
}

func idsOf(as []events.Attempt) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}
