package notify_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify"
	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
)

// TestCapSpentOnlyBySentMails: with a cap of one mail an hour, a send
// that fails while SMTP is down takes none of it: when SMTP returns, the
// retry sends the hour's one mail.
func TestCapSpentOnlyBySentMails(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newRig(t, func(o *notify.Options) { o.MailsPerHour = 1; o.Registerer = reg })
	r.lookup.add("zoe", "zoe@example.com")
	r.smtp.Stop()
	r.publishBlock(t, nil, "zoe")
	r.failedSend(t, reg)
	r.smtp.Start()
	r.settled(t)
	assert.Len(t, r.mailsTo("zoe@example.com"), 1, "the hour's one mail goes out once SMTP is back")
	assert.Zero(t, testenv.Metric(t, reg, "defender_notifier_mails_total", "result", "rate_limited_global"))
}

// TestWebhookWhileSMTPDown: the admins hear of a username block while its
// mail cannot go; when SMTP returns, the redelivered event sends the
// mail, and calls no webhook again.
func TestWebhookWhileSMTPDown(t *testing.T) {
	hook := newSlowHook(t, 0)
	reg := prometheus.NewRegistry()
	r := newRig(t, func(o *notify.Options) {
		o.Registerer = reg
		o.Hooks = hooksTo(t, hook.URL, 50*time.Millisecond)
	})
	r.lookup.add("yan", "yan@example.com")
	r.smtp.Stop()
	b := r.publishBlock(t, nil, "yan")
	require.Eventually(t, func() bool { return hook.delivered(b.ID) == 1 }, 3*time.Second, 20*time.Millisecond,
		"the webhook hears of the block while SMTP is down")
	r.failedSend(t, reg)
	assert.Empty(t, r.smtp.Messages())
	r.smtp.Start()
	r.settled(t)
	assert.Len(t, r.mailsTo("yan@example.com"), 1, "the mail goes once SMTP is back")
	assert.Equal(t, 1, hook.delivered(b.ID), "one webhook delivery for the event, whatever its mail's retries")
}

// failedSend waits until the notifier has failed to send a mail (SMTP
// down): the event is left for a retry, 5 s later.
func (r *rig) failedSend(t *testing.T, reg prometheus.Gatherer) {
	t.Helper()
	require.Eventually(t, func() bool {
		return testenv.Metric(t, reg, "defender_notifier_mails_total", "result", "failed") >= 1
	}, 10*time.Second, 20*time.Millisecond, "a send fails while SMTP is down")
}

// TestNotifierGoesOnAfterSilence: NATS sends the notifier nothing for
// longer than two heartbeats of its pull (its answers held back on the
// way, as on a paused link): the notifier pulls again, and handles the
// blocks published once the link is back. Before, the missing heartbeat
// ended Run with an error, and no block was mailed again until a restart.
func TestNotifierGoesOnAfterSilence(t *testing.T) {
	srv := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, js, err := events.Connect(ctx, srv.URL, "notify-test", nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	proxy := testenv.Late(t, strings.TrimPrefix(srv.URL, "nats://"))
	_, held, err := events.Connect(ctx, "nats://"+proxy.Addr, "notify-held", nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	r := newRigOn(t, rigNATS{gate: js, notifier: held, test: js}, func(o *notify.Options) { o.Registerer = reg })
	r.lookup.add("sam", "sam@example.com")
	r.publishBlock(t, nil, "sam")
	r.settled(t)
	require.Len(t, r.mailsTo("sam@example.com"), 1)

	proxy.SetDelay(7 * time.Second) // past two heartbeats of the pull (pullExpiry 5 s: 2.5 s each)
	require.Eventually(t, func() bool {
		return testenv.Metric(t, reg, "defender_notifier_missed_heartbeats_total") >= 1
	}, 20*time.Second, 100*time.Millisecond, "the notifier missed the pull's heartbeats")
	proxy.SetDelay(0)

	r.lookup.add("tess", "tess@example.com")
	r.publishBlock(t, nil, "tess")
	r.settled(t)
	assert.Len(t, r.mailsTo("tess@example.com"), 1, "a block published after the silence is mailed")
}
