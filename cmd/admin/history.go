package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/record"
)

// Page sizes of attempt listings.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// ErrBadFilter is wrapped by every error about a filter value.
var ErrBadFilter = errors.New("bad filter")

// History reads the attempts and blocks the recorder stored in ClickHouse
// (tables of the schema/ migrations, or the Distributed tables of the
// clustered schema, schema/cluster). Every query is parameterised;
// listings page by the sorting key (ts, ts_ms, id), never by OFFSET, and
// read each event id once (record.QueryNewest) although a redelivered
// event may be stored twice until parts merge. Chart counts use uniq(id), approximate above
// 65536 distinct events per bucket but cheap on large windows.
type History struct {
	conn driver.Conn
}

// openHistory prepares connections to ClickHouse over the native protocol
// as the recorder does (record.Open); they are dialled on first use (see
// Ping).
func openHistory(dsn string) (*History, error) {
	conn, err := record.Open(dsn)
	if err != nil {
		return nil, fmt.Errorf("DEFENDER_CLICKHOUSE_URL: %w", err)
	}
	return &History{conn: conn}, nil
}

// Close closes the connections.
func (h *History) Close() error { return h.conn.Close() }

// Ping checks that ClickHouse answers.
func (h *History) Ping(ctx context.Context) error {
	if err := h.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse ping: %w", err)
	}
	return nil
}

// AttemptRow is one stored attempt.
type AttemptRow struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	IP        string    `json:"ip"`
	Username  string    `json:"username"`
	Result    string    `json:"result"`
	BlockedBy []string  `json:"blocked_by"`
	Path      string    `json:"path"`
	UserAgent string    `json:"user_agent"`
	// Observe: let through in observe mode; Result "blocked" means it
	// would have been refused.
	Observe bool `json:"observe"`
	// Shared names the shared list the address is on ("" none).
	Shared string `json:"shared"`
	// Familiar: the source had logged in as this user before.
	Familiar bool `json:"familiar"`
}

// Cursor is the position after the last row of a page: the next page holds
// the rows older than (Time, ID) in the table's order (ts, ts_ms, id).
type Cursor struct {
	Time time.Time // millisecond precision
	ID   string    // UUID
}

// String encodes the cursor for URLs ("next").
func (c Cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.Time.UnixMilli(), 10) + "." + c.ID))
}

// ParseCursor decodes Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, fmt.Errorf("%w: cursor: %w", ErrBadFilter, err)
	}
	ms, id, ok := strings.Cut(string(b), ".")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || n < 0 || uuid.Validate(id) != nil {
		return Cursor{}, fmt.Errorf("%w: cursor %q", ErrBadFilter, s)
	}
	return Cursor{Time: time.UnixMilli(n).UTC(), ID: id}, nil
}

// AttemptFilter selects attempts. Zero fields select everything.
type AttemptFilter struct {
	Username string
	// Usernames matches any of these (the typed and the normalised form).
	Usernames []string
	// IP is an address or a network ("2001:db8::/64", "10.0.0.0/8").
	IP     netip.Prefix
	Result string // success | failure | blocked
	// Observe, when set, keeps only observe mode's attempts (true) or
	// only enforce mode's (false).
	Observe *bool
	Since   time.Time
	Until   time.Time
	Limit   int     // 1..maxLimit; 0 means defaultLimit
	After   *Cursor // rows strictly older than this
}

// where renders the filter as a WHERE clause with its arguments.
func (f *AttemptFilter) where() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, a ...any) { conds = append(conds, cond); args = append(args, a...) }
	if len(f.Usernames) > 0 {
		ph := strings.TrimSuffix(strings.Repeat("?, ", len(f.Usernames)), ", ")
		for _, u := range f.Usernames {
			args = append(args, u)
		}
		conds = append(conds, "username IN ("+ph+")")
	}
	if f.IP.IsValid() {
		ipCond(f.IP, add)
	}
	if f.Result != "" {
		add("result = ?", f.Result)
	}
	if f.Observe != nil {
		add(observeCond(*f.Observe))
	}
	// Since is inclusive and Until exclusive to the millisecond (the
	// precision of the times shown); the plain conditions on ts alone
	// select index ranges, the tuples split a second by ts_ms.
	if !f.Since.IsZero() {
		since := record.InDateTime(f.Since)
		sec, ms := since.Unix(), msOf(since)
		add("ts >= toDateTime(?)", sec)
		if ms > 0 {
			add("(ts, ts_ms) >= (toDateTime(?), ?)", sec, ms)
		}
	}
	if !f.Until.IsZero() {
		until := record.InDateTime(f.Until)
		sec, ms := until.Unix(), msOf(until)
		if ms > 0 {
			add("ts <= toDateTime(?) AND (ts, ts_ms) < (toDateTime(?), ?)", sec, sec, ms)
		} else {
			add("ts < toDateTime(?)", sec)
		}
	}
	if f.After != nil {
		// The first condition alone selects index ranges; the tuple breaks
		// ties within a second the way ORDER BY does.
		after := record.InDateTime(f.After.Time)
		sec, ms := after.Unix(), msOf(after)
		add("ts <= toDateTime(?) AND (ts, ts_ms, id) < (toDateTime(?), ?, toUUID(?))", sec, sec, ms, f.After.ID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// msOf is t's millisecond within its second, as ts_ms stores it.
func msOf(t time.Time) int { return t.Nanosecond() / int(time.Millisecond) }

// ipCond matches an address exactly, or a network by the numeric range of
// its addresses.
func ipCond(p netip.Prefix, add func(string, ...any)) {
	p = p.Masked()
	if p.IsSingleIP() {
		add("ip = ?", p.Addr().String())
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
		add("IPv4StringToNum(ip) BETWEEN ? AND ?", uint32From(lo), uint32From(hi))
		return
	}
	add("IPv6StringToNum(ip) BETWEEN unhex(?) AND unhex(?)", hex.EncodeToString(lo), hex.EncodeToString(hi))
}

func uint32From(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// searchSpans are the growing time windows Attempts looks back through
// before it scans everything older: a filter that matches recent rows reads
// only the last hour's parts, however big the table.
var searchSpans = []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 31 * 24 * time.Hour}

// Attempts lists attempts newest first, and the cursor of the next page
// (nil when this page is the last). It looks back through growing windows
// (searchSpans) from the page's upper bound until it has a full page, so a
// page costs a scan of the rows since the oldest one shown, not of the table.
func (h *History) Attempts(ctx context.Context, f AttemptFilter) ([]AttemptRow, *Cursor, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	upper := time.Now()
	if !f.Until.IsZero() {
		upper = record.InDateTime(f.Until)
	}
	if f.After != nil && f.After.Time.Before(upper) {
		upper = f.After.Time.Add(time.Second)
	}
	for _, span := range searchSpans {
		lower := upper.Add(-span).Truncate(time.Second)
		if !f.Since.IsZero() && !lower.After(f.Since) {
			break // the filter's own bound is nearer: one query does
		}
		w := f
		w.Since = lower
		rows, next, err := h.attempts(ctx, w, limit)
		if err != nil || next != nil {
			return rows, next, err // a full page, and more behind it
		}
	}
	return h.attempts(ctx, f, limit)
}

// attempts runs one query for a page of at most limit rows.
func (h *History) attempts(ctx context.Context, f AttemptFilter, limit int) ([]AttemptRow, *Cursor, error) {
	where, args := f.where()
	// One more row than asked tells whether an older page exists.
	// record.QueryNewest hides copies of a redelivered event not merged
	// away yet, on one server or a cluster.
	q := "SELECT id, ts, ts_ms, ip, username, toString(result), blocked_by, path, user_agent, observe, shared, familiar FROM defender.attempts" + where
	rows, err := record.QueryNewest(ctx, h.conn, q, limit+1, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("query attempts: %w", err)
	}
	defer rows.Close()
	out := make([]AttemptRow, 0, limit)
	for rows.Next() {
		var (
			a                 AttemptRow
			id                uuid.UUID
			ms                uint16
			observe, familiar uint8
		)
		if err := rows.Scan(&id, &a.Time, &ms, &a.IP, &a.Username, &a.Result, &a.BlockedBy, &a.Path, &a.UserAgent,
			&observe, &a.Shared, &familiar); err != nil {
			return nil, nil, fmt.Errorf("scan attempt: %w", err)
		}
		a.ID, a.Observe, a.Familiar = id.String(), observe == 1, familiar == 1
		a.Time = a.Time.UTC().Add(time.Duration(ms) * time.Millisecond)
		if a.BlockedBy == nil {
			a.BlockedBy = []string{}
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read attempts: %w", err)
	}
	if len(out) <= limit {
		return out, nil, nil
	}
	out = out[:limit]
	last := out[limit-1]
	return out, &Cursor{Time: last.Time, ID: last.ID}, nil
}

// BlockRow is one stored block or unblock.
type BlockRow struct {
	ID        string     `json:"id"`
	Time      time.Time  `json:"time"`
	Kind      string     `json:"kind"`
	Subject   string     `json:"subject"`
	Blocked   bool       `json:"blocked"` // false: an unblock
	Until     *time.Time `json:"until"`
	Permanent bool       `json:"permanent"`
	Failures  int        `json:"failures"`
	Reason    string     `json:"reason"`
	// Observe marks observe mode's would-be block or unblock: it refused
	// (or freed) nobody.
	Observe bool `json:"observe"`
}

// Blocks lists the latest blocks and unblocks of one subject, newest
// first: those of the kinds that share its subject (sameSubject: an IP's
// spraying blocks and reports, a username's block for familiar sources),
// and for an IP or a username the pairs holding it.
func (h *History) Blocks(ctx context.Context, kind gate.Kind, subject string, limit int) ([]BlockRow, error) {
	var args []any
	for _, k := range sameSubject(kind) {
		args = append(args, string(k))
	}
	cond := "kind IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(args)), ", ") + ") AND subject = ?"
	args = append(args, subject)
	switch {
	case slices.Contains(ipKinds, kind):
		cond, args = "("+cond+") OR (kind = 'pair' AND startsWith(subject, ?))", append(args, subject+"|")
	case slices.Contains(userKinds, kind):
		// A pair is "<ip>|<username>" and an IP holds no "|": the
		// username is what follows the first one ("192.0.2.5|a|b" is
		// username "a|b", not "b").
		cond, args = "("+cond+") OR (kind = 'pair' AND endsWith(subject, ?) AND substring(subject, position(subject, '|') + 1) = ?)",
			append(args, "|"+subject, subject)
	}
	q := "SELECT id, ts, ts_ms, toString(kind), subject, toString(type), until, permanent, failures, toString(reason), observe FROM defender.blocks WHERE " + cond
	rows, err := record.QueryNewest(ctx, h.conn, q, limit, args...)
	if err != nil {
		return nil, fmt.Errorf("query blocks: %w", err)
	}
	defer rows.Close()
	var out []BlockRow
	for rows.Next() {
		var (
			b         BlockRow
			id        uuid.UUID
			ms        uint16
			typ       string
			until     time.Time
			permanent uint8
			failures  uint32
			observe   uint8
		)
		if err := rows.Scan(&id, &b.Time, &ms, &b.Kind, &b.Subject, &typ, &until, &permanent, &failures, &b.Reason, &observe); err != nil {
			return nil, fmt.Errorf("scan block: %w", err)
		}
		b.ID, b.Blocked, b.Permanent, b.Failures = id.String(), typ == "block", permanent == 1, int(failures)
		b.Observe = observe == 1
		b.Time = b.Time.UTC().Add(time.Duration(ms) * time.Millisecond)
		if b.Blocked && !b.Permanent && until.Unix() > 0 {
			u := until.UTC()
			b.Until = &u
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	return out, nil
}

// Window is a span of time the dashboard charts, with its bucket size.
type Window struct {
	Name string
	Span time.Duration
	Step time.Duration
}

// Windows are the dashboard's choices.
var Windows = []Window{
	{"15m", 15 * time.Minute, time.Minute},
	{"1h", time.Hour, time.Minute},
	{"24h", 24 * time.Hour, 15 * time.Minute},
	{"7d", 7 * 24 * time.Hour, 2 * time.Hour},
}

// ParseWindow finds a window by name; "" is 1h.
func ParseWindow(s string) (Window, error) {
	if s == "" {
		s = "1h"
	}
	for _, w := range Windows {
		if w.Name == s {
			return w, nil
		}
	}
	return Window{}, fmt.Errorf("%w: window %q (want 15m, 1h, 24h or 7d)", ErrBadFilter, s)
}

// Series is a chart's data: one count per bucket per series.
type Series struct {
	Window  string           `json:"window"`
	Step    int              `json:"step"`    // seconds per bucket
	Buckets []int64          `json:"buckets"` // bucket starts, unix seconds, oldest first
	Series  map[string][]int `json:"series"`
}

// newSeries lays out the buckets of w ending at now.
func newSeries(w Window, now time.Time, names ...string) *Series {
	step := int64(w.Step / time.Second)
	n := int64(w.Span / w.Step)
	last := now.Unix() / step * step
	s := &Series{Window: w.Name, Step: int(step), Series: map[string][]int{}}
	for i := n - 1; i >= 0; i-- {
		s.Buckets = append(s.Buckets, last-i*step)
	}
	for _, name := range names {
		s.Series[name] = make([]int, n)
	}
	return s
}

// add counts v in the bucket starting at b of series name.
func (s *Series) add(name string, b int64, v int) {
	if len(s.Buckets) == 0 {
		return
	}
	i := (b - s.Buckets[0]) / int64(s.Step)
	if vals, ok := s.Series[name]; ok && i >= 0 && i < int64(len(vals)) {
		vals[i] += v
	}
}

// since is the start of the first bucket.
func (s *Series) since() int64 { return s.Buckets[0] }

// wouldBlock is the series, and the total, of the attempts observe mode
// let through that enforce mode would have refused: "blocked" counts only
// those refused.
const wouldBlock = "would_block"

// resultName is the series of an attempt's result: wouldBlock for a
// refusal of observe mode.
const resultName = "if(observe = 1 AND result = 'blocked', '" + wouldBlock + "', toString(result))"

// AttemptSeries counts attempts per bucket by result (wouldBlock apart).
func (h *History) AttemptSeries(ctx context.Context, w Window, now time.Time) (*Series, error) {
	s := newSeries(w, now, "success", "failure", "blocked", wouldBlock)
	q := "SELECT intDiv(toUInt32(ts), ?) * ? AS b, " + resultName + " AS r, uniq(id) FROM defender.attempts WHERE ts >= toDateTime(?) GROUP BY b, r"
	return s, h.fill(ctx, s, q, s.Step, s.Step, s.since())
}

// BlockSeries counts new blocks per bucket by kind, every gate.Kind: the
// real ones, or (observe) observe mode's would-be blocks.
func (h *History) BlockSeries(ctx context.Context, w Window, now time.Time, observe bool) (*Series, error) {
	s := newSeries(w, now, kindNames()...)
	q := "SELECT intDiv(toUInt32(ts), ?) * ? AS b, toString(kind), uniq(id) FROM defender.blocks WHERE ts >= toDateTime(?) AND type = 'block' AND " +
		observeCond(observe) + " GROUP BY b, kind"
	return s, h.fill(ctx, s, q, s.Step, s.Step, s.since())
}

// observeCond selects observe mode's rows, or (false) the others.
func observeCond(observe bool) string {
	if observe {
		return "observe = 1"
	}
	return "observe = 0"
}

func (h *History) fill(ctx context.Context, s *Series, q string, args ...any) error {
	rows, err := h.conn.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("query series: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			b    uint64
			name string
			n    uint64
		)
		if err := rows.Scan(&b, &name, &n); err != nil {
			return fmt.Errorf("scan series: %w", err)
		}
		s.add(name, int64(b), int(n))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read series: %w", err)
	}
	return nil
}

// TopEntry is a source with its failed and refused attempts in a window.
type TopEntry struct {
	Value    string `json:"value"`
	Failures int    `json:"failures"`
	Blocked  int    `json:"blocked"`
}

// Top lists the IPs or usernames (by: "ip" or "username") with the most
// failed or refused attempts since since.
func (h *History) Top(ctx context.Context, by string, since time.Time, limit int) ([]TopEntry, error) {
	if by != "ip" && by != "username" {
		return nil, fmt.Errorf("%w: by %q (want ip or username)", ErrBadFilter, by)
	}
	q := "SELECT " + by + " AS v, uniqIf(id, result = 'failure') AS f, uniqIf(id, result = 'blocked') AS b FROM defender.attempts" +
		" WHERE ts >= toDateTime(?) AND result != 'success' AND " + by + " != '' GROUP BY v ORDER BY f + b DESC, v LIMIT " + strconv.Itoa(limit)
	rows, err := h.conn.Query(ctx, q, since.Unix())
	if err != nil {
		return nil, fmt.Errorf("query top %s: %w", by, err)
	}
	defer rows.Close()
	var out []TopEntry
	for rows.Next() {
		var (
			e    TopEntry
			f, b uint64
		)
		if err := rows.Scan(&e.Value, &f, &b); err != nil {
			return nil, fmt.Errorf("scan top: %w", err)
		}
		e.Failures, e.Blocked = int(f), int(b)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read top: %w", err)
	}
	return out, nil
}

// Totals counts attempts by result since since (wouldBlock apart).
func (h *History) Totals(ctx context.Context, since time.Time) (map[string]int, error) {
	rows, err := h.conn.Query(ctx, "SELECT "+resultName+" AS r, uniq(id) FROM defender.attempts WHERE ts >= toDateTime(?) GROUP BY r", since.Unix())
	if err != nil {
		return nil, fmt.Errorf("query totals: %w", err)
	}
	defer rows.Close()
	out := map[string]int{"success": 0, "failure": 0, "blocked": 0, wouldBlock: 0}
	for rows.Next() {
		var (
			r string
			n uint64
		)
		if err := rows.Scan(&r, &n); err != nil {
			return nil, fmt.Errorf("scan totals: %w", err)
		}
		out[r] = int(n)
	}
	return out, rows.Err()
}
