package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary play the bench's client process too: the
// bench re-executes its own binary with BENCH_ROLE=client.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == roleClient {
		os.Exit(clientMain())
	}
	os.Exit(m.Run())
}

// TestQuick runs the whole bench in quick mode — every configuration ×
// workload × pass for a fraction of a second, the share pass's bcrypt
// logins likewise, the recorder with a few thousand events, the events
// pass with a few thousand events a cell, the store pass with a few
// hundred logins a cell — and
// checks that it ran and wrote its report. It says nothing about speed.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the bench starts redis-server, clickhouse-server and NATS")
	}
	o := quickOptions(defaultOptions())
	o.Out = t.TempDir()
	if testing.Verbose() {
		o.Log = os.Stderr
	} else {
		o.Log = io.Discard
	}
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	rep, err := run(context.Background(), o)
	require.NoError(t, err)

	want := len(passes(o)) * len(workloads) * len(configNames)
	require.Len(t, rep.cells, want, "every pass × workload × configuration ran")
	for _, c := range rep.cells {
		name := c.Pass + "/" + c.Workload + "/" + c.Config
		assert.Positive(t, c.Load.Requests, name)
		assert.Zero(t, c.Load.Errors, "%s: %s", name, c.Load.FirstError)
		assert.Zero(t, c.Unexpected, "%s: statuses %v", name, c.Load.Status)
		if c.Config == cfgRedis || c.Config == cfgEvents {
			assert.Positive(t, c.Scripts, "%s: Redis ran the gate's scripts", name)
		}
		if c.Config == cfgEvents && c.Pass == "cheap" {
			assert.Positive(t, c.Published, "%s: events were published", name)
		}
	}
	wantStore := 0
	for _, wl := range storeWorkloads {
		wantStore += o.Rounds * len(storeContenders(wl))
	}
	require.Len(t, rep.store, wantStore, "every round × store workload × contender ran")
	for _, c := range rep.store {
		name := c.Workload + "/" + c.Contender
		assert.Equal(t, o.StoreLogins, c.Logins, name)
		assert.Positive(t, c.Commands, "%s: Redis ran the contender's commands", name)
		assert.Positive(t, c.RoundTrips, name)
		if c.Contender != ctDjango {
			assert.Positive(t, c.Scripts, "%s: Redis ran the contender's scripts", name)
		}
	}

	require.Len(t, rep.share, o.ShareRounds*len(shareConfigs), "every share round × configuration ran")
	for _, c := range rep.share {
		assert.Positive(t, c.Load.Requests, "%s/%s", passShare, c.Config)
		assert.Zero(t, c.Unexpected, "%s/%s: statuses %v", passShare, c.Config, c.Load.Status)
	}
	require.Len(t, rep.shareFigs.Rounds, o.ShareRounds)

	require.NotNil(t, rep.events)
	require.Len(t, rep.events.Cells, o.Rounds*len(o.EventsRates)*2, "every round × rate × contender (no before) ran")
	for _, c := range rep.events.Cells {
		name := fmt.Sprintf("%s/%d", c.Contender, c.Rate)
		assert.Equal(t, eventsPerCell(c.Rate, o.EventsDuration), c.Events, name)
		assert.Equal(t, uint64(c.Events), c.Unique, "%s: every event written", name)
		assert.Positive(t, c.Publisher, name)
		assert.Positive(t, c.Consumer, name)
	}

	require.NotNil(t, rep.recorder)
	assert.Equal(t, o.RecorderEvents, rep.recorder.Events)
	assert.Len(t, rep.recorder.Lags, o.Probes)
	require.NotNil(t, rep.caught)
	assert.Positive(t, rep.caught.Attempts, "the recorder wrote the gate's events")

	results, err := os.ReadFile(filepath.Join(o.Out, "RESULTS.md"))
	require.NoError(t, err)
	assert.Contains(t, string(results), "Quick mode")
	assert.Contains(t, string(results), "## Targets")
	assert.Contains(t, string(results), "## Redis cost per login")
	assert.Contains(t, string(results), "gate / floor")
	assert.Contains(t, string(results), "## The events pipeline's share of a bcrypt login")
	assert.Contains(t, string(results), "## Events path: CPU per event against a floor")
	assert.Contains(t, string(results), "*defender / floor*")
	for _, name := range []string{chartCheap, chartBcrypt, chartLatency} {
		svg, err := os.ReadFile(filepath.Join(o.Out, name))
		require.NoError(t, err)
		assert.Contains(t, string(svg), "<svg")
	}

	// The saved measurements give the same report again.
	require.NoError(t, os.Remove(filepath.Join(o.Out, "RESULTS.md")))
	require.NoError(t, rerenderReport(o.Out))
	again, err := os.ReadFile(filepath.Join(o.Out, "RESULTS.md"))
	require.NoError(t, err)
	assert.Equal(t, string(results), string(again))
}
