package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

func TestClickHouseRestart(t *testing.T) {
	s := testenv.ClickHouse(t)
	ctx := context.Background()
	conn := s.Open(t)
	var v string
	require.NoError(t, conn.QueryRow(ctx, "SELECT version()").Scan(&v))
	t.Logf("clickhouse %s on %s", v, s.Addr)
	require.NoError(t, conn.Exec(ctx, "CREATE TABLE default.keep (x UInt8) ENGINE = MergeTree ORDER BY x"))
	// 18.16 waits for the rows of an INSERT ... VALUES sent with Exec as
	// data blocks: insert through a batch.
	b, err := conn.PrepareBatch(ctx, "INSERT INTO default.keep (x)")
	require.NoError(t, err)
	require.NoError(t, b.Append(uint8(7)))
	require.NoError(t, b.Send())

	t0 := time.Now()
	s.Stop()
	t.Logf("stop %s", time.Since(t0))
	t0 = time.Now()
	require.Error(t, conn.Ping(ctx))
	require.NoError(t, s.Start())
	t.Logf("start %s", time.Since(t0))

	var n uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM default.keep").Scan(&n))
	require.EqualValues(t, 1, n, "data survives a restart")
}
