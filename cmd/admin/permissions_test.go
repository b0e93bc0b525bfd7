package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// TestAdminUnderREADMEPermissions: as the README's admin user
// (testenv.NATSAsREADME), the admin creates the missing stream, shows a
// block a gate publishes on its live view, reads the notifier's dead
// letters, and publishes its own block and unblock, with no permission
// violation.
func TestAdminUnderREADMEPermissions(t *testing.T) {
	e := newEnv(t, envOpts{readmeNATS: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := e.nats.JetStreamAs("gate").Stream(ctx, events.StreamName)
	require.NoError(t, err, "the admin created the stream")

	// A gate's block, live.
	frames, stop := e.live.subscribe()
	defer stop()
	now := time.Now()
	b := events.NewBlock(gate.TransitionRecord{Time: now, Kind: gate.KindUsername, Subject: "grace", Blocked: true,
		Until: now.Add(time.Hour), Failures: 4, Reason: gate.ReasonAuto}, "gate-1")
	data, err := b.Encode()
	require.NoError(t, err)
	_, err = e.nats.JetStreamAs("gate").Publish(ctx, b.NATSSubject(e.subjPfx), data)
	require.NoError(t, err)
	select {
	case f := <-frames:
		assert.Contains(t, string(f), `"value":"grace"`)
	case <-time.After(30 * time.Second):
		t.Fatal("the gate's block never reached the live view")
	}

	// The notifier's dead letters.
	writeDeadLetter(t, e.nats.JetStreamAs("notifier"), e.subjPfx, b)
	got := e.deadLetters()
	require.Len(t, got, 1)
	assert.Equal(t, "ops.example.com", got[0].Endpoint)

	// Its own block and unblock.
	blocks, unblocks := e.subscribe(e.subjPfx.Blocks()), e.subscribe(e.subjPfx.Unblocks())
	resp, body := e.do(http.MethodPost, "/api/v1/blocked", strings.NewReader(`{"kind":"username","value":"mallory","duration":"1h"}`),
		http.Header{"Content-Type": {"application/json"}})
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	assert.Equal(t, "admin", next(t, blocks).Reason)
	resp, body = e.do(http.MethodDelete, "/api/v1/blocked/username/mallory", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "mallory", next(t, unblocks).Subject)

	assert.Empty(t, e.nats.Violations(), "the admin stays within its permissions")
}
