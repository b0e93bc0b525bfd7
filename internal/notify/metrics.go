package notify

import "github.com/prometheus/client_golang/prometheus"

// metrics are the notifier's own; the webhook sender registers its own.
type metrics struct {
	events  *prometheus.CounterVec // by what became of the event
	mails   *prometheus.CounterVec // by result
	unlocks *prometheus.CounterVec // by result
	// heartbeats counts the pulls NATS went silent on (no heartbeat for
	// two intervals), each pulled again.
	heartbeats prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "notifier", Name: "events_total",
			Help: "Block events taken from the stream, by outcome: done (acknowledged), skipped (not a real store block), duplicate (done before), malformed, retried (left for redelivery).",
		}, []string{"outcome"}),
		mails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "notifier", Name: "mails_total",
			Help: "Mails to blocked users, by result: sent, failed (will retry), rejected (given up: the server refused it for good), no_address, rate_limited_user (one per user per DEFENDER_MAIL_EVERY), rate_limited_global (DEFENDER_MAIL_MAX_PER_HOUR reached), not_auto (an admin's or the blacklist's block), ended (the block was over before a mail went).",
		}, []string{"result"}),
		unlocks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "notifier", Name: "unlocks_total",
			Help: "Unlock links used, by result: unlocked, invalid, expired, used (a second time), stale (the lock it was sent for ended or was replaced), not_locked, error.",
		}, []string{"result"}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "notifier", Name: "missed_heartbeats_total",
			Help: "Pulls for the next event on which NATS sent nothing for two heartbeats (a pause, or a pull it lost); each is pulled again.",
		}),
	}
	for _, o := range []string{"done", "skipped", "duplicate", "malformed", "retried"} {
		m.events.WithLabelValues(o)
	}
	for _, r := range []string{"sent", "failed", "rejected", "no_address", "rate_limited_user", "rate_limited_global", "not_auto", "ended"} {
		m.mails.WithLabelValues(r)
	}
	for _, r := range []string{"unlocked", "invalid", "expired", "used", "stale", "not_locked", "error"} {
		m.unlocks.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.events, m.mails, m.unlocks, m.heartbeats)
	}
	return m
}
