package record

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/defender-go/defender/pkg/events"
)

// ErrUnstorable is wrapped by the errors of events that decode but cannot
// be stored (an id that is not a UUID, a time outside DateTime's range, an
// unknown enum value). Such an event would make ClickHouse refuse its
// whole batch, so it goes to the dead-letter subject instead.
var ErrUnstorable = errors.New("record: event cannot be stored")

// DateTime's range: seconds since the epoch in a UInt32.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(math.MaxUint32, 0)
)

// attemptRow is an attempt as inserted, in the column order of
// insert_attempts.sql.
type attemptRow struct {
	id                                         uuid.UUID
	ts                                         time.Time
	ms                                         uint16
	ip, username, result                       string
	blockedBy                                  []string
	path, userAgent, gate                      string
	ipFailures, usernameFailures, pairFailures uint32
	observe                                    uint8
	shared                                     string
	familiar                                   uint8
}

// blockRow is a block or unblock as inserted, in the column order of
// insert_blocks.sql.
type blockRow struct {
	id                 uuid.UUID
	ts                 time.Time
	ms                 uint16
	typ, kind, subject string
	until              time.Time
	permanent          uint8
	failures           uint32
	reason, gate       string
	observe            uint8
}

func storableTime(t time.Time) (time.Time, uint16, error) {
	if t.Before(minTime) || !t.Before(maxTime) {
		return time.Time{}, 0, fmt.Errorf("%w: time %s outside DateTime's range", ErrUnstorable, t.Format(time.RFC3339))
	}
	sec := t.Truncate(time.Second)
	return sec, uint16(t.Sub(sec) / time.Millisecond), nil
}

func storableCount(name string, n int) (uint32, error) {
	if n < 0 || n > math.MaxUint32 {
		return 0, fmt.Errorf("%w: %s %d out of UInt32 range", ErrUnstorable, name, n)
	}
	return uint32(n), nil
}

func storableID(id string) (uuid.UUID, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return uuid.UUID{}, fmt.Errorf("%w: id %q is not a UUID", ErrUnstorable, id)
	}
	return u, nil
}

func newAttemptRow(a *events.Attempt) (attemptRow, error) {
	var r attemptRow
	var err error
	if r.id, err = storableID(a.ID); err != nil {
		return r, err
	}
	if r.ts, r.ms, err = storableTime(a.Time); err != nil {
		return r, err
	}
	r.ip, r.username, r.result = a.IP, a.Username, a.Result
	r.blockedBy = a.BlockedBy
	if r.blockedBy == nil {
		r.blockedBy = []string{}
	}
	r.path, r.userAgent, r.gate = a.Path, a.UserAgent, a.Gate
	if r.ipFailures, err = storableCount("ip_failures", a.IPFailures); err != nil {
		return r, err
	}
	if r.usernameFailures, err = storableCount("username_failures", a.UsernameFailures); err != nil {
		return r, err
	}
	if r.pairFailures, err = storableCount("pair_failures", a.PairFailures); err != nil {
		return r, err
	}
	r.observe, r.shared, r.familiar = flag(a.Observe), a.Shared, flag(a.Familiar)
	return r, nil
}

// flag is a bool as a UInt8 column holds it.
func flag(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func newBlockRow(b *events.Block) (blockRow, error) {
	var r blockRow
	var err error
	if r.id, err = storableID(b.ID); err != nil {
		return r, err
	}
	if r.ts, r.ms, err = storableTime(b.Time); err != nil {
		return r, err
	}
	r.typ, r.kind, r.subject, r.gate = string(b.Type), b.Kind, b.Subject, b.Gate
	switch b.Reason {
	case "auto", "admin", "blacklist", "user":
		r.reason = b.Reason
	default:
		return r, fmt.Errorf("%w: reason %q", ErrUnstorable, b.Reason)
	}
	r.until = minTime
	if b.Until != nil && !b.Until.IsZero() {
		if r.until, _, err = storableTime(*b.Until); err != nil {
			return r, err
		}
	}
	r.permanent, r.observe = flag(b.Permanent), flag(b.Observe)
	if r.failures, err = storableCount("failures", b.Failures); err != nil {
		return r, err
	}
	return r, nil
}

// writeAttempts inserts rows as one batch.
func writeAttempts(ctx context.Context, conn driver.Conn, rows []attemptRow) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := conn.PrepareBatch(ctx, insertAttempts)
	if err != nil {
		return fmt.Errorf("prepare attempts insert: %w", err)
	}
	defer b.Abort() //nolint:errcheck // after Send it is a no-op
	for i := range rows {
		r := &rows[i]
		if err := b.Append(r.id, r.ts, r.ms, r.ip, r.username, r.result, r.blockedBy,
			r.path, r.userAgent, r.gate, r.ipFailures, r.usernameFailures, r.pairFailures,
			r.observe, r.shared, r.familiar); err != nil {
			return fmt.Errorf("append attempt %s: %w", r.id, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d attempts: %w", len(rows), err)
	}
	return nil
}

// writeBlocks inserts rows as one batch.
func writeBlocks(ctx context.Context, conn driver.Conn, rows []blockRow) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := conn.PrepareBatch(ctx, insertBlocks)
	if err != nil {
		return fmt.Errorf("prepare blocks insert: %w", err)
	}
	defer b.Abort() //nolint:errcheck // after Send it is a no-op
	for i := range rows {
		r := &rows[i]
		if err := b.Append(r.id, r.ts, r.ms, r.typ, r.kind, r.subject, r.until,
			r.permanent, r.failures, r.reason, r.gate, r.observe); err != nil {
			return fmt.Errorf("append block %s: %w", r.id, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d blocks: %w", len(rows), err)
	}
	return nil
}
