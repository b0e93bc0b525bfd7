package record_test

import (
	"context"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/record"
)

func TestMigrations(t *testing.T) {
	ms, err := record.Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	for i, m := range ms {
		assert.NotEmpty(t, m.Statements, m.Name)
		if i > 0 {
			assert.Greater(t, m.Version, ms[i-1].Version)
		}
	}
}

func TestMigrateIdempotent(t *testing.T) {
	_, conn := sharedClickHouse(t) // migrated once already
	ctx := context.Background()
	before := schemaState(t, conn)

	ran, err := record.Migrate(ctx, conn)
	require.NoError(t, err)
	assert.Empty(t, ran, "second run applies nothing")
	assert.Equal(t, before, schemaState(t, conn))

	ms, err := record.Migrations()
	require.NoError(t, err)
	applied, err := record.AppliedMigrations(ctx, conn)
	require.NoError(t, err)
	var want []uint32
	for _, m := range ms {
		want = append(want, m.Version)
	}
	assert.Equal(t, want, applied)
	var rows uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM defender.schema_migrations").Scan(&rows))
	assert.EqualValues(t, len(ms), rows, "one schema_migrations row per version")

	// From scratch: every migration runs and is recorded.
	require.NoError(t, conn.Exec(ctx, "DROP DATABASE defender"))
	ran, err = record.Migrate(ctx, conn)
	require.NoError(t, err)
	assert.Equal(t, want, ran)
	assert.Equal(t, before, schemaState(t, conn))
}

// schemaState describes the defender tables: engine, keys and columns.
func schemaState(t *testing.T, conn driver.Conn) []string {
	t.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, "SELECT concat(table, ' ', name, ' ', type) FROM system.columns"+
		" WHERE database = 'defender' ORDER BY table, name")
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	for _, table := range []string{"attempts", "blocks"} {
		var engine string
		require.NoError(t, conn.QueryRow(ctx, "SELECT engine_full FROM system.tables WHERE database = 'defender' AND name = ?", table).Scan(&engine))
		out = append(out, table+" "+engine)
	}
	return out
}
