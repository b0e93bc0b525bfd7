package record

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// WouldBlock is the series (Count.Series) of the attempts that observe
// mode let through and enforce mode would have refused: "blocked" counts
// only those refused.
const WouldBlock = "would_block"

// Count is one figure of a chart: the rows of one series in one bucket.
type Count struct {
	// Start is the start of the bucket.
	Start time.Time
	// Series is a result (success, failure, blocked, WouldBlock) or a
	// kind of block.
	Series string
	// N is the number of rows.
	N uint64
}

// AttemptCounts counts the attempts since since (to the minute) per
// bucket of step (a whole number of minutes, buckets aligned on the unix
// epoch) and result, WouldBlock apart. It reads the per-minute counts of
// attempts_per_minute, not the attempts: a copy of a redelivered event
// not merged away when it was stored counts twice (docs/DESIGN.md).
func AttemptCounts(ctx context.Context, conn driver.Conn, since time.Time, step time.Duration) ([]Count, error) {
	s := int64(step / time.Second)
	if s < 60 || s%60 != 0 {
		return nil, fmt.Errorf("%w: step %s is not a whole number of minutes", ErrBadFilter, step)
	}
	q := "SELECT intDiv(toUInt32(minute), ?) * ? AS b, if(observe = 1 AND result = 'blocked', '" + WouldBlock +
		"', toString(result)) AS r, sum(n) FROM " + Database + ".attempts_per_minute WHERE minute >= toDateTime(?) GROUP BY b, r"
	return counts(ctx, conn, q, s, s, InDateTime(since).Truncate(time.Minute).Unix())
}

// BlockCounts counts the new blocks since since per bucket of step and
// kind: the real ones, or (observe) observe mode's would-be blocks. Blocks
// are few: it reads the blocks table, each event id once (uniq).
func BlockCounts(ctx context.Context, conn driver.Conn, since time.Time, step time.Duration, observe bool) ([]Count, error) {
	s := int64(step / time.Second)
	if s < 1 {
		return nil, fmt.Errorf("%w: step %s", ErrBadFilter, step)
	}
	q := "SELECT intDiv(toUInt32(ts), ?) * ? AS b, toString(kind), uniq(id) FROM " + Database + ".blocks" +
		" WHERE ts >= toDateTime(?) AND type = 'block' AND " + observeCond(observe) + " GROUP BY b, kind"
	return counts(ctx, conn, q, s, s, InDateTime(since).Unix())
}

func counts(ctx context.Context, conn driver.Conn, q string, args ...any) ([]Count, error) {
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query counts: %w", err)
	}
	defer rows.Close()
	var out []Count
	for rows.Next() {
		var (
			b uint64
			c Count
		)
		if err := rows.Scan(&b, &c.Series, &c.N); err != nil {
			return nil, fmt.Errorf("scan counts: %w", err)
		}
		c.Start = time.Unix(int64(b), 0).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read counts: %w", err)
	}
	return out, nil
}

// TopEntry is an address or username with its failed and refused
// attempts in a window.
type TopEntry struct {
	Value    string `json:"value"`
	Failures int    `json:"failures"`
	Blocked  int    `json:"blocked"`
}

// Top lists the addresses (by "ip") or usernames (by "username") with the
// most failed and refused attempts since since (to the second), most
// first. Whole hours come from the hourly sums of attempts_top, the part
// of an hour before them from the attempts; like AttemptCounts it counts
// stored rows.
func Top(ctx context.Context, conn driver.Conn, by string, since time.Time, limit int) ([]TopEntry, error) {
	if by != "ip" && by != "username" {
		return nil, fmt.Errorf("%w: by %q (want ip or username)", ErrBadFilter, by)
	}
	since = InDateTime(since).Truncate(time.Second)
	// The first whole hour of the view at or after since, as the view cuts
	// hours: toStartOfHour in the server's time zone, whose hours start at
	// :30 or :45 UTC in some zones.
	const hour = "toStartOfHour(toDateTime(?) + 3599)"
	q := "SELECT any(value) AS v, sum(f) AS fs, sum(b) AS bs FROM (" +
		"SELECT h, value, failures AS f, blocked AS b FROM " + Database + ".attempts_top WHERE by = ? AND hour >= " + hour +
		" UNION ALL SELECT cityHash64(" + by + ") AS h, " + by + " AS value, toUInt64(result = 'failure') AS f, toUInt64(result = 'blocked') AS b" +
		" FROM " + Database + ".attempts WHERE ts >= toDateTime(?) AND ts < " + hour + " AND result != 'success' AND " + by + " != ''" +
		") GROUP BY h ORDER BY fs + bs DESC, v LIMIT " + strconv.Itoa(max(limit, 1))
	rows, err := conn.Query(ctx, q, by, since.Unix(), since.Unix(), since.Unix())
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
