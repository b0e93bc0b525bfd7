// Package schema holds defender's ClickHouse schema as SQL files, embedded
// so every binary carries the schema it expects.
//
// bootstrap.sql creates the database and the schema_migrations table; it is
// run before anything else, every time, and must stay idempotent.
// NNN_name.sql files are the migrations, applied once each in the order of
// their number and recorded in defender.schema_migrations (see
// record.Migrate). A file may hold several statements, each ending with ';'
// at the end of a line; lines starting with "--" are comments. Statements
// should be idempotent (IF NOT EXISTS) so that two recorders starting at
// once may both apply a migration without harm, and so that a migration
// that failed halfway can run again. 18.16 has no ADD COLUMN IF NOT
// EXISTS: write "ALTER TABLE defender.<table> ADD COLUMN <column> <type>",
// one column a statement, and Exec counts it as done when the column
// exists already.
//
// Everything must run on ClickHouse 18.16 (Debian 12) and on current
// releases: no DateTime64, no TTL, no LowCardinality, no data-skipping
// indexes, Enum8 with explicit values.
//
// The clustered variant (package schema/cluster) is derived from these
// migrations, so the tables are written once, here: a migration holds
// CREATE TABLE IF NOT EXISTS defender.<table>, ALTER TABLE
// defender.<table> and CREATE MATERIALIZED VIEW IF NOT EXISTS
// defender.<view> ... FROM defender.<table> statements only.
package schema

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// FS holds bootstrap.sql and the NNN_name.sql migrations.
//
//go:embed *.sql
var FS embed.FS

// Migration is one schema file.
type Migration struct {
	// Version is the file's number, NNN in NNN_name.sql.
	Version uint32
	// Name is the file name.
	Name string
	// Statements are the file's statements, comments removed.
	Statements []string
}

// Migrations lists the migrations of FS in order of version.
func Migrations() ([]Migration, error) { return MigrationsOf(FS) }

// MigrationsOf lists the NNN_name.sql migrations of fsys in order of
// version; other .sql files (bootstrap.sql) are not migrations.
func MigrationsOf(fsys fs.FS) ([]Migration, error) {
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
		stmts, err := Statements(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: uint32(v), Name: name, Statements: stmts})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// Statements splits the schema file name of fsys into statements.
func Statements(fsys fs.FS, name string) ([]string, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("schema file %s: %w", name, err)
	}
	stmts, err := Split(string(b))
	if err != nil {
		return nil, fmt.Errorf("schema file %s: %w", name, err)
	}
	return stmts, nil
}

// Split cuts SQL into statements: each ends with ';' at the end of a
// line, which is not part of the statement; "--" comment lines and blank
// lines are dropped, other lines kept as they are.
func Split(sql string) ([]string, error) {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
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
		return nil, errors.New("last statement does not end with ';'")
	}
	return out, nil
}

// Execer runs one statement: a clickhouse-go driver.Conn.
type Execer interface {
	Exec(ctx context.Context, query string, args ...any) error
}

// addColumn matches "ALTER TABLE <db>.<table>[ ON CLUSTER <name>] ADD
// COLUMN <column> ...", the form of a migration's new column.
var addColumn = regexp.MustCompile(`^ALTER TABLE [A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*(?: ON CLUSTER [A-Za-z_][A-Za-z0-9_]*)? ADD COLUMN ([A-Za-z_][A-Za-z0-9_]*) `)

// Exec runs one statement of a migration on conn. An ADD COLUMN whose
// column exists already counts as done: 18.16 has no ADD COLUMN IF NOT
// EXISTS, and a migration may run twice (two recorders starting at once,
// or again after it failed halfway). 18.16 and current releases word that
// error alike ("Cannot add column <c>: column with this name already
// exists"), whatever its code.
func Exec(ctx context.Context, conn Execer, stmt string) error {
	err := conn.Exec(ctx, stmt)
	if err != nil && addColumn.MatchString(stmt) && strings.Contains(err.Error(), "column with this name already exists") {
		return nil
	}
	return err
}
