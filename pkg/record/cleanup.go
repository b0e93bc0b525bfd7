package record

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// CleanupReport is what Cleanup did.
type CleanupReport struct {
	// Cutoff is the time before which attempts were removed.
	Cutoff time.Time
	// Removed is the number of attempt rows removed, counted before
	// removing them. A duplicate delivery not yet merged away counts
	// once per copy.
	Removed uint64
	// DroppedPartitions are the days dropped whole (partition ids,
	// YYYYMMDD).
	DroppedPartitions []string
	// Mutated reports whether the boundary day needed a DELETE mutation.
	Mutated bool
}

// Print writes the report as cleanup_django_defender does.
func (r CleanupReport) Print(w io.Writer) error {
	_, err := fmt.Fprintf(w, "Starting clean up of defender attempts\nFinished. Removed %d attempt entries.\n", r.Removed)
	return err
}

// Cleanup removes the attempts older than olderThan
// (DEFENDER_ACCESS_ATTEMPT_EXPIRATION): days entirely older are dropped
// whole (ALTER TABLE ... DROP PARTITION, instant), and the older rows of
// the boundary day are deleted with a mutation (ALTER TABLE ... DELETE),
// which Cleanup waits for. The materialized views of
// schema/003_aggregates.sql lose the days dropped whole; the boundary
// day's counts stay until the next day's Cleanup. Blocks are kept.
//
// On 18.16 a mutation rewrites every part of the table that it applies to,
// not only the boundary day's, and there is no mutations_sync setting:
// Cleanup polls system.mutations until it is done or ctx ends. Run it
// hourly or daily rather than every minute.
//
// On the clustered schema (package schema/cluster) defender.attempts is a
// Distributed table, which can neither drop partitions nor mutate: Cleanup
// then works on defender.attempts_local of the server conn is connected
// to, and Removed counts that shard's rows. Run it against every shard.
func Cleanup(ctx context.Context, conn driver.Conn, olderThan time.Duration) (CleanupReport, error) {
	rep := CleanupReport{Cutoff: time.Now().Add(-olderThan).Truncate(time.Second)}
	cutoff := rep.Cutoff.Unix()
	table := "attempts"
	dist, err := distributed(ctx, conn, table)
	if err != nil {
		return rep, fmt.Errorf("cleanup: %w", err)
	}
	if dist {
		table += "_local"
	}
	// The cutoff's own day is never dropped whole, even when every row it
	// holds now is older: a late event (a recorder catching up) newer
	// than the cutoff may land in it between the listing and the drop.
	// Its rows go by condition. The partition key is toDate(ts), in the
	// server's time zone: the server names the day.
	var cutoffDay uint32
	if err := conn.QueryRow(ctx, "SELECT toYYYYMMDD(toDateTime(?))", cutoff).Scan(&cutoffDay); err != nil {
		return rep, fmt.Errorf("cleanup: day of the cutoff: %w", err)
	}
	if err := dropViewDays(ctx, conn, dist, strconv.FormatUint(uint64(cutoffDay), 10)); err != nil {
		return rep, err
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+Database+"."+table+" WHERE ts < toDateTime(?)", cutoff).
		Scan(&rep.Removed); err != nil {
		return rep, fmt.Errorf("cleanup: count attempts: %w", err)
	}
	if rep.Removed == 0 {
		return rep, nil
	}
	parts, err := partitions(ctx, conn, table)
	if err != nil {
		return rep, err
	}
	boundary := false
	for _, p := range parts {
		switch {
		case p.maxTime.Unix() < cutoff && p.id < strconv.FormatUint(uint64(cutoffDay), 10):
			if err := conn.Exec(ctx, "ALTER TABLE "+Database+"."+table+" DROP PARTITION ID ?", p.id); err != nil {
				return rep, fmt.Errorf("cleanup: drop partition %s: %w", p.id, err)
			}
			rep.DroppedPartitions = append(rep.DroppedPartitions, p.id)
			slog.InfoContext(ctx, "dropped attempts partition", "partition", p.id, "rows", p.rows)
		case p.minTime.Unix() < cutoff:
			boundary = true
		}
	}
	if boundary {
		// Rows inserted into the dropped days since the count (late
		// events) go too: the condition covers them.
		if err := conn.Exec(ctx, "ALTER TABLE "+Database+"."+table+" DELETE WHERE ts < toDateTime(?)", cutoff); err != nil {
			return rep, fmt.Errorf("cleanup: delete before %s: %w", rep.Cutoff.Format(time.RFC3339), err)
		}
		rep.Mutated = true
		if err := waitMutations(ctx, conn, table); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// views are the materialized views of schema/003_aggregates.sql, each
// partitioned by day.
var views = []string{"attempts_per_minute", "attempts_by_subject", "attempts_top"}

// dropViewDays drops the days before cutoffDay (YYYYMMDD) from every
// view: whole days only, so a view keeps the boundary day's counts until
// that day is past. A view stores its rows in ".inner.<view>", whose
// partitions DROP PARTITION on the view drops.
func dropViewDays(ctx context.Context, conn driver.Conn, dist bool, cutoffDay string) error {
	for _, v := range views {
		if dist {
			v += "_local"
		}
		parts, err := partitions(ctx, conn, ".inner."+v)
		if err != nil {
			return err
		}
		for _, p := range parts {
			if p.id >= cutoffDay {
				continue
			}
			if err := conn.Exec(ctx, "ALTER TABLE "+Database+"."+v+" DROP PARTITION ID ?", p.id); err != nil {
				return fmt.Errorf("cleanup: drop partition %s of %s: %w", p.id, v, err)
			}
		}
	}
	return nil
}

type partition struct {
	id               string
	minTime, maxTime time.Time
	rows             uint64
}

// partitions lists a table's partitions from its active parts.
func partitions(ctx context.Context, conn driver.Conn, table string) ([]partition, error) {
	rows, err := conn.Query(ctx, "SELECT partition_id, min(min_time), max(max_time), sum(rows) FROM system.parts"+
		" WHERE database = '"+Database+"' AND table = ? AND active GROUP BY partition_id ORDER BY partition_id", table)
	if err != nil {
		return nil, fmt.Errorf("cleanup: list partitions: %w", err)
	}
	defer rows.Close()
	var ps []partition
	for rows.Next() {
		var p partition
		if err := rows.Scan(&p.id, &p.minTime, &p.maxTime, &p.rows); err != nil {
			return nil, fmt.Errorf("cleanup: list partitions: %w", err)
		}
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cleanup: list partitions: %w", err)
	}
	return ps, nil
}

// waitMutations polls until table has no mutation left to do.
func waitMutations(ctx context.Context, conn driver.Conn, table string) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		var left uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.mutations"+
			" WHERE database = '"+Database+"' AND table = ? AND is_done = 0", table).Scan(&left); err != nil {
			return fmt.Errorf("cleanup: wait for delete: %w", err)
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cleanup: delete still running: %w", ctx.Err())
		case <-t.C:
		}
	}
}
