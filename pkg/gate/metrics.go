package gate

import "github.com/prometheus/client_golang/prometheus"

// metrics are the gate's Prometheus collectors. Children used on the hot
// path are resolved once, so recording costs an atomic add.
type metrics struct {
	attempts      map[Outcome]prometheus.Counter
	storeErrors   *prometheus.CounterVec
	degraded      map[FailMode]prometheus.Counter
	transitions   *prometheus.CounterVec
	storeDuration *prometheus.HistogramVec
	// per store operation, resolved once
	opDuration [numStoreOps]prometheus.Observer
	opErrors   [numStoreOps]prometheus.Counter
	settleSync prometheus.Counter
	settleLost prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "defender", Subsystem: "gate", Name: "attempts_total",
		Help: "Login attempts decided, by outcome (success, failure, blocked).",
	}, []string{"outcome"})
	degraded := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "defender", Subsystem: "gate", Name: "degraded_total",
		Help: "Decisions taken by DEFENDER_FAIL_MODE because the store did not answer in time.",
	}, []string{"mode"})
	m := &metrics{
		attempts: map[Outcome]prometheus.Counter{},
		degraded: map[FailMode]prometheus.Counter{},
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate", Name: "store_errors_total",
			Help: "Store calls that failed or timed out, by operation.",
		}, []string{"op"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate", Name: "transitions_total",
			Help: "Blocks and unblocks made, by kind and direction.",
		}, []string{"kind", "direction"}),
		storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "defender", Subsystem: "gate", Name: "store_duration_seconds",
			Help:    "Duration of store calls, by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}, []string{"op"}),
		settleSync: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate", Name: "settle_queue_full_total",
			Help: "Outcomes settled on the request's goroutine because the background queue was full.",
		}),
		settleLost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate", Name: "settle_failed_total",
			Help: "Outcomes that could not be written to the store after retries (their charge expires into a failure).",
		}),
	}
	for _, o := range []Outcome{OutcomeSuccess, OutcomeFailure, OutcomeBlocked} {
		m.attempts[o] = attempts.WithLabelValues(string(o))
	}
	for op, name := range storeOpNames {
		m.opDuration[op] = m.storeDuration.WithLabelValues(name)
		m.opErrors[op] = m.storeErrors.WithLabelValues(name)
	}
	for _, f := range []FailMode{FailOpen, FailClosed} {
		m.degraded[f] = degraded.WithLabelValues(string(f))
	}
	if reg != nil {
		reg.MustRegister(attempts, degraded, m.storeErrors, m.transitions, m.storeDuration, m.settleSync, m.settleLost)
	}
	return m
}
