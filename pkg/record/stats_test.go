package record_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/record"
)

// TestTopInAHalfHourZone: attempts_top cuts hours where the server's time
// zone starts them, at :30 UTC in Asia/Kolkata. A top table whose whole
// hours began at the next UTC hour skipped the half hour between them: an
// attempt at 11:10 UTC in a window from 10:50 was counted nowhere.
func TestTopInAHalfHourZone(t *testing.T) {
	s := testenv.ClickHouseInZone(t, "Asia/Kolkata")
	conn, err := record.Open(s.DSN())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	ctx := context.Background()
	_, err = record.Migrate(ctx, conn)
	require.NoError(t, err)

	h0 := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	since := h0.Add(50 * time.Minute)
	b, err := conn.PrepareBatch(ctx, "INSERT INTO defender.attempts (id, ts, ts_ms, ip, username, result)")
	require.NoError(t, err)
	for _, at := range []time.Duration{55 * time.Minute, 70 * time.Minute, 160 * time.Minute, 40 * time.Minute} {
		// The last one is before the window.
		require.NoError(t, b.Append(uuid.Must(uuid.NewV7()), h0.Add(at), uint16(0), "203.0.113.5", "alice", "failure"))
	}
	require.NoError(t, b.Send())

	for _, by := range []string{"ip", "username"} {
		top, err := record.Top(ctx, conn, by, since, 10)
		require.NoError(t, err)
		require.Len(t, top, 1, by)
		assert.Equal(t, 3, top[0].Failures, "%s: the three attempts since %s", by, since.Format(time.TimeOnly))
	}
}
