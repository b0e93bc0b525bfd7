package record

import (
	"embed"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/defender-go/defender/internal/redact"
)

// Database is the ClickHouse database of defender's tables. The schema
// names it in every statement.
const Database = "defender"

// ErrBadURL is wrapped by Open's errors about the URL itself.
var ErrBadURL = errors.New("record: bad ClickHouse URL")

//go:embed insert_attempts.sql insert_blocks.sql
var queries embed.FS

// query returns an embedded statement.
func query(name string) string {
	b, err := queries.ReadFile(name)
	if err != nil {
		panic(fmt.Sprintf("record: embedded query %s: %v", name, err))
	}
	return strings.TrimSpace(string(b))
}

var (
	insertAttempts = query("insert_attempts.sql")
	insertBlocks   = query("insert_blocks.sql")
)

// ParseURL checks a DEFENDER_CLICKHOUSE_URL ("clickhouse://host:9000/defender",
// several hosts as "host1:9000,host2:9000", user and password in the URL,
// options as clickhouse-go's DSN) and returns the client options. Its
// database must be empty or "defender": the schema names its database.
// The connection itself uses "default", which always exists, so that
// Migrate can create defender.
func ParseURL(dsn string) (*clickhouse.Options, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadURL, redact.URLError(dsn, err))
	}
	if u.Scheme != "clickhouse" && u.Scheme != "tcp" {
		return nil, fmt.Errorf("%w: scheme %q, want clickhouse:// (native protocol; HTTP does not work with 18.16)", ErrBadURL, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: no host", ErrBadURL)
	}
	if db := strings.Trim(u.Path, "/"); db != "" && db != Database {
		return nil, fmt.Errorf("%w: database %q, the schema's is %q", ErrBadURL, db, Database)
	}
	u.Path = "/default"
	opts, err := clickhouse.ParseDSN(u.String())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	if opts.DialTimeout == 0 || opts.DialTimeout == 30*time.Second {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.Compression == nil {
		opts.Compression = &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
	}
	return opts, nil
}

// Open returns a pooled connection to ClickHouse at dsn (see ParseURL).
// It dials lazily: a server that is down now is no error here, so a
// recorder may start before ClickHouse. Close it when done.
func Open(dsn string) (driver.Conn, error) {
	opts, err := ParseURL(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse open %s: %w", strings.Join(opts.Addr, ","), err)
	}
	return conn, nil
}
