package record

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Recorder's Prometheus metrics.
type metrics struct {
	pending       prometheus.Gauge
	ackPending    prometheus.Gauge
	batchSize     prometheus.Histogram
	insertSeconds *prometheus.HistogramVec
	rows          *prometheus.CounterVec
	deadLetters   prometheus.Counter
	retries       *prometheus.CounterVec
}

// newMetrics creates the metrics and registers them with reg (none when
// reg is nil).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "defender_recorder_consumer_pending",
			Help: "Events in the stream not yet delivered to the recorder consumer (its lag), polled.",
		}),
		ackPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "defender_recorder_consumer_ack_pending",
			Help: "Events delivered to recorders and not yet acknowledged, polled.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "defender_recorder_batch_size",
			Help:    "Events per batch handed to the writer (one or more fetches).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10), // 1 .. 262144
		}),
		insertSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "defender_recorder_insert_seconds",
			Help:    "Duration of successful batch inserts into ClickHouse.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12), // 1 ms .. 24 s
		}, []string{"table"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "defender_recorder_rows_written_total",
			Help: "Rows written into ClickHouse (redeliveries included).",
		}, []string{"table"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "defender_recorder_dead_letters_total",
			Help: "Events that could not be stored, sent to the dead-letter subject.",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "defender_recorder_retries_total",
			Help: "Failed writes that were retried, by what was written (attempts, blocks, dlq).",
		}, []string{"what"}),
	}
	for _, what := range []string{"attempts", "blocks"} {
		m.rows.WithLabelValues(what)
		m.insertSeconds.WithLabelValues(what)
		m.retries.WithLabelValues(what)
	}
	m.retries.WithLabelValues("dlq")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.pending, m.ackPending, m.batchSize, m.insertSeconds, m.rows, m.deadLetters, m.retries} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("recorder metrics: %w (one Recorder per registry)", err)
			}
			return nil, fmt.Errorf("recorder metrics: %w", err)
		}
	}
	return m, nil
}
