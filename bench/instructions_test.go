package main

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCallgrindIr(t *testing.T) {
	out := "PID 4963: redis-server --port 16399\nsending command status internal to pid 4963\n\n  Totals:        Ir \n   Th 1  27,027,576 \n   Th 2         518 \n"
	n, err := parseCallgrindIr(out)
	require.NoError(t, err)
	assert.EqualValues(t, 27027576, n, "the main thread's, not the others'")
	_, err = parseCallgrindIr("PID 1: no such callgrind run\n")
	assert.ErrorContains(t, err, "no totals")
	_, err = parseCallgrindIr("   Th 1  27,0x7 \n")
	assert.Error(t, err)
}

// TestInstructionsPass runs the instructions pass with a few logins per
// cell against redis-server under callgrind: every store contender of
// both workloads is counted, the gate decided every login with Redis,
// and the counts tell the contenders apart as their scripts do (the
// floor with spraying runs more than the floor, the gate's success more
// than its failure); the report shows them.
func TestInstructionsPass(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the pass starts redis-server under valgrind")
	}
	o := quickOptions(defaultOptions())
	o.Only = passInstructions
	o.Log = io.Discard
	if testing.Verbose() {
		o.Log = os.Stderr
	}
	e := &env{o: o, dir: t.TempDir()}
	cells, err := e.runInstructions(context.Background())
	require.NoError(t, err)
	per := map[storeKey]float64{}
	for _, wl := range storeWorkloads {
		for _, ct := range storeContenders(wl) {
			per[storeKey{wl, ct}] = -1
		}
	}
	require.Len(t, cells, len(per), "one cell per workload and contender")
	for _, c := range cells {
		key := storeKey{c.Workload, c.Contender}
		require.Contains(t, per, key)
		assert.Equal(t, o.InstrLogins, c.Logins)
		assert.Zero(t, c.Degraded, "%v", key)
		assert.Positive(t, c.Instructions, "%v", key)
		per[key] = float64(c.Instructions) / float64(c.Logins)
	}
	assert.Greater(t, per[storeKey{wlFailure, ctFloorSpray}], per[storeKey{wlFailure, ctFloor}])
	assert.Greater(t, per[storeKey{wlSuccess, ctGate}], per[storeKey{wlFailure, ctGate}], "a success adds the clear")

	md := string(newReport(rawResults{Options: o, Instructions: cells}).markdown())
	assert.Contains(t, md, "## Redis instructions per login")
	assert.Contains(t, md, "| "+ctGate+" | ")
	md = string(newReport(rawResults{Options: o}).markdown())
	assert.NotContains(t, md, "## Redis instructions per login", "no section when the pass did not run")
}
