package events

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics creates the publisher's metrics and registers them with
// reg (none when reg is nil). Counters read the publisher's own atomics,
// so Emit pays for one counter, not two.
func (p *Publisher) registerMetrics(reg prometheus.Registerer) error {
	p.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "defender_events_publish_seconds",
		Help:    "Time from an event's first publish attempt to its JetStream acknowledgement.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100µs .. 26s
	})
	if reg == nil {
		return nil
	}
	counter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v()) })
	}
	cs := []prometheus.Collector{
		counter("defender_events_queued_total", "Events accepted into the publisher's queue.", p.queued.Load),
		counter("defender_events_published_total", "Events acknowledged by JetStream.", p.published.Load),
		counter("defender_events_dropped_total", "Events dropped: queue full, publisher closed, or invalid.", p.dropped.Load),
		counter("defender_events_publish_errors_total", "Failed publish attempts (each retry counts).", p.errs.Load),
		counter("defender_events_unsent_total", "Events given up at shutdown.", p.unsent.Load),
		counter("defender_events_blocks_dropped_total", "Blocks and unblocks dropped (of defender_events_dropped_total): their reserve and the queue full.", p.droppedTransitions.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "defender_events_reserve_length",
			Help: "Blocks and unblocks waiting in their reserve (4096 at most), apart from the queue.",
		}, func() float64 { return float64(len(p.reserved)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "defender_events_queue_length",
			Help: "Events waiting in the publisher's queue.",
		}, func() float64 { return float64(len(p.queue)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "defender_events_queue_capacity",
			Help: "Capacity of the publisher's queue (DEFENDER_EVENT_BUFFER).",
		}, func() float64 { return float64(cap(p.queue)) }),
		p.latency,
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("events metrics: %w (one Publisher per registry)", err)
			}
			return fmt.Errorf("events metrics: %w", err)
		}
	}
	return nil
}
