package notify_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify"
	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// TestOnlyGatesPublishBlocks runs the README's NATS users and permissions
// (testenv.NATSAsREADME), each part as its own user: the gate's block
// mails its user, reaches the admins' webhook (a failing one ends in a
// dead letter) and its link unlocks, with no permission violation. The
// recorder's user, which reads the same stream, can forge no block and
// touch none of the notifier's buckets: the server refuses a direct
// publish, a stream that republishes onto the block subjects, and every
// change to the stream and the buckets; the victim is mailed nothing.
func TestOnlyGatesPublishBlocks(t *testing.T) {
	ns := testenv.NATSAsREADME(t)
	conns := rigNATS{gate: ns.JetStreamAs("gate"), notifier: ns.JetStreamAs("notifier"), test: ns.JetStreamAs(testenv.Inspector)}
	hook := newSlowHook(t, 0)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	t.Cleanup(down.Close)
	var r *rig
	r = newRigOn(t, conns, func(o *notify.Options) {
		var err error
		o.Hooks, err = webhook.New(webhook.Options{Endpoints: []webhook.Endpoint{{URL: hook.URL}, {URL: down.URL}},
			Secrets: [][]byte{[]byte("0123456789abcdef")}, Interval: 50 * time.Millisecond, Attempts: 1,
			Log:        slog.New(slog.DiscardHandler),
			DeadLetter: func(ctx context.Context, dl webhook.DeadLetter) error { return r.n.DeadLetter(ctx, dl) }})
		require.NoError(t, err)
	})
	r.lookup.add("alice", "alice@example.com")
	r.lookup.add("victim", "victim@example.com")

	// The services at work.
	r.fail(t, "alice", 5)
	r.settled(t)
	got := r.mailsTo("alice@example.com")
	require.Len(t, got, 1, "the gate's block mails its user")
	blocks := r.blockEvents(t, "alice")
	require.Len(t, blocks, 1)
	assert.Equal(t, 1, hook.delivered(blocks[0].ID), "and reaches the webhook")
	dead, err := notify.DeadLetters(context.Background(), r.js)
	require.NoError(t, err)
	assert.Len(t, dead, 1, "the failing webhook's dead letter is kept")
	res, _ := post(t, r.unlock.URL+"/unlock", tokenIn(t, linkOf(got[0])))
	assert.Equal(t, http.StatusOK, res.StatusCode, "the link unlocks")
	require.Eventually(t, func() bool {
		return len(readBlocks(t, r.js, events.Subjects{}.Unblock("username"), "alice")) == 1
	}, 10*time.Second, 20*time.Millisecond, "the unlock page publishes the unblock as the notifier")
	assert.Empty(t, ns.Violations(), "no service steps outside its permissions")

	// The recorder's user, attacking.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := ns.JetStreamAs("recorder")
	nc := rec.Conn()
	forged := events.NewBlock(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindUsername, Subject: "victim", Blocked: true,
		Until: time.Now().Add(5 * time.Minute), Failures: 4, Reason: gate.ReasonAuto}, "forged")
	data, err := forged.Encode()
	require.NoError(t, err)
	for name, attack := range map[string]func(context.Context) error{
		"publish a block": func(ctx context.Context) error {
			_, err := rec.Publish(ctx, forged.NATSSubject(events.Subjects{}), data)
			return err
		},
		"create a stream that republishes onto the block subjects": func(ctx context.Context) error {
			_, err := rec.CreateStream(ctx, jetstream.StreamConfig{Name: "FORGE", Subjects: []string{"$JS.FORGE.>"}, NoAck: true,
				RePublish: &jetstream.RePublish{Source: "$JS.FORGE.>", Destination: "defender.block.>"}})
			return err
		},
		"change the stream": func(ctx context.Context) error {
			_, err := rec.UpdateStream(ctx, events.StreamConfig{MaxAge: time.Minute}.JetStream())
			return err
		},
		"purge the stream":  func(ctx context.Context) error { return purge(ctx, nc, events.StreamName) },
		"delete the stream": func(ctx context.Context) error { return rec.DeleteStream(ctx, events.StreamName) },
		"delete a bucket":   func(ctx context.Context) error { return rec.DeleteKeyValue(ctx, notify.BucketUsers) },
		"purge a bucket":    func(ctx context.Context) error { return purge(ctx, nc, "KV_"+notify.BucketDone) },
		"mark an event done": func(ctx context.Context) error {
			_, err := rec.Publish(ctx, "$KV."+notify.BucketDone+".mail_0123", []byte("1"))
			return err
		},
	} {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		assert.Error(t, attack(actx), "the server refuses the recorder: %s", name)
		cancel()
	}
	// Were the stream there, this would reach the block subjects.
	_ = nc.Publish("$JS.FORGE.username", data)
	_ = nc.Flush()
	assert.NotEmpty(t, ns.Violations(), "the server logged the attempts")
	for _, b := range []string{notify.BucketDone, notify.BucketUsers, notify.BucketHours, notify.BucketLinks, notify.BucketDead} {
		_, err := r.js.KeyValue(ctx, b)
		assert.NoError(t, err, "bucket %s kept", b)
	}
	_, err = r.js.Stream(ctx, "FORGE")
	assert.ErrorIs(t, err, jetstream.ErrStreamNotFound)
	time.Sleep(time.Second) // what a forged block would have taken to arrive
	r.settled(t)
	assert.Empty(t, r.mailsTo("victim@example.com"), "nothing forged reaches the notifier")
	assert.Len(t, r.smtp.Messages(), 1, "alice's mail only")
}

// purge asks the JetStream API to purge stream, and returns its refusal.
func purge(ctx context.Context, nc *nats.Conn, stream string) error {
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+stream, nil)
	if err != nil {
		return err
	}
	var resp struct{ Error *jetstream.APIError }
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return err
	}
	if resp.Error != nil {
		return resp.Error
	}
	return nil
}
