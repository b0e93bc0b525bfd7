package record

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/defender-go/defender/pkg/events"
)

// Query limits.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// ErrBadCursor is returned by ParseCursor for a token it did not make.
var ErrBadCursor = errors.New("record: bad cursor")

// Cursor marks a place in the newest-first order (time, then id, both
// descending): a page asks for what comes after the last row of the
// previous one. The zero Cursor means "from the newest".
type Cursor struct {
	// Time of the row, to the millisecond.
	Time time.Time
	// ID of the row, a UUID.
	ID string
}

// IsZero reports whether c is the zero Cursor.
func (c Cursor) IsZero() bool { return c.ID == "" && c.Time.IsZero() }

// String encodes the cursor as an opaque token for a URL
// ("<unix ms>_<id>").
func (c Cursor) String() string {
	if c.IsZero() {
		return ""
	}
	return strconv.FormatInt(c.Time.UnixMilli(), 10) + "_" + c.ID
}

// ParseCursor decodes a token from Cursor.String; "" is the zero Cursor.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	ms, id, ok := strings.Cut(s, "_")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		return Cursor{}, fmt.Errorf("%w: %q", ErrBadCursor, s)
	}
	if _, err := uuid.Parse(id); err != nil {
		return Cursor{}, fmt.Errorf("%w: %q", ErrBadCursor, s)
	}
	return Cursor{Time: time.UnixMilli(n).UTC(), ID: id}, nil
}

// AttemptFilter selects attempts. Zero fields do not filter.
type AttemptFilter struct {
	// Username and IP match exactly.
	Username, IP string
	// Result is success, failure or blocked.
	Result string
	// Since (inclusive) and Until (exclusive) bound the time, to the ms.
	Since, Until time.Time
	// Limit is the page size: DefaultLimit when 0, at most MaxLimit.
	// CountAttempts ignores it.
	Limit int
	// After continues a listing after the cursor of its previous page's
	// last row. CountAttempts ignores it.
	After Cursor
}

// BlockFilter selects blocks and unblocks. Zero fields do not filter.
type BlockFilter struct {
	// Type is block or unblock.
	Type string
	// Kind is one of gate.Kinds (events.ValidKind).
	Kind string
	// Subject is the blocked IP, username, pair or network, matched exactly.
	Subject string
	// Since, Until, Limit and After as in AttemptFilter.
	Since, Until time.Time
	Limit        int
	After        Cursor
}

// where collects a query's conditions and their bound arguments: every
// value goes through a placeholder, never into the SQL text.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w *where) eq(column, value string) {
	if value != "" {
		w.add(column+" = ?", value)
	}
}

// timeRange bounds ts to [since, until) to the millisecond. The plain
// comparisons on ts let ClickHouse use the primary index and partitions;
// the tuple ones are exact.
//
// Bounds are first clamped to DateTime's range, which holds every row:
// toDateTime wraps a value outside it round modulo 2^32 (1960 became 2096).
func (w *where) timeRange(since, until time.Time) {
	if !since.IsZero() {
		since = InDateTime(since)
		w.add("ts >= toDateTime(?)", since.Unix())
		w.add("(ts, ts_ms) >= (toDateTime(?), ?)", since.Unix(), msPart(since))
	}
	if !until.IsZero() {
		until = InDateTime(until)
		w.add("ts <= toDateTime(?)", until.Unix())
		w.add("(ts, ts_ms) < (toDateTime(?), ?)", until.Unix(), msPart(until))
	}
}

func (w *where) after(c Cursor) error {
	if c.IsZero() {
		return nil
	}
	if _, err := uuid.Parse(c.ID); err != nil {
		return fmt.Errorf("%w: id %q", ErrBadCursor, c.ID)
	}
	at := InDateTime(c.Time)
	w.add("ts <= toDateTime(?)", at.Unix())
	w.add("(ts, ts_ms, id) < (toDateTime(?), ?, toUUID(?))", at.Unix(), msPart(at), c.ID)
	return nil
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// InDateTime clamps t to DateTime's range [1970, 2106]: toDateTime wraps
// a value outside it round modulo 2^32. No row lies outside it, so a
// clamped bound selects the same rows as t.
func InDateTime(t time.Time) time.Time {
	switch {
	case t.Before(minTime):
		return minTime
	case t.After(maxTime):
		return maxTime
	}
	return t
}

func msPart(t time.Time) uint16 { return uint16(t.Nanosecond() / int(time.Millisecond)) }

func limitOf(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

func (f *AttemptFilter) where() (*where, error) {
	w := &where{}
	w.eq("username", f.Username)
	w.eq("ip", f.IP)
	if f.Result != "" {
		if f.Result != events.ResultSuccess && f.Result != events.ResultFailure && f.Result != events.ResultBlocked {
			return nil, fmt.Errorf("record: result %q is not success, failure or blocked", f.Result)
		}
		w.eq("result", f.Result)
	}
	w.timeRange(f.Since, f.Until)
	return w, nil
}

var attemptColumns = strings.Join([]string{
	"id", "ts", "ts_ms", "ip", "username", "result", "blocked_by", "path", "user_agent", "gate",
	"ip_failures", "username_failures", "pair_failures", "observe", "shared", "familiar",
}, ", ")

var blockColumns = strings.Join([]string{
	"id", "ts", "ts_ms", "type", "kind", "subject", "until", "permanent", "failures", "reason", "gate", "observe",
}, ", ")

// QueryAttempts returns the attempts matching f, newest first, each event
// id once however many times it was stored. Pass the Cursor of the last
// row (CursorOf) as f.After to get the next page; fewer than the limit
// means there is no more.
//
// It reads the table in time windows walking back from the newest row and
// growing fourfold (1 h, 4 h, 16 h, ...) until the page is full, so a page
// costs about the rows of the window it ends in, not the whole table —
// ClickHouse 18.16 cannot stop a "newest first" scan early by itself.
func QueryAttempts(ctx context.Context, conn driver.Conn, f AttemptFilter) ([]events.Attempt, error) {
	w, err := f.where()
	if err != nil {
		return nil, err
	}
	if err := w.after(f.After); err != nil {
		return nil, err
	}
	return newestFirst(ctx, conn, "attempts", attemptColumns, w, f.Since, f.Until, f.After, limitOf(f.Limit), scanAttempt)
}

// CountAttempts counts the distinct attempts matching f (Limit and After
// are ignored).
func CountAttempts(ctx context.Context, conn driver.Conn, f AttemptFilter) (uint64, error) {
	w, err := f.where()
	if err != nil {
		return 0, err
	}
	var n uint64
	q := "SELECT uniqExact(id) FROM defender.attempts" + w.sql()
	if err := conn.QueryRow(ctx, q, w.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count attempts: %w", err)
	}
	return n, nil
}

// QueryBlocks returns the blocks and unblocks matching f, newest first,
// each event id once, paged like QueryAttempts.
func QueryBlocks(ctx context.Context, conn driver.Conn, f BlockFilter) ([]events.Block, error) {
	w := &where{}
	switch f.Type {
	case "", string(events.TypeBlock), string(events.TypeUnblock):
		w.eq("type", f.Type)
	default:
		return nil, fmt.Errorf("record: type %q is not block or unblock", f.Type)
	}
	if f.Kind != "" && !events.ValidKind(f.Kind) {
		return nil, fmt.Errorf("record: kind %q is no kind of block", f.Kind)
	}
	w.eq("kind", f.Kind)
	w.eq("subject", f.Subject)
	w.timeRange(f.Since, f.Until)
	if err := w.after(f.After); err != nil {
		return nil, err
	}
	return newestFirst(ctx, conn, "blocks", blockColumns, w, f.Since, f.Until, f.After, limitOf(f.Limit), scanBlock)
}

// CursorOf is the cursor after attempt a.
func CursorOf(a events.Attempt) Cursor { return Cursor{Time: a.Time, ID: a.ID} }

// BlockCursorOf is the cursor after block b.
func BlockCursorOf(b events.Block) Cursor { return Cursor{Time: b.Time, ID: b.ID} }

// firstWindow is the span of the first time window newestFirst reads.
const firstWindow = time.Hour

// newestFirst runs "SELECT cols FROM table WHERE w ORDER BY ts, ts_ms, id
// DESC LIMIT 1 BY id LIMIT n" (through QueryNewest) over growing time
// windows, from the newest row in range back to the oldest, until limit
// rows are found.
func newestFirst[T any](ctx context.Context, conn driver.Conn, table, cols string, w *where,
	since, until time.Time, after Cursor, limit int, scan func(driver.Rows) (T, error)) ([]T, error) {
	lo, hi, ok, err := tableSpan(ctx, conn, table)
	if err != nil || !ok {
		return nil, err
	}
	// Windows are whole seconds [from, to) on ts.
	to := hi.Add(time.Second)
	if !until.IsZero() && until.Before(to) {
		to = until.Truncate(time.Second).Add(time.Second)
	}
	if !after.IsZero() && after.Time.Before(to) {
		to = after.Time.Truncate(time.Second).Add(time.Second)
	}
	floor := lo
	if !since.IsZero() && since.After(floor) {
		floor = since.Truncate(time.Second)
	}
	var out []T
	for span := firstWindow; len(out) < limit && to.After(floor); span *= 4 {
		from := to.Add(-span)
		if from.Before(floor) {
			from = floor
		}
		q := "SELECT " + cols + " FROM " + Database + "." + table + w.sql() +
			andWord(w) + "ts >= toDateTime(?) AND ts < toDateTime(?)"
		args := append(append([]any{}, w.args...), from.Unix(), to.Unix())
		rows, err := QueryNewest(ctx, conn, q, limit-len(out), args...)
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", table, err)
		}
		for rows.Next() {
			v, err := scan(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("query %s: %w", table, err)
			}
			out = append(out, v)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", table, err)
		}
		to = from
	}
	return out, nil
}

// newestOrder is the order of every listing: newest first, ties broken
// by id as in the sorting key.
const newestOrder = " ORDER BY ts DESC, ts_ms DESC, id DESC"

// QueryNewest runs a listing: sel is "SELECT <columns> FROM
// defender.<table> [WHERE ...]" with args for its placeholders, selecting
// at least the columns id, ts and ts_ms; the rows are the newest limit
// rows it selects, newest first, each event id once.
//
// It runs "sel ORDER BY ts DESC, ts_ms DESC, id DESC LIMIT 1 BY id LIMIT
// limit" on every shard and merges the shards' pages, which is exact on a
// single node and on the clustered schema (package schema/cluster), whose
// sharding key keeps every copy of an event on one shard. Sent to a
// Distributed table as one query, 18.16 would have each shard cut its
// rows to the limit before the copies of an event are collapsed, and
// then skip rows of the shard whose page held copies.
func QueryNewest(ctx context.Context, conn driver.Conn, sel string, limit int, args ...any) (driver.Rows, error) {
	n := strconv.Itoa(limit)
	q := "SELECT * FROM (" + sel + newestOrder + " LIMIT 1 BY id LIMIT " + n + ")" + newestOrder + " LIMIT " + n
	return conn.Query(clickhouse.Context(ctx, clickhouse.WithSettings(perShard)), q, args...)
}

// perShard has a query over a Distributed table run whole by every shard,
// the initiator only passing the shards' rows on to the outer query.
var perShard = clickhouse.Settings{"distributed_group_by_no_merge": 1}

func andWord(w *where) string {
	if len(w.conds) == 0 {
		return " WHERE "
	}
	return " AND "
}

// tableSpan returns the oldest and newest ts of a table's rows, from the
// metadata of its active parts (no scan). ok is false for an empty table.
//
// A Distributed table (the clustered schema, package schema/cluster) has
// no parts of its own: its rows are in <table>_local on every shard, whose
// parts the view defender.cluster_parts lists from any node. (18.16 has no
// clusterAllReplicas, and remote() would need the shards' addresses.)
// Only when the local system.parts lists no row does tableSpan ask which
// kind of table it is, so a single node still costs one query.
func tableSpan(ctx context.Context, conn driver.Conn, table string) (lo, hi time.Time, ok bool, err error) {
	lo, hi, rows, err := partsSpan(ctx, conn, "system.parts", table)
	if err == nil && rows == 0 {
		var dist bool
		if dist, err = distributed(ctx, conn, table); err == nil && dist {
			lo, hi, rows, err = partsSpan(ctx, conn, Database+".cluster_parts", table+"_local")
		}
	}
	if err != nil || rows == 0 {
		return lo, hi, false, err
	}
	if hi.Unix() <= 0 { // a server that keeps no min/max time: scan it all
		lo, hi = minTime, time.Now().Add(24*time.Hour)
	}
	return lo, hi, true, nil
}

// partsSpan reads the time span and row count of table's active parts as
// listed by parts (system.parts or a Distributed table over it).
func partsSpan(ctx context.Context, conn driver.Conn, parts, table string) (lo, hi time.Time, rows uint64, err error) {
	q := "SELECT min(min_time), max(max_time), sum(rows) FROM " + parts +
		" WHERE database = '" + Database + "' AND table = ? AND active"
	if err := conn.QueryRow(ctx, q, table).Scan(&lo, &hi, &rows); err != nil {
		return lo, hi, 0, fmt.Errorf("span of %s: %w", table, err)
	}
	return lo, hi, rows, nil
}

// distributed reports whether defender.<table> is a Distributed table.
func distributed(ctx context.Context, conn driver.Conn, table string) (bool, error) {
	var n uint64
	q := "SELECT count() FROM system.tables WHERE database = '" + Database + "' AND name = ? AND engine = 'Distributed'"
	if err := conn.QueryRow(ctx, q, table).Scan(&n); err != nil {
		return false, fmt.Errorf("engine of %s: %w", table, err)
	}
	return n > 0, nil
}

func scanAttempt(rows driver.Rows) (events.Attempt, error) {
	var (
		a              events.Attempt
		id             uuid.UUID
		ts             time.Time
		ms             uint16
		ipF, userF, pF uint32
		observe, fam   uint8
	)
	if err := rows.Scan(&id, &ts, &ms, &a.IP, &a.Username, &a.Result, &a.BlockedBy, &a.Path,
		&a.UserAgent, &a.Gate, &ipF, &userF, &pF, &observe, &a.Shared, &fam); err != nil {
		return a, err
	}
	a.Observe, a.Familiar = observe == 1, fam == 1
	a.V, a.Type, a.ID = events.Version, events.TypeAttempt, id.String()
	a.Time = ts.Add(time.Duration(ms) * time.Millisecond).UTC()
	if len(a.BlockedBy) == 0 {
		a.BlockedBy = nil
	}
	a.IPFailures, a.UsernameFailures, a.PairFailures = int(ipF), int(userF), int(pF)
	return a, nil
}

func scanBlock(rows driver.Rows) (events.Block, error) {
	var (
		b         events.Block
		id        uuid.UUID
		ts, until time.Time
		ms        uint16
		typ       string
		permanent uint8
		failures  uint32
		observe   uint8
	)
	if err := rows.Scan(&id, &ts, &ms, &typ, &b.Kind, &b.Subject, &until, &permanent, &failures,
		&b.Reason, &b.Gate, &observe); err != nil {
		return b, err
	}
	b.Observe = observe == 1
	b.V, b.Type, b.ID = events.Version, events.Type(typ), id.String()
	b.Time = ts.Add(time.Duration(ms) * time.Millisecond).UTC()
	if until.Unix() > 0 {
		u := until.UTC()
		b.Until = &u
	}
	b.Permanent, b.Failures = permanent == 1, int(failures)
	return b, nil
}
