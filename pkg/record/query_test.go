package record_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// TestSubjectListing: one username's or one address's attempts, which
// QueryAttempts bounds in time through attempts_by_subject, page newest
// first with every id once, under every
// filter: a third of the rows are stored twice (the views count them
// twice) and the observe filter is not in the views, so some bounds hold
// fewer rows than a page and the query must look further.
func TestSubjectListing(t *testing.T) {
	_, conn := sharedClickHouse(t)
	ctx := context.Background()
	user := fmt.Sprintf("subject-%d", rand.Uint32())
	ip := netip.AddrFrom4([4]byte{198, 18, byte(rand.UintN(256)), byte(rand.UintN(256))})
	const n = 240
	now := time.Now().UTC().Truncate(time.Millisecond)
	type row struct {
		id      uuid.UUID
		at      time.Time
		result  string
		observe bool
	}
	rows := make([]row, n) // newest first
	results := []string{events.ResultSuccess, events.ResultFailure, events.ResultBlocked}
	for i := range rows {
		rows[i] = row{uuid.Must(uuid.NewV7()), now.Add(-time.Duration(i) * 17 * time.Minute).Add(-time.Duration(i%5) * time.Millisecond),
			results[i%3], i%2 == 1}
	}
	insert := func(every int) {
		b, err := conn.PrepareBatch(ctx, "INSERT INTO defender.attempts (id, ts, ts_ms, ip, username, result, path, user_agent, observe)")
		require.NoError(t, err)
		for i, r := range rows {
			if i%every == 0 {
				require.NoError(t, b.Append(r.id, r.at.Truncate(time.Second), uint16(r.at.Nanosecond()/1e6), ip.String(), user,
					r.result, "/login", "test", map[bool]uint8{true: 1}[r.observe]))
			}
		}
		require.NoError(t, b.Send())
	}
	insert(1)
	insert(3) // the copies, in parts of their own

	observe := true
	tests := []struct {
		name string
		f    record.AttemptFilter
		keep func(row) bool
	}{
		{"username", record.AttemptFilter{Usernames: []string{user, "nobody-" + user}}, func(row) bool { return true }},
		{"ip", record.AttemptFilter{IP: netip.PrefixFrom(ip, 32)}, func(row) bool { return true }},
		{"username and result", record.AttemptFilter{Usernames: []string{user}, Result: events.ResultFailure},
			func(r row) bool { return r.result == events.ResultFailure }},
		{"ip and observe", record.AttemptFilter{IP: netip.PrefixFrom(ip, 32), Observe: &observe}, func(r row) bool { return r.observe }},
		{"username since", record.AttemptFilter{Usernames: []string{user}, Since: now.Add(-24 * time.Hour)},
			func(r row) bool { return !r.at.Before(now.Add(-24 * time.Hour)) }},
		{"ip until", record.AttemptFilter{IP: netip.PrefixFrom(ip, 32), Until: rows[100].at},
			func(r row) bool { return r.at.Before(rows[100].at) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for _, r := range rows {
				if tc.keep(r) {
					want = append(want, r.id.String())
				}
			}
			var got []string
			f := tc.f
			f.Limit = 7
			for pages := 0; ; pages++ {
				require.Less(t, pages, n, "the listing ends")
				page, next, err := record.QueryAttempts(ctx, conn, f)
				require.NoError(t, err)
				got = append(got, idsOf(page)...)
				if next == nil {
					break
				}
				require.Len(t, page, f.Limit, "a page before the last is full")
				f.After = *next
			}
			assert.Equal(t, want, got)
		})
	}
	none, next, err := record.QueryAttempts(ctx, conn, record.AttemptFilter{Usernames: []string{"nobody-" + user}})
	require.NoError(t, err)
	assert.Empty(t, none)
	assert.Nil(t, next)
}

func idsOf(as []events.Attempt) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}
