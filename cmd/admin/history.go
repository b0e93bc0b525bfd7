package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/record"
)

// maxLimit bounds the page size of an attempt listing (?limit=).
const maxLimit = 1000

// ErrBadFilter is wrapped by every error about a filter value: the read
// layer's own.
var ErrBadFilter = record.ErrBadFilter

// History is the admin's view of the history the recorder stored in
// ClickHouse: it reads through pkg/record's read layer (one filter, one
// cursor, one WHERE builder, the pre-aggregated views of
// schema/003_aggregates.sql) and shapes the rows for the API and pages.
type History struct {
	conn driver.Conn
	now  func() time.Time

	topMu      sync.Mutex
	top        map[topKey]*topAnswer // by (by, window): a few
	topQueries int                   // top tables queried, under topMu
	topWork    sync.WaitGroup        // the background refreshes
	bg         context.Context       // theirs, cancelled by Close
	stopBG     context.CancelFunc
}

// openHistory prepares connections to ClickHouse over the native protocol
// as the recorder does (record.Open); they are dialled on first use (see
// Ping).
func openHistory(dsn string) (*History, error) {
	conn, err := record.Open(dsn)
	if err != nil {
		return nil, fmt.Errorf("DEFENDER_CLICKHOUSE_URL: %w", err)
	}
	bg, stop := context.WithCancel(context.Background())
	return &History{conn: conn, now: time.Now, top: map[topKey]*topAnswer{}, bg: bg, stopBG: stop}, nil
}

// Close stops the background refreshes and closes the connections.
func (h *History) Close() error {
	h.stopBG()
	h.topWork.Wait()
	return h.conn.Close()
}

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

// attemptRow shapes a stored attempt for the API.
func attemptRow(a events.Attempt) AttemptRow {
	r := AttemptRow{ID: a.ID, Time: a.Time, IP: a.IP, Username: a.Username, Result: a.Result, BlockedBy: a.BlockedBy,
		Path: a.Path, UserAgent: a.UserAgent, Observe: a.Observe, Shared: a.Shared, Familiar: a.Familiar}
	if r.BlockedBy == nil {
		r.BlockedBy = []string{}
	}
	return r
}

// Attempts lists attempts newest first (record.QueryAttempts), and the
// cursor of the next page (nil when this page is the last).
func (h *History) Attempts(ctx context.Context, f record.AttemptFilter) ([]AttemptRow, *record.Cursor, error) {
	as, next, err := record.QueryAttempts(ctx, h.conn, f)
	if err != nil {
		return nil, nil, err
	}
	out := make([]AttemptRow, 0, len(as))
	for _, a := range as {
		out = append(out, attemptRow(a))
	}
	return out, next, nil
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
	f := record.BlockFilter{Subject: subject, Limit: limit}
	for _, k := range sameSubject(kind) {
		f.Kinds = append(f.Kinds, string(k))
	}
	switch {
	case slices.Contains(ipKinds, kind):
		f.PairsOf = "ip"
	case slices.Contains(userKinds, kind):
		f.PairsOf = "username"
	}
	bs, _, err := record.QueryBlocks(ctx, h.conn, f)
	if err != nil {
		return nil, err
	}
	var out []BlockRow
	for _, b := range bs {
		r := BlockRow{ID: b.ID, Time: b.Time, Kind: b.Kind, Subject: b.Subject, Blocked: b.Type == events.TypeBlock,
			Permanent: b.Permanent, Failures: b.Failures, Reason: b.Reason, Observe: b.Observe}
		if r.Blocked && !r.Permanent {
			r.Until = b.Until
		}
		out = append(out, r)
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
// let through that enforce mode would have refused.
const wouldBlock = record.WouldBlock

// AttemptSeries counts attempts per bucket by result (wouldBlock apart).
func (h *History) AttemptSeries(ctx context.Context, w Window, now time.Time) (*Series, error) {
	s := newSeries(w, now, "success", "failure", "blocked", wouldBlock)
	cs, err := record.AttemptCounts(ctx, h.conn, time.Unix(s.since(), 0), w.Step)
	s.addAll(cs)
	return s, err
}

// BlockSeries counts new blocks per bucket by kind, every gate.Kind: the
// real ones, or (observe) observe mode's would-be blocks.
func (h *History) BlockSeries(ctx context.Context, w Window, now time.Time, observe bool) (*Series, error) {
	s := newSeries(w, now, kindNames()...)
	cs, err := record.BlockCounts(ctx, h.conn, time.Unix(s.since(), 0), w.Step, observe)
	s.addAll(cs)
	return s, err
}

// addAll counts cs in their buckets.
func (s *Series) addAll(cs []record.Count) {
	for _, c := range cs {
		s.add(c.Series, c.Start.Unix(), int(c.N))
	}
}

// topTTL is how old a top table may be when the dashboard shows it.
// Computing one groups every address or username of the window: 1 to 2 s
// over 7 days of ten million attempts (docs/DESIGN.md), for every admin's
// every look. So an answer is kept topTTL; after that the old one is still
// served while a single background query replaces it. One older than
// topMaxAge (ClickHouse failing the refreshes) is not served: the look
// queries, and says what failed.
const (
	topTTL    = time.Minute
	topMaxAge = 5 * time.Minute
	// topLimit is how many entries are kept, the API's largest limit: a
	// smaller limit is the head of the same answer.
	topLimit = 100
)

type topKey struct {
	by   string
	span time.Duration
}

type topAnswer struct {
	at         time.Time
	items      []record.TopEntry
	err        error
	ready      chan struct{} // closed once its query answered
	refreshing bool
	next       *topAnswer // the background refresh's, while it runs
}

// Top lists the IPs or usernames (by: "ip" or "username") with the most
// failed or refused attempts in the last span, at most limit (1 to
// topLimit), as of at most topTTL ago (twice that while a refresh runs).
func (h *History) Top(ctx context.Context, by string, span time.Duration, limit int) ([]record.TopEntry, error) {
	if by != "ip" && by != "username" {
		return nil, fmt.Errorf("%w: by %q (want ip or username)", ErrBadFilter, by)
	}
	key := topKey{by, span}
	h.topMu.Lock()
	a, ok := h.top[key]
	switch {
	case !ok || a.err != nil || h.now().Sub(a.at) >= topMaxAge:
		// None yet, too old, or the last first query failed: this look
		// queries, and the others wait for it.
		if ok && a.refreshing {
			if a.next != nil {
				a = a.next // too old to show: wait for the refresh
			}
			break // a query is on its way: wait for it below
		}
		a = &topAnswer{ready: make(chan struct{}), refreshing: true}
		h.top[key] = a
		h.topMu.Unlock()
		// Not cut short by this look's request: others wait for it.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		h.computeTop(qctx, key, a)
		return head(a.items, limit), a.err
	case h.now().Sub(a.at) >= topTTL && !a.refreshing:
		next := &topAnswer{ready: make(chan struct{})}
		a.refreshing, a.next = true, next
		h.topWork.Add(1)
		go func() {
			defer h.topWork.Done()
			rctx, cancel := context.WithTimeout(h.bg, time.Minute)
			defer cancel()
			h.computeTop(rctx, key, next)
			h.topMu.Lock()
			defer h.topMu.Unlock()
			a.refreshing, a.next = false, nil
			if next.err == nil { // else the old answer stays, and a later look retries
				h.top[key] = next
			}
		}()
	}
	h.topMu.Unlock()
	select {
	case <-a.ready:
		return head(a.items, limit), a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// computeTop queries a top table into a and closes a.ready.
func (h *History) computeTop(ctx context.Context, key topKey, a *topAnswer) {
	now := h.now()
	items, err := record.Top(ctx, h.conn, key.by, now.Add(-key.span), topLimit)
	h.topMu.Lock()
	h.topQueries++
	a.at, a.items, a.err, a.refreshing = now, items, err, false
	h.topMu.Unlock()
	close(a.ready)
}

// head is the first n of items.
func head(items []record.TopEntry, n int) []record.TopEntry {
	return items[:min(n, len(items))]
}

// Totals counts attempts by result since since, to the minute (wouldBlock
// apart).
func (h *History) Totals(ctx context.Context, since time.Time) (map[string]int, error) {
	out := map[string]int{"success": 0, "failure": 0, "blocked": 0, wouldBlock: 0}
	cs, err := record.AttemptCounts(ctx, h.conn, since, time.Since(since).Truncate(time.Minute)+time.Minute)
	for _, c := range cs {
		out[c.Series] += int(c.N)
	}
	return out, err
}
