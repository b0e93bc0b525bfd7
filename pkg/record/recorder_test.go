package record_test

import (
	"context"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

func TestRecorderEndToEnd(t *testing.T) {
	_, conn := sharedClickHouse(t)
	_, js := natsStream(t)
	ctx := context.Background()

	const n = 3000
	base := time.Now().Add(-time.Hour).UTC()
	as := make([]events.Attempt, n)
	for i := range as {
		as[i] = newAttempt(i, base)
	}
	until := base.Add(2 * time.Hour).Truncate(time.Second)
	blocks := []events.Block{
		{V: 1, Type: events.TypeBlock, ID: events.NewID(), Time: base.Add(time.Second), Kind: events.KindIP,
			Subject: "10.0.0.1", Until: &until, Failures: 4, Reason: "auto", Gate: "gate-a"},
		{V: 1, Type: events.TypeBlock, ID: events.NewID(), Time: base.Add(2 * time.Second), Kind: events.KindUsername,
			Subject: "user1", Permanent: true, Failures: 9, Reason: "blacklist"},
		{V: 1, Type: events.TypeUnblock, ID: events.NewID(), Time: base.Add(3 * time.Second), Kind: events.KindIP,
			Subject: "10.0.0.1", Reason: "admin", Gate: "admin"},
		{V: 1, Type: events.TypeBlock, ID: events.NewID(), Time: base.Add(4 * time.Second), Kind: events.KindPair,
			Subject: "10.0.0.2|user2", Until: &until, Failures: 3, Reason: "auto"},
	}

	reg := prometheus.NewRegistry()
	rec, _ := runRecorder(t, js, conn, record.Options{Registerer: reg, Batch: 1000})
	publishAttempts(t, js, as)
	for i := range blocks {
		data, err := blocks[i].Encode()
		require.NoError(t, err)
		publishRaw(t, js, blocks[i].NATSSubject(subjects), data, blocks[i].ID)
	}

	require.Eventually(t, func() bool {
		s := rec.Stats()
		return s.Attempts == n && s.Blocks == uint64(len(blocks))
	}, time.Minute, 50*time.Millisecond)
	assert.EqualValues(t, n, countAttempts(t, conn))
	assert.EqualValues(t, n, physicalRows(t, conn, "attempts"))

	// Every field comes back, for a user's attempts, newest first.
	got, _, err := record.QueryAttempts(ctx, conn, record.AttemptFilter{Usernames: []string{"user7"}, Limit: record.MaxLimit})
	require.NoError(t, err)
	var want []events.Attempt
	for _, a := range as {
		if a.Username == "user7" {
			want = append(want, a)
		}
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Time.After(want[j].Time) })
	require.Equal(t, want, got)

	// Filters combine.
	since := base.Add(1000 * time.Millisecond)
	f := record.AttemptFilter{Result: events.ResultFailure, Usernames: []string{"user1"}, Since: since, Until: since.Add(time.Second)}
	got, _, err = record.QueryAttempts(ctx, conn, f)
	require.NoError(t, err)
	cnt, err := record.CountAttempts(ctx, conn, f)
	require.NoError(t, err)
	var wantIDs []string
	for _, a := range as {
		if a.Result == events.ResultFailure && a.Username == "user1" && !a.Time.Before(since) && a.Time.Before(since.Add(time.Second)) {
			wantIDs = append(wantIDs, a.ID)
		}
	}
	require.NotEmpty(t, wantIDs)
	assert.Len(t, got, len(wantIDs))
	assert.EqualValues(t, len(wantIDs), cnt)
	for _, a := range got {
		assert.Contains(t, wantIDs, a.ID)
	}
	byIP, _, err := record.QueryAttempts(ctx, conn, record.AttemptFilter{IP: netip.PrefixFrom(netip.MustParseAddr(as[42].IP), 32)})
	require.NoError(t, err)
	require.NotEmpty(t, byIP)
	for _, a := range byIP {
		assert.Equal(t, as[42].IP, a.IP)
	}

	// Blocks, newest first, with their fields.
	gotBlocks, _, err := record.QueryBlocks(ctx, conn, record.BlockFilter{})
	require.NoError(t, err)
	require.Len(t, gotBlocks, len(blocks))
	for i, b := range gotBlocks {
		exp := blocks[len(blocks)-1-i]
		exp.Time = exp.Time.Truncate(time.Millisecond)
		if exp.Until != nil {
			u := exp.Until.UTC()
			exp.Until = &u
		}
		assert.Equal(t, exp, b)
	}
	ipBlocks, _, err := record.QueryBlocks(ctx, conn, record.BlockFilter{Kinds: []string{events.KindIP}, Type: "block"})
	require.NoError(t, err)
	require.Len(t, ipBlocks, 1)
	assert.Equal(t, blocks[0].ID, ipBlocks[0].ID)

	// A redelivered event (here: published again under another message
	// id, past the stream's de-duplication) is written twice but read once.
	// ReplacingMergeTree drops the second copy whenever ClickHouse merges
	// the parts, in the background: the table holds between n and n+100
	// rows (a CI run saw a merge before the count), the recorder wrote
	// n+100, and every read sees n.
	dups := as[:100]
	for i := range dups {
		data, err := dups[i].Encode()
		require.NoError(t, err)
		publishRaw(t, js, dups[i].NATSSubject(subjects), data, "again-"+dups[i].ID)
	}
	require.Eventually(t, func() bool { return rec.Stats().Attempts == n+100 }, time.Minute, 50*time.Millisecond)
	rows := physicalRows(t, conn, "attempts")
	assert.GreaterOrEqual(t, rows, uint64(n))
	assert.LessOrEqual(t, rows, uint64(n+100))
	assert.EqualValues(t, n, countAttempts(t, conn))
	ids := storedAttemptIDs(t, conn)
	assert.Len(t, ids, n)
	for _, a := range as {
		assert.Equal(t, 1, ids[a.ID], a.ID)
	}

	// Metrics.
	assert.EqualValues(t, n+100, testenv.Metric(t, reg, "defender_recorder_rows_written_total", "table", "attempts"))
	assert.EqualValues(t, len(blocks), testenv.Metric(t, reg, "defender_recorder_rows_written_total", "table", "blocks"))
}

func TestQueryPaging(t *testing.T) {
	_, conn := sharedClickHouse(t)
	_, js := natsStream(t)
	ctx := context.Background()

	// Spread over three days, many sharing a millisecond, so pages cross
	// time windows and ties are broken by id.
	const n = 1500
	base := time.Now().Add(-72 * time.Hour).UTC().Truncate(time.Second)
	as := make([]events.Attempt, n)
	for i := range as {
		as[i] = newAttempt(i, base)
		as[i].Time = base.Add(time.Duration(i/3) * 137 * time.Second).Add(time.Duration(i%2) * time.Millisecond)
	}
	rec, _ := runRecorder(t, js, conn, record.Options{})
	publishAttempts(t, js, as)
	require.Eventually(t, func() bool { return rec.Stats().Attempts == n }, time.Minute, 50*time.Millisecond)

	want := append([]events.Attempt(nil), as...)
	sort.SliceStable(want, func(i, j int) bool { return want[i].Time.After(want[j].Time) })
	var got []events.Attempt
	f := record.AttemptFilter{Limit: 70}
	for {
		page, next, err := record.QueryAttempts(ctx, conn, f)
		require.NoError(t, err)
		got = append(got, page...)
		if next == nil {
			require.Len(t, got, n, "the last page ends the listing")
			break
		}
		require.Len(t, page, f.Limit, "a page before the last is full")
		c, err := record.ParseCursor(next.String())
		require.NoError(t, err)
		f.After = c
	}
	require.Len(t, got, n)
	seen := map[string]bool{}
	for i, a := range got {
		require.False(t, seen[a.ID], "listed twice: %s", a.ID)
		seen[a.ID] = true
		if i > 0 {
			require.False(t, a.Time.After(got[i-1].Time), "newest first at %d", i)
		}
	}
	// Same times in the same order as a plain sort (ids may tie-break
	// differently within one millisecond).
	for i := range want {
		assert.Equal(t, want[i].Time, got[i].Time)
	}
}

// Bounds outside DateTime's range (1970 to 2106) select as if unbounded on
// that side, not as the wrapped value toDateTime would make of them.
func TestQueryBoundsOutsideDateTime(t *testing.T) {
	_, conn := sharedClickHouse(t)
	_, js := natsStream(t)
	ctx := context.Background()
	as := []events.Attempt{newAttempt(0, time.Now().Add(-time.Hour)), newAttempt(1, time.Now().Add(-40*24*time.Hour))}
	for i := range as {
		as[i].Username = "far"
	}
	rec, _ := runRecorder(t, js, conn, record.Options{})
	publishAttempts(t, js, as)
	require.Eventually(t, func() bool { return rec.Stats().Attempts == 2 }, time.Minute, 50*time.Millisecond)

	past, future := time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2110, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		since, until time.Time
		want         int
	}{
		{"since before 1970", past, time.Time{}, 2},
		{"until after 2106", time.Time{}, future, 2},
		{"both", past, future, 2},
		{"since after 2106", future, time.Time{}, 0},
		{"until before 1970", time.Time{}, past, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := record.AttemptFilter{Usernames: []string{"far"}, Since: tc.since, Until: tc.until}
			got, _, err := record.QueryAttempts(ctx, conn, f)
			require.NoError(t, err)
			assert.Len(t, got, tc.want)
			n, err := record.CountAttempts(ctx, conn, f)
			require.NoError(t, err)
			assert.EqualValues(t, tc.want, n)
		})
	}
}
