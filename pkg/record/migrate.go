package record

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/defender-go/defender/schema"
)

// Migration is one schema file (see package schema).
type Migration = schema.Migration

// Migrations lists the embedded migrations in order of version.
func Migrations() ([]Migration, error) { return schema.Migrations() }

// Migrate brings the schema up to date: it runs bootstrap.sql (database
// and schema_migrations), then every migration not yet recorded in
// defender.schema_migrations, in order, recording each. Running it again
// changes nothing; two processes running it at once both succeed (the
// statements are idempotent). It returns the versions it applied.
func Migrate(ctx context.Context, conn driver.Conn) ([]uint32, error) {
	boot, err := schema.Statements(schema.FS, "bootstrap.sql")
	if err != nil {
		return nil, err
	}
	for _, stmt := range boot {
		if err := conn.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("schema bootstrap: %w", err)
		}
	}
	applied, err := AppliedMigrations(ctx, conn)
	if err != nil {
		return nil, err
	}
	done := map[uint32]bool{}
	for _, v := range applied {
		done[v] = true
	}
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	var ran []uint32
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		for i, stmt := range m.Statements {
			if err := schema.Exec(ctx, conn, stmt); err != nil {
				return ran, fmt.Errorf("migration %s statement %d: %w", m.Name, i+1, err)
			}
		}
		b, err := conn.PrepareBatch(ctx, "INSERT INTO defender.schema_migrations (version, name, applied_at)")
		if err != nil {
			return ran, fmt.Errorf("record migration %s: %w", m.Name, err)
		}
		if err := b.Append(m.Version, m.Name, time.Now()); err != nil {
			return ran, fmt.Errorf("record migration %s: %w", m.Name, err)
		}
		if err := b.Send(); err != nil {
			return ran, fmt.Errorf("record migration %s: %w", m.Name, err)
		}
		slog.InfoContext(ctx, "clickhouse migration applied", "version", m.Version, "name", m.Name)
		ran = append(ran, m.Version)
	}
	return ran, nil
}

// AppliedMigrations returns the versions recorded in
// defender.schema_migrations, ascending.
func AppliedMigrations(ctx context.Context, conn driver.Conn) ([]uint32, error) {
	rows, err := conn.Query(ctx, "SELECT DISTINCT version FROM defender.schema_migrations ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	var vs []uint32
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return vs, nil
}
