package notify_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify"
	"github.com/defender-go/defender/internal/testenv"
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
