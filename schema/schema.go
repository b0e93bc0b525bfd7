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
// once may both apply a migration without harm.
//
// Everything must run on ClickHouse 18.16 (Debian 12) and on current
// releases: no DateTime64, no TTL, no LowCardinality, no data-skipping
// indexes, Enum8 with explicit values.
package schema

import "embed"

// FS holds bootstrap.sql and the NNN_name.sql migrations.
//
//go:embed *.sql
var FS embed.FS
