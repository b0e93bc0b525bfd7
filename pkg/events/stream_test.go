package events_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

func TestEnsureStream(t *testing.T) {
	env := newNATSEnv(t) // created with defaults
	ctx := t.Context()
	s, err := env.js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"defender.>"}, info.Config.Subjects)
	assert.Equal(t, jetstream.FileStorage, info.Config.Storage)
	assert.Equal(t, events.DefaultStreamMaxAge, info.Config.MaxAge)
	assert.Equal(t, int64(events.DefaultStreamMaxBytes), info.Config.MaxBytes)
	assert.Equal(t, events.DefaultDuplicates, info.Config.Duplicates)

	// Update in place.
	s, err = events.EnsureStream(ctx, env.js, events.StreamConfig{MaxAge: time.Hour, MaxBytes: 1 << 20})
	require.NoError(t, err)
	info, err = s.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, time.Hour, info.Config.MaxAge)
	assert.Equal(t, int64(1<<20), info.Config.MaxBytes)

	_, err = events.EnsureStream(ctx, env.js, events.StreamConfig{Subjects: events.Subjects{Prefix: "a b"}})
	require.ErrorIs(t, err, events.ErrInvalidPrefix)
}

// TestStreamDeduplicatesRetries: what makes the publisher's retries safe.
func TestStreamDeduplicatesRetries(t *testing.T) {
	env := newNATSEnv(t)
	ctx := t.Context()
	a := events.NewAttempt(gate.AttemptRecord{Time: time.Now(), IP: "::1", Outcome: gate.OutcomeSuccess}, "")
	data, err := a.Encode()
	require.NoError(t, err)
	for range 3 {
		_, err := env.js.PublishMsg(ctx, &nats.Msg{Subject: a.NATSSubject(events.Subjects{}), Data: data,
			Header: nats.Header{jetstream.MsgIDHeader: []string{a.ID}}})
		require.NoError(t, err)
	}
	assert.Len(t, streamMsgs(t, env.js, "", 1), 1)
}

func TestConsumeBlocksDurable(t *testing.T) {
	env := newNATSEnv(t)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{})
	require.NoError(t, err)
	stop := runPublisher(t, p)
	p.EmitAttempt(attemptRecord(1)) // not a block: filtered out
	p.EmitTransition(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindUsername, Subject: "bob", Blocked: true, Permanent: true, Reason: gate.ReasonAdmin})
	require.Eventually(t, func() bool { return p.Stats().Published == 2 }, 10*time.Second, time.Millisecond)
	// A malformed message on a block subject is terminated, not delivered.
	_, err = env.js.Publish(t.Context(), "defender.block.ip", []byte("garbage"))
	require.NoError(t, err)

	var mu sync.Mutex
	var got []events.Block
	failOnce := true
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err = events.ConsumeBlocks(ctx, env.js, events.Subjects{}, "audit", func(_ context.Context, b events.Block) error {
		mu.Lock()
		defer mu.Unlock()
		if failOnce { // an error has the event delivered again
			failOnce = false
			return assert.AnError
		}
		got = append(got, b)
		return nil
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 }, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	assert.Equal(t, "bob", got[0].Subject)
	assert.True(t, got[0].Permanent)
	mu.Unlock()

	c, err := env.js.Consumer(t.Context(), events.StreamName, "audit")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := c.Info(t.Context())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}, 10*time.Second, 10*time.Millisecond, "everything acknowledged or terminated")

	_, err = events.ConsumeBlocks(ctx, env.js, events.Subjects{}, "", func(context.Context, events.Block) error { return nil })
	require.ErrorIs(t, err, events.ErrNoDurable)
	require.NoError(t, stop())
}

func TestSubscribeSkipsMalformed(t *testing.T) {
	env := newNATSEnv(t)
	got := make(chan events.Attempt, 4)
	sub, err := events.SubscribeAttempts(t.Context(), env.nc, events.Subjects{}, func(a events.Attempt) { got <- a })
	require.NoError(t, err)
	require.NoError(t, env.nc.Publish("defender.attempt.failure", []byte(`{"v":1}`)))
	a := events.NewAttempt(attemptRecord(7), "")
	data, err := a.Encode()
	require.NoError(t, err)
	require.NoError(t, env.nc.Publish(a.NATSSubject(events.Subjects{}), data))
	select {
	case ev := <-got:
		assert.Equal(t, a.ID, ev.ID, "the malformed message was skipped")
	case <-time.After(10 * time.Second):
		t.Fatal("no attempt delivered")
	}
	require.NoError(t, sub.Unsubscribe())
}

func TestStartEmbeddedAndConnect(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not starting nats-server")
	}
	srv, err := events.StartEmbedded(events.EmbeddedOptions{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	require.True(t, srv.JetStreamEnabled())

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// A cluster's list of URLs, one of them dead.
	nc, js, err := events.Connect(ctx, "nats://127.0.0.1:1, "+srv.ClientURL(), "test")
	require.NoError(t, err)
	defer nc.Close()
	_, err = events.EnsureStream(ctx, js, events.StreamConfig{})
	require.NoError(t, err)

	short, cancel2 := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel2()
	_, _, err = events.Connect(short, "nats://127.0.0.1:1", "test")
	require.ErrorIs(t, err, events.ErrNotReady)
}
