package main

import (
	"context"
	"net/http"
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

// TestNotifierDeadLetters: the webhook calls the notifier gave up on are
// in the admin's API and on its Notifier page; without NATS the admin
// says why it cannot show them.
func TestNotifierDeadLetters(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, js, err := events.Connect(ctx, e.nats.URL, "notifier-test")
	require.NoError(t, err)
	_, err = events.EnsureStream(ctx, js, events.StreamConfig{Subjects: e.subjPfx})
	require.NoError(t, err)
	b := events.NewBlock(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindUsername, Subject: "<b>carol</b>", Blocked: true,
		Until: time.Now().Add(time.Minute), Failures: 4, Reason: gate.ReasonAuto}, "g")
	writeDeadLetter(t, js, e.subjPfx, b)

	got := e.deadLetters()
	require.Len(t, got, 1)
	assert.Equal(t, "ops.example.com", got[0].Endpoint)
	assert.Equal(t, 6, got[0].Attempts)

	resp, body := e.do(http.MethodGet, "/notifier", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "ops.example.com")
	assert.Contains(t, body, "503 Service Unavailable")
	assert.Contains(t, body, "&lt;b&gt;carol&lt;/b&gt;", "a hostile subject is escaped")

	off := newEnv(t, envOpts{noNATS: true})
	resp, body = off.do(http.MethodGet, "/api/v1/notifier/dead-letters", nil, nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Contains(t, body, "DEFENDER_NATS_URL")
	resp, body = off.do(http.MethodGet, "/notifier", nil, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "DEFENDER_NATS_URL")
}

// writeDeadLetter has the notifier (its buckets made through js) keep a
// dead letter of a call with b that ops.example.com refused 6 times.
func writeDeadLetter(t *testing.T, js jetstream.JetStream, subjects events.Subjects, b events.Block) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := notify.New(ctx, js, notify.Options{Subjects: subjects})
	require.NoError(t, err)
	require.NoError(t, n.DeadLetter(ctx, webhook.DeadLetter{Endpoint: "ops.example.com", Blocks: []events.Block{b},
		Attempts: 6, Err: "503 Service Unavailable", Time: time.Now()}))
}

// deadLetters are the dead letters the admin's API lists.
func (e *env) deadLetters() []webhook.DeadLetter {
	e.t.Helper()
	resp, body := e.do(http.MethodGet, "/api/v1/notifier/dead-letters", nil, nil)
	require.Equal(e.t, http.StatusOK, resp.StatusCode, body)
	return decode[struct {
		DeadLetters []webhook.DeadLetter `json:"dead_letters"`
	}](e.t, body).DeadLetters
}
