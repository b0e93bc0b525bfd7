package record_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

func TestCleanup(t *testing.T) {
	_, conn := sharedClickHouse(t)
	_, js := natsStream(t)
	ctx := context.Background()

	// Expiration such that the cutoff falls at noon yesterday (UTC, the
	// test server's zone), whatever the time of day: yesterday is the
	// boundary day, older days go whole.
	now := time.Now().UTC()
	cutoff := now.Truncate(24 * time.Hour).Add(-12 * time.Hour)
	expiration := now.Sub(cutoff)
	at := map[string]time.Time{
		"three days ago":   cutoff.Add(-60 * time.Hour),
		"two days ago":     cutoff.Add(-30 * time.Hour),
		"boundary, before": cutoff.Add(-time.Hour),
		"boundary, after":  cutoff.Add(time.Hour),
		"now":              now.Add(-time.Minute),
	}
	perTime := 5
	var as []events.Attempt
	for name, ts := range at {
		for i := range perTime {
			a := newAttempt(i, ts)
			a.Username = name
			as = append(as, a)
		}
	}
	rec, _ := runRecorder(t, js, conn, record.Options{})
	publishAttempts(t, js, as)
	require.Eventually(t, func() bool { return rec.Stats().Attempts == uint64(len(as)) }, time.Minute, 50*time.Millisecond)

	rep, err := record.Cleanup(ctx, conn, expiration)
	require.NoError(t, err)
	assert.EqualValues(t, 3*perTime, rep.Removed)
	assert.Len(t, rep.DroppedPartitions, 2, "the two older days are dropped whole")
	assert.True(t, rep.Mutated, "the boundary day is deleted by condition")

	for name, ts := range at {
		n, err := record.CountAttempts(ctx, conn, record.AttemptFilter{Usernames: []string{name}})
		require.NoError(t, err)
		if ts.Before(cutoff) {
			assert.Zero(t, n, name)
		} else {
			assert.EqualValues(t, perTime, n, name)
		}
	}

	var out bytes.Buffer
	require.NoError(t, rep.Print(&out))
	assert.Equal(t, "Starting clean up of defender attempts\nFinished. Removed 15 attempt entries.\n", out.String())

	// Nothing left to remove: a second run is a no-op.
	rep, err = record.Cleanup(ctx, conn, expiration)
	require.NoError(t, err)
	assert.Zero(t, rep.Removed)
	assert.Empty(t, rep.DroppedPartitions)
}

// TestCleanupKeepsTheCutoffDay: the day holding the cutoff is deleted by
// condition, never dropped whole, even when all its rows are older than
// the cutoff: an event newer than the cutoff, recorded late, may be
// written into that day between Cleanup's listing and a drop, and would
// be lost with it.
func TestCleanupKeepsTheCutoffDay(t *testing.T) {
	_, conn := sharedClickHouse(t)
	_, js := natsStream(t)
	ctx := context.Background()

	// A cutoff at noon (UTC, the test server's zone) 400 days ago, far
	// from what other tests write; its day holds rows of the morning only.
	now := time.Now().UTC()
	cutoff := now.Truncate(24*time.Hour).AddDate(0, 0, -400).Add(12 * time.Hour)
	var as []events.Attempt
	for i := range 3 {
		a := newAttempt(i, cutoff.Add(-6*time.Hour))
		a.Username = "cutoff-day-morning"
		as = append(as, a)
	}
	rec, _ := runRecorder(t, js, conn, record.Options{})
	publishAttempts(t, js, as)
	require.Eventually(t, func() bool { return rec.Stats().Attempts == uint64(len(as)) }, time.Minute, 50*time.Millisecond)

	rep, err := record.Cleanup(ctx, conn, now.Sub(cutoff))
	require.NoError(t, err)
	assert.NotContains(t, rep.DroppedPartitions, cutoff.Format("20060102"), "the cutoff's day is not dropped whole")
	assert.True(t, rep.Mutated, "its rows are deleted by condition")
	n, err := record.CountAttempts(ctx, conn, record.AttemptFilter{Usernames: []string{"cutoff-day-morning"}})
	require.NoError(t, err)
	assert.Zero(t, n, "the rows older than the cutoff are gone")
}
