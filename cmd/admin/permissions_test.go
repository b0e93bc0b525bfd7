package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify"
	"github.com/defender-go/defender/internal/notify/webhook"
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
	connect := func(user string) jetstream.JetStream {
		nc, js, err := events.Connect(ctx, e.nats.UserURL(user), user)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		return js
	}
	_, err := connect("gate").Stream(ctx, events.StreamName)
	require.NoError(t, err, "the admin created the stream")

	// A gate's block, live.
	frames, stop := e.live.subscribe()
	defer stop()
	now := time.Now()
	b := events.NewBlock(gate.TransitionRecord{Time: now, Kind: gate.KindUsername, Subject: "grace", Blocked: true,
		Until: now.Add(time.Hour), Failures: 4, Reason: gate.ReasonAuto}, "gate-1")
	data, err := b.Encode()
	require.NoError(t, err)
	_, err = connect("gate").Publish(ctx, b.NATSSubject(e.subjPfx), data)
	require.NoError(t, err)
	select {
	case f := <-frames:
		assert.Contains(t, string(f), `"value":"grace"`)
	case <-time.After(30 * time.Second):
		t.Fatal("the gate's block never reached the live view")
	}

	// The notifier's dead letters.
	n, err := notify.New(ctx, connect("notifier"), notify.Options{})
	require.NoError(t, err)
	require.NoError(t, n.DeadLetter(ctx, webhook.DeadLetter{Endpoint: "ops.example.com", Blocks: []events.Block{b},
		Attempts: 6, Err: "503 Service Unavailable", Time: now}))
	resp, body := e.do(http.MethodGet, "/api/v1/notifier/dead-letters", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	got := decode[struct {
		DeadLetters []webhook.DeadLetter `json:"dead_letters"`
	}](t, body)
	require.Len(t, got.DeadLetters, 1)
	assert.Equal(t, "ops.example.com", got.DeadLetters[0].Endpoint)

	// Its own block and unblock.
	blocks, unblocks := e.subscribe(e.subjPfx.Blocks()), e.subscribe(e.subjPfx.Unblocks())
	resp, body = e.do(http.MethodPost, "/api/v1/blocked", strings.NewReader(`{"kind":"username","value":"mallory","duration":"1h"}`),
		http.Header{"Content-Type": {"application/json"}})
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	assert.Equal(t, "admin", next(t, blocks).Reason)
	resp, body = e.do(http.MethodDelete, "/api/v1/blocked/username/mallory", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "mallory", next(t, unblocks).Subject)

	assert.Empty(t, e.nats.Violations(), "the admin stays within its permissions")
}
