package notify_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify"
	"github.com/defender-go/defender/internal/notify/mail"
	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// TestOnlyGatesPublishBlocks runs the README's NATS permissions: the
// gate's blocks mail their user; a block forged by another service's user
// (the recorder's, which may use JetStream) is refused by the server and
// mails nobody.
func TestOnlyGatesPublishBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a NATS server")
	}
	perms := func(pub, sub []string) *server.Permissions {
		return &server.Permissions{Publish: &server.SubjectPermission{Allow: pub}, Subscribe: &server.SubjectPermission{Allow: sub}}
	}
	// As in the README.
	users := []*server.User{
		{Username: "gate", Password: "gate-pass", Permissions: perms(
			[]string{"defender.>", "$JS.API.STREAM.INFO.DEFENDER", "$JS.API.STREAM.CREATE.DEFENDER", "$JS.API.STREAM.UPDATE.DEFENDER"},
			[]string{"_INBOX.>"})},
		{Username: "notifier", Password: "notifier-pass", Permissions: perms(
			[]string{"$JS.>", "$KV.>", "defender.unblock.username"}, []string{"_INBOX.>", "$JS.>"})},
		{Username: "recorder", Password: "recorder-pass", Permissions: perms([]string{"$JS.>"}, []string{"_INBOX.>"})},
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: testenv.FreePort(t), JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true, Users: users})
	require.NoError(t, err)
	go srv.Start()
	require.True(t, srv.ReadyForConnections(30*time.Second))
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connect := func(user, pass string) jetstream.JetStream {
		nc, js, err := events.Connect(ctx, srv.ClientURL(), user, nats.UserInfo(user, pass))
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		return js
	}
	gateJS := connect("gate", "gate-pass")
	_, err = events.EnsureStream(ctx, gateJS, events.StreamConfig{})
	require.NoError(t, err, "the gate creates the stream")

	smtp := testenv.SMTP(t, testenv.SMTPOptions{})
	site := newLookupSite(t)
	site.add("alice", "alice@example.com")
	site.add("bob", "bob@example.com")
	log := slog.New(slog.DiscardHandler)
	sender, err := mail.NewSender(mail.Options{Host: smtp.Host, Port: smtp.Port, TLS: "none", From: "Defender <no-reply@example.com>", Log: log})
	require.NoError(t, err)
	lookup, err := mail.NewLookup(mail.LookupOptions{URL: site.URL + "/email?username={username}"})
	require.NoError(t, err)
	notifierJS := connect("notifier", "notifier-pass")
	n, err := notify.New(ctx, notifierJS, notify.Options{Mail: sender, Lookup: lookup, AckWait: 3 * time.Second, Log: log})
	require.NoError(t, err, "the notifier makes its consumer and buckets")
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(rctx, time.Second) }()
	t.Cleanup(func() { stop(); <-done })

	publish := func(js jetstream.JetStream, user string) error {
		b := events.NewBlock(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindUsername, Subject: user, Blocked: true,
			Until: time.Now().Add(5 * time.Minute), Failures: 4, Reason: gate.ReasonAuto}, "test")
		data, err := b.Encode()
		require.NoError(t, err)
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = js.Publish(pctx, b.NATSSubject(events.Subjects{}), data)
		return err
	}
	assert.Error(t, publish(connect("recorder", "recorder-pass"), "bob"), "the server refuses a block from another service")
	require.NoError(t, publish(gateJS, "alice"))
	testenv.ConsumerDone(t, notifierJS, events.StreamName, notify.DefaultDurable, 30*time.Second)
	var to []string
	for _, m := range smtp.Messages() {
		to = append(to, m.To...)
	}
	assert.Equal(t, []string{"alice@example.com"}, to, "only the gate's block mails")
}
