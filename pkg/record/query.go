package record

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
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

// ErrBadFilter is wrapped by every error about a filter's value (a
// result, kind or type that does not exist, a cursor this package did not
// make): the caller's mistake, not ClickHouse's.
var ErrBadFilter = errors.New("record: bad filter")

// ErrBadCursor is wrapped by ParseCursor's errors; it wraps ErrBadFilter.
var ErrBadCursor = fmt.Errorf("%w: cursor", ErrBadFilter)

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
// ("<unix ms>_<id>", characters that need no escaping).
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
	// The canonical form only (36 characters): uuid also takes {...},
	// urn:uuid: and bare hex, which ClickHouse's toUUID refuses.
	if !ok || err != nil || n < 0 || len(id) != 36 || uuid.Validate(id) != nil {
		return Cursor{}, fmt.Errorf("%w %q", ErrBadCursor, s)
	}
	return Cursor{Time: time.UnixMilli(n).UTC(), ID: id}, nil
}

// AttemptFilter selects attempts. Zero fields do not filter.
type AttemptFilter struct {
	// Usernames matches any of these exactly (a name as typed and as the
	// gate normalises it).
	Usernames []string
	// IP matches one address (a prefix of its full length) or every
	// address of a network ("2001:db8::/64", "10.0.0.0/8").
	IP netip.Prefix
	// Result is success, failure or blocked.
	Result string
	// Observe, when set, keeps only observe mode's attempts (true) or
	// only enforce mode's (false).
	Observe *bool
	// Since (inclusive) and Until (exclusive) bound the time, to the ms.
	Since, Until time.Time
	// Limit is the page size: DefaultLimit when 0, at most MaxLimit.
	// CountAttempts ignores it.
	Limit int
	// After continues a listing from the cursor its previous page
	// returned. CountAttempts ignores it.
	After Cursor
}

// BlockFilter selects blocks and unblocks. Zero fields do not filter.
type BlockFilter struct {
	// Type is block or unblock.
	Type string
	// Kinds matches any of these kinds (gate.Kinds, events.ValidKind).
	Kinds []string
	// Subject is the blocked IP, username, pair or network, matched exactly.
	Subject string
	// PairsOf, "ip" or "username", adds to the blocks that Kinds and
	// Subject select the blocks of the pairs whose address (or username)
	// is Subject.
	PairsOf string
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

// in matches column against any of values (no condition when empty).
// One value is an equality: scanning ten million usernames, IN with a
// set of one made a user's history 1.85 times the plain query with =,
// and 1.2 times once it was = too (TestPerf10M).
func (w *where) in(column string, values []string) {
	switch len(values) {
	case 0:
		return
	case 1:
		w.add(column+" = ?", values[0])
		return
	}
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	w.add(column+" IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(values)), ", ")+")", args...)
}

// ip matches an address exactly, or a network by the numeric range of
// its addresses.
func (w *where) ip(p netip.Prefix) {
	p = p.Masked()
	if p.IsSingleIP() {
		w.add("ip = ?", p.Addr().String())
		return
	}
	lo, hi := p.Addr().AsSlice(), p.Addr().AsSlice()
	for i := range hi {
		bits := p.Bits() - 8*i
		switch {
		case bits >= 8:
		case bits <= 0:
			hi[i] = 0xff
		default:
			hi[i] |= 0xff >> bits
		}
	}
	if p.Addr().Is4() {
		w.add("IPv4StringToNum(ip) BETWEEN ? AND ?", uint32From(lo), uint32From(hi))
		return
	}
	w.add("IPv6StringToNum(ip) BETWEEN unhex(?) AND unhex(?)", hex.EncodeToString(lo), hex.EncodeToString(hi))
}

func uint32From(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// timeRange bounds ts to [since, until) to the millisecond. The plain
// comparisons on ts let ClickHouse use the primary index and partitions;
// the tuple ones are exact.
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
	if uuid.Validate(c.ID) != nil {
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

// observeCond selects observe mode's rows, or (false) the others.
func observeCond(observe bool) string {
	if observe {
		return "observe = 1"
	}
	return "observe = 0"
}

// InDateTime clamps t to DateTime's range [1970, 2106]: toDateTime wraps
// a value outside it round modulo 2^32 (1960 became 2096). No row lies
// outside it, so a clamped bound selects the same rows as t.
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
	w.in("username", f.Usernames)
	if f.IP.IsValid() {
		w.ip(f.IP)
	}
	if err := checkResult(f.Result); err != nil {
		return nil, err
	}
	w.eq("result", f.Result)
	if f.Observe != nil {
		w.add(observeCond(*f.Observe))
	}
	w.timeRange(f.Since, f.Until)
	return w, nil
}

func checkResult(r string) error {
	switch r {
	case "", events.ResultSuccess, events.ResultFailure, events.ResultBlocked:
		return nil
	}
	return fmt.Errorf("%w: result %q is not success, failure or blocked", ErrBadFilter, r)
}

var attemptColumns = strings.Join([]string{
	"id", "ts", "ts_ms", "ip", "username", "result", "blocked_by", "path", "user_agent", "gate",
	"ip_failures", "username_failures", "pair_failures", "observe", "shared", "familiar",
}, ", ")

var blockColumns = strings.Join([]string{
	"id", "ts", "ts_ms", "type", "kind", "subject", "until", "permanent", "failures", "reason", "gate", "observe",
}, ", ")

// QueryAttempts returns a page of the attempts matching f, newest first,
// each event id once however many times it was stored, and the cursor of
// the next page: pass it as f.After; nil when this page is the last.
//
// A page costs about the rows of the time span it covers, not the table's:
// ClickHouse 18.16 cannot stop a "newest first" scan early by itself.
// When f names an address or usernames, the per-minute counts of
// attempts_by_subject (schema/003_aggregates.sql) tell
// where its newest rows begin, and one query reads from there. Otherwise
// it reads time windows walking back from the newest row, growing
// fourfold (1 h, 4 h, 16 h, ...) until the page is full.
func QueryAttempts(ctx context.Context, conn driver.Conn, f AttemptFilter) ([]events.Attempt, *Cursor, error) {
	w, err := f.where()
	if err != nil {
		return nil, nil, err
	}
	if err := w.after(f.After); err != nil {
		return nil, nil, err
	}
	limit := limitOf(f.Limit)
	// One row more than the page tells whether another page follows.
	var rows []events.Attempt
	if idx, view, ok := f.index(); ok {
		rows, err = subjectNewest(ctx, conn, &f, idx, view, w, limit+1)
	} else {
		rows, err = newestFirst(ctx, conn, "attempts", attemptColumns, w, f.Since, f.Until, f.After, limit+1, scanAttempt)
	}
	if err != nil {
		return nil, nil, err
	}
	rows, next := page(rows, limit, CursorOf)
	return rows, next, nil
}

// index is the condition on the view counting f's attempts per minute,
// and the view's name; ok is false when f names no single address or
// username (a network, or no subject).
func (f *AttemptFilter) index() (idx *where, view string, ok bool) {
	idx = &where{}
	switch {
	case len(f.Usernames) > 0:
		idx.add("by = 'username'")
		idx.in("subject", f.Usernames)
	case f.IP.IsValid() && f.IP.IsSingleIP():
		idx.add("by = 'ip'")
		idx.eq("subject", f.IP.Masked().Addr().String())
	default:
		return nil, "", false
	}
	idx.eq("result", f.Result)
	return idx, "attempts_by_subject", true
}

// subjectNewest reads the newest n attempts of one subject (w): from the
// minute where the view's counts (idx) reach n, walking back from the
// upper bound, in one query. The counts include copies of redelivered
// events and ignore the observe filter, so the span may hold fewer than n
// rows: then the query runs again over the whole range, which is also what
// it does when the subject has fewer than n rows in all.
func subjectNewest(ctx context.Context, conn driver.Conn, f *AttemptFilter, idx *where, view string, w *where, n int) ([]events.Attempt, error) {
	var upper time.Time // the minute of the page's upper bound, counted partly
	if !f.Until.IsZero() {
		upper = InDateTime(f.Until)
	}
	if !f.After.IsZero() && (upper.IsZero() || f.After.Time.Before(upper)) {
		upper = InDateTime(f.After.Time)
	}
	if !f.Since.IsZero() {
		idx.add("minute >= toDateTime(?)", InDateTime(f.Since).Truncate(time.Minute).Unix())
	}
	if !upper.IsZero() {
		upper = upper.Truncate(time.Minute)
		idx.add("minute <= toDateTime(?)", upper.Unix())
	}
	q := "SELECT minute, sum(n) FROM " + Database + "." + view + idx.sql() +
		" GROUP BY minute ORDER BY minute DESC LIMIT " + strconv.Itoa(n+1)
	rows, err := conn.Query(ctx, q, idx.args...)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", view, err)
	}
	var from time.Time
	var seen uint64
	for rows.Next() {
		var (
			minute time.Time
			c      uint64
		)
		if err := rows.Scan(&minute, &c); err != nil {
			rows.Close()
			return nil, fmt.Errorf("query %s: %w", view, err)
		}
		if minute.Equal(upper) {
			continue // partly above the bound
		}
		if seen += c; seen >= uint64(n) {
			from = minute
			break
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", view, err)
	}
	out, err := listRows(ctx, conn, "attempts", attemptColumns, w, from, time.Time{}, n, scanAttempt)
	if err != nil || from.IsZero() || len(out) >= n {
		return out, err
	}
	return listRows(ctx, conn, "attempts", attemptColumns, w, time.Time{}, time.Time{}, n, scanAttempt)
}

// page cuts rows, read one beyond the limit, to the page and the cursor of
// the next one (nil when there is none).
func page[T any](rows []T, limit int, cursor func(T) Cursor) ([]T, *Cursor) {
	if len(rows) <= limit {
		return rows, nil
	}
	rows = rows[:limit]
	c := cursor(rows[limit-1])
	return rows, &c
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

// QueryBlocks returns a page of the blocks and unblocks matching f, newest
// first, each event id once, and the cursor of the next page, as
// QueryAttempts.
func QueryBlocks(ctx context.Context, conn driver.Conn, f BlockFilter) ([]events.Block, *Cursor, error) {
	w := &where{}
	switch f.Type {
	case "", string(events.TypeBlock), string(events.TypeUnblock):
		w.eq("type", f.Type)
	default:
		return nil, nil, fmt.Errorf("%w: type %q is not block or unblock", ErrBadFilter, f.Type)
	}
	for _, k := range f.Kinds {
		if !events.ValidKind(k) {
			return nil, nil, fmt.Errorf("%w: kind %q is no kind of block", ErrBadFilter, k)
		}
	}
	subject := &where{}
	subject.in("kind", f.Kinds)
	subject.eq("subject", f.Subject)
	switch f.PairsOf {
	case "":
		w.conds, w.args = append(w.conds, subject.conds...), append(w.args, subject.args...)
	case "ip", "username":
		if f.Subject == "" {
			return nil, nil, fmt.Errorf("%w: pairs of no subject", ErrBadFilter)
		}
		// A pair is "<ip>|<username>" and an IP holds no "|": the
		// username is what follows the first one ("192.0.2.5|a|b" is
		// username "a|b", not "b").
		pair, args := "kind = 'pair' AND startsWith(subject, ?)", []any{f.Subject + "|"}
		if f.PairsOf == "username" {
			pair = "kind = 'pair' AND endsWith(subject, ?) AND substring(subject, position(subject, '|') + 1) = ?"
			args = []any{"|" + f.Subject, f.Subject}
		}
		w.add("(("+strings.Join(subject.conds, " AND ")+") OR ("+pair+"))", append(subject.args, args...)...)
	default:
		return nil, nil, fmt.Errorf("%w: pairs of %q (want ip or username)", ErrBadFilter, f.PairsOf)
	}
	w.timeRange(f.Since, f.Until)
	if err := w.after(f.After); err != nil {
		return nil, nil, err
	}
	limit := limitOf(f.Limit)
	rows, err := newestFirst(ctx, conn, "blocks", blockColumns, w, f.Since, f.Until, f.After, limit+1, scanBlock)
	if err != nil {
		return nil, nil, err
	}
	rows, next := page(rows, limit, BlockCursorOf)
	return rows, next, nil
}

// CursorOf is the cursor after attempt a.
func CursorOf(a events.Attempt) Cursor { return Cursor{Time: a.Time, ID: a.ID} }

// BlockCursorOf is the cursor after block b.
func BlockCursorOf(b events.Block) Cursor { return Cursor{Time: b.Time, ID: b.ID} }

// firstWindow is the span of the first time window newestFirst reads.
const firstWindow = time.Hour

// newestFirst runs listRows over growing time windows, from the newest
// row in range back to the oldest, until limit rows are found.
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
		rows, err := listRows(ctx, conn, table, cols, w, from, to, limit-len(out), scan)
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
		to = from
	}
	return out, nil
}

// listRows reads the newest limit rows of table that w selects within
// [from, to) on ts (a zero bound does not bound), each event id once.
func listRows[T any](ctx context.Context, conn driver.Conn, table, cols string, w *where,
	from, to time.Time, limit int, scan func(driver.Rows) (T, error)) ([]T, error) {
	b := &where{conds: append([]string{}, w.conds...), args: append([]any{}, w.args...)}
	if !from.IsZero() {
		b.add("ts >= toDateTime(?)", from.Unix())
	}
	if !to.IsZero() {
		b.add("ts < toDateTime(?)", to.Unix())
	}
	rows, err := queryNewest(ctx, conn, "SELECT "+cols+" FROM "+Database+"."+table+b.sql(), limit, b.args...)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", table, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", table, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query %s: %w", table, err)
	}
	return out, nil
}

// newestOrder is the order of every listing: newest first, ties broken
// by id as in the sorting key.
const newestOrder = " ORDER BY ts DESC, ts_ms DESC, id DESC"

// queryNewest runs a listing: sel is "SELECT <columns> FROM
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
func queryNewest(ctx context.Context, conn driver.Conn, sel string, limit int, args ...any) (driver.Rows, error) {
	n := strconv.Itoa(limit)
	q := "SELECT * FROM (" + sel + newestOrder + " LIMIT 1 BY id LIMIT " + n + ")" + newestOrder + " LIMIT " + n
	return conn.Query(clickhouse.Context(ctx, clickhouse.WithSettings(perShard)), q, args...)
}

// perShard has a query over a Distributed table run whole by every shard,
// the initiator only passing the shards' rows on to the outer query.
var perShard = clickhouse.Settings{"distributed_group_by_no_merge": 1}

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
