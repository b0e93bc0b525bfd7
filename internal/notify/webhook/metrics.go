package webhook

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Sender's Prometheus metrics, each labelled by endpoint:
// the URL's host, never its path (a Slack webhook's path is its secret).
type metrics struct {
	sent         *prometheus.CounterVec
	failed       *prometheus.CounterVec
	retried      *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	// deadLetterWriteFailed counts the batches given up on whose dead
	// letter could not be kept: alerts that reached nobody and left no
	// trace but a log line.
	deadLetterWriteFailed *prometheus.CounterVec
	blocks                *prometheus.CounterVec
}

// newMetrics creates the metrics with a series for each of hosts and
// registers them with reg (none when reg is nil).
func newMetrics(reg prometheus.Registerer, hosts []string) (*metrics, error) {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender_notifier", Name: name, Help: help,
		}, []string{"endpoint"})
	}
	m := &metrics{
		sent:         counter("webhook_sent_total", "Webhook calls the endpoint accepted (a 2xx answer)."),
		failed:       counter("webhook_failed_total", "Webhook calls that failed: each failed try, retried or not."),
		retried:      counter("webhook_retried_total", "Failed webhook calls that were tried again."),
		deadLettered: counter("webhook_dead_lettered_total", "Webhook batches given up on and handed to the dead letter."),
		deadLetterWriteFailed: counter("webhook_dead_letter_write_failed_total",
			"Webhook batches given up on whose dead letter could not be written: lost but for the error log."),
		blocks: counter("webhook_blocks_total", "Block events delivered to the endpoint."),
	}
	all := []*prometheus.CounterVec{m.sent, m.failed, m.retried, m.deadLettered, m.deadLetterWriteFailed, m.blocks}
	for _, c := range all {
		for _, h := range hosts {
			c.WithLabelValues(h) // a series at 0 from the start, so that rate() sees the first event
		}
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("webhook metrics: %w (one Sender per registry)", err)
			}
			return nil, fmt.Errorf("webhook metrics: %w", err)
		}
	}
	return m, nil
}
