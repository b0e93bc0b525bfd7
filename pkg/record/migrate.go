package record

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/defender-go/defender/schema"
)

// Migration is one schema file.
type Migration struct {
	// Version is the file's number, NNN in NNN_name.sql.
	Version uint32
	// Name is the file name.
	Name string
	// Statements are the file's statements, comments removed.
	Statements []string
}

// Migrations lists the embedded migrations in order of version.
func Migrations() ([]Migration, error) { return migrationsOf(schema.FS) }

func migrationsOf(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("schema files: %w", err)
	}
	var ms []Migration
	seen := map[uint32]string{}
	for _, name := range names {
		num, _, ok := strings.Cut(name, "_")
		if !ok {
			continue // bootstrap.sql
		}
		v, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("schema file %s: version %q is not a number", name, num)
		}
		if other, dup := seen[uint32(v)]; dup {
			return nil, fmt.Errorf("schema files %s and %s share version %d", other, name, v)
		}
		seen[uint32(v)] = name
		stmts, err := statements(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: uint32(v), Name: name, Statements: stmts})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// statements splits a schema file into statements: each ends with ';' at
// the end of a line; "--" comment lines are dropped.
func statements(fsys fs.FS, name string) ([]string, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("schema file %s: %w", name, err)
	}
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if strings.TrimSpace(cur.String()) != "" {
		return nil, fmt.Errorf("schema file %s: last statement does not end with ';'", path.Base(name))
	}
	return out, nil
}

// Migrate brings the schema up to date: it runs bootstrap.sql (database
// and schema_migrations), then every migration not yet recorded in
// defender.schema_migrations, in order, recording each. Running it again
// changes nothing; two processes running it at once both succeed (the
// statements are idempotent). It returns the versions it applied.
func Migrate(ctx context.Context, conn driver.Conn) ([]uint32, error) {
	boot, err := statements(schema.FS, "bootstrap.sql")
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
			if err := conn.Exec(ctx, stmt); err != nil {
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
