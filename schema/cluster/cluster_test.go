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
// (some delivered twice) through the Distributed tables; queries through
// either server list every id exactly once, each id's copies live on one
// shard, and both shards hold rows.
func TestRecorderThroughDistributed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ch := testenv.ClickHouseCluster(t, 2)
	stmts, err := cluster.Statements(cluster.Options{Cluster: ch.Name})
	require.NoError(t, err)
	conns := make([]driver.Conn, len(ch.Servers))
	for i, s := range ch.Servers {
		conn, err := record.Open(s.DSN())
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		conns[i] = conn
		for _, stmt := range stmts {
			require.NoError(t, conn.Exec(ctx, stmt), "on %s: %s", s.Addr, stmt)
		}
		// The single-node migrations find the tables in place.
		_, err = record.Migrate(ctx, conn)
		require.NoError(t, err, "record.Migrate over the clustered schema")
		var engine string
		require.NoError(t, conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = 'defender' AND name = 'attempts'").Scan(&engine))
		require.Equal(t, "Distributed", engine)
	}

	ns := testenv.NATS(t)
	nc, err := nats.Connect(ns.URL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = events.EnsureStream(ctx, js, events.StreamConfig{})
	require.NoError(t, err)
	const n, again = 2000, 300
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	var ids []string
	publish := func(subject string, data []byte, msgID string) {
		_, err := js.PublishAsync(subject, data, jetstream.WithMsgID(msgID))
		require.NoError(t, err)
	}
	for i := 0; i < n; i++ {
		a := events.NewAttempt(gate.AttemptRecord{Time: base.Add(time.Duration(i) * time.Millisecond),
			IP: fmt.Sprintf("10.1.%d.%d", i/250, i%250), Username: fmt.Sprintf("user%d", i%40),
			Outcome: gate.OutcomeFailure, Path: "/login"}, "gate-a")
		data, err := a.Encode()
		require.NoError(t, err)
		publish(a.NATSSubject(events.Subjects{}), data, a.ID)
		if i < again { // a redelivery: the same event under another message id
			publish(a.NATSSubject(events.Subjects{}), data, a.ID+"-again")
		}
		ids = append(ids, a.ID)
	}
	b := events.NewBlock(gate.TransitionRecord{Time: base, Kind: gate.KindUsername, Subject: "user1", Blocked: true,
		Until: base.Add(time.Minute), Failures: 4, Reason: gate.ReasonAuto}, "gate-a")
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
		// The listing query of record's helpers, through the Distributed
		// table. (record.QueryAttempts itself sizes its time windows from
		// system.parts, which lists no parts for a Distributed table:
		// defender.cluster_parts is the cluster-wide view it would read.)
		rows, err := conn.Query(ctx, "SELECT toString(id) FROM defender.attempts"+
			" WHERE ts >= toDateTime(?) ORDER BY ts DESC, ts_ms DESC, id DESC LIMIT 1 BY id LIMIT 100000",
			base.Add(-time.Minute).Unix())
		require.NoError(t, err)
		seen := map[string]int{}
		for rows.Next() {
			var id string
			require.NoError(t, rows.Scan(&id))
			seen[id]++
		}
		require.NoError(t, rows.Err())
		rows.Close()
		require.Len(t, seen, n, "server %d lists every attempt", i)
		for _, id := range ids {
			assert.Equal(t, 1, seen[id], "server %d lists %s once", i, id)
		}
		var blocks uint64
		require.NoError(t, conn.QueryRow(ctx, "SELECT uniqExact(id) FROM defender.blocks").Scan(&blocks))
		assert.EqualValues(t, 1, blocks, "server %d: the block", i)
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
}
