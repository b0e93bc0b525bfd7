package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/record"
	"github.com/defender-go/defender/schema/cluster"
)

// TestHistoryOnCluster: the attempts listing (History.Attempts, and the
// CLI's admin attempts over it) and a subject's blocks on the clustered
// schema, two clickhouse-servers as shards behind Distributed tables,
// with a third of the attempts stored twice as a redelivery leaves them
// until parts merge. Through either server every attempt is listed once,
// newest first, across pages.
func TestHistoryOnCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ch := testenv.ClickHouseCluster(t, 2)
	for _, s := range ch.Servers {
		conn := s.Open(t)
		require.NoError(t, cluster.Apply(ctx, conn, cluster.Options{Cluster: ch.Name}))
		_, err := record.Migrate(ctx, conn)
		require.NoError(t, err)
	}

	const n = 600
	now := time.Now().UTC().Truncate(time.Second)
	ids := make([]uuid.UUID, n) // newest first
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
	}
	at := func(i int) time.Time { return now.Add(-time.Duration(i) * 97 * time.Second) }
	conn := ch.Servers[0].Open(t)
	insert := func(from, to int) {
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO defender.attempts (id, ts, ts_ms, ip, username, result, path, user_agent)")
		require.NoError(t, err)
		for i := from; i < to; i++ {
			require.NoError(t, batch.Append(ids[i], at(i), uint16(i%3), fmt.Sprintf("10.0.%d.%d", i/250, i%250),
				fmt.Sprintf("user%d", i%20), "failure", "/login", "test"))
		}
		require.NoError(t, batch.Send())
	}
	insert(0, n)
	insert(0, n/3) // the copies, in parts of their own
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO defender.blocks (id, ts, ts_ms, type, kind, subject, until, permanent, failures, reason)")
	require.NoError(t, err)
	for i := 0; i < 2; i++ { // one block, stored twice
		require.NoError(t, batch.Append(ids[0], now, uint16(0), "block", "username", "user0", now.Add(time.Hour), uint8(0), uint32(4), "auto"))
	}
	require.NoError(t, batch.Send())

	for i, s := range ch.Servers {
		h, err := openHistory(s.DSN())
		require.NoError(t, err)
		t.Cleanup(func() { _ = h.Close() })
		// Distributed inserts reach the other shard in the background.
		require.Eventually(t, func() bool {
			got, err := record.CountAttempts(ctx, h.conn, record.AttemptFilter{})
			return err == nil && got == n
		}, time.Minute, 100*time.Millisecond, "server %d counts every attempt", i)

		var got []string
		f := record.AttemptFilter{Limit: 70}
		for {
			rows, next, err := h.Attempts(ctx, f)
			require.NoError(t, err, "server %d", i)
			for _, r := range rows {
				got = append(got, r.ID)
			}
			if next == nil {
				break
			}
			f.After = *next
		}
		want := make([]string, n)
		for j, id := range ids {
			want[j] = id.String()
		}
		require.Equal(t, want, got, "server %d lists every attempt once, newest first", i)

		blocks, err := h.Blocks(ctx, "username", "user0", 10)
		require.NoError(t, err)
		assert.Len(t, blocks, 1, "server %d lists the block once", i)

		// The CLI, one page of everything.
		var out, errOut bytes.Buffer
		env := map[string]string{"DEFENDER_CLICKHOUSE_URL": s.DSN()}
		code := run(ctx, []string{"attempts", "--json", "--limit", "1000", "--since", "30d"}, &out, &errOut,
			func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		require.Zero(t, code, errOut.String())
		var page AttemptPage
		require.NoError(t, json.Unmarshal(out.Bytes(), &page))
		require.Len(t, page.Attempts, n, "server %d: admin attempts", i)
		for j, a := range page.Attempts {
			assert.Equal(t, want[j], a.ID, "server %d: admin attempts row %d", i, j)
		}
	}
}
