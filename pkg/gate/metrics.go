package gate

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// metrics are the gate's Prometheus collectors. Children used on the hot
// path are resolved once, so recording costs an atomic add.
type metrics struct {
	attempts      map[Outcome]prometheus.Counter
	storeErrors   *prometheus.CounterVec
	degraded      map[FailMode]prometheus.Counter
	transitions   *prometheus.CounterVec
	storeDuration *prometheus.HistogramVec
	storeWait     *prometheus.HistogramVec
	storeRejected *prometheus.CounterVec
	// per store operation, resolved once
	opDuration    [numStoreOps]prometheus.Observer
	opWait        [numStoreOps]prometheus.Observer
	opErrors      [numStoreOps]prometheus.Counter
	rejected      [numStoreOps]prometheus.Counter
	settleSync    prometheus.Counter
	backlog       prometheus.Gauge
	replayed      prometheus.Counter
	replayDropped *prometheus.CounterVec
	observed      prometheus.Counter     // refusals observe mode let through
	shared        *prometheus.CounterVec // attempts from shared addresses, by list
}

func newMetrics(reg prometheus.Registerer, g *Gate) *metrics {
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "defender", Subsystem: "gate", Name: "attempts_total",
		Help: "Login attempts decided, by outcome (success, failure, blocked).",
	}, []string{"outcome"})
	degraded := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "defender", Subsystem: "gate", Name: "degraded_total",
		Help: "Decisions taken without the store, by DEFENDER_FAIL_MODE: because the store did not answer in time (local limiter, or 503 when closed), or because this process's local limiter holds failures the store has not had yet.",
	}, []string{"mode"})
	timeout := g.cfg.StoreTimeout.Seconds()
	m := &metrics{
		attempts: map[Outcome]prometheus.Counter{},
		degraded: map[FailMode]prometheus.Counter{},
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate", Name: "store_errors_total",
			Help: "Store calls that failed or timed out, by operation.",
		}, []string{"op"}),
		storeRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate", Name: "store_rejected_total",
			Help: "Store calls not sent, by operation, because the calls in flight (DEFENDER_REDIS_MAX_IN_FLIGHT) would not let them start before their deadline: decided by the fail mode at once.",
		}, []string{"op"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate", Name: "transitions_total",
			Help: "Blocks and unblocks made, by kind, direction, and whether the local limiter made them.",
		}, []string{"kind", "direction", "local"}),
		storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "defender", Subsystem: "gate", Name: "store_duration_seconds",
			Help:    "Duration of store calls, by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}, []string{"op"}),
		storeWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "defender", Subsystem: "gate", Name: "store_wait_seconds",
			Help: "How long a login waited for the store, by operation: its turn among the calls in flight, then the call, " +
				"until the answer or the deadline (DEFENDER_REDIS_TIMEOUT, also a bucket bound, with 1.25, 1.5 and 2 times it).",
			Buckets: waitBuckets(timeout),
		}, []string{"op"}),
		settleSync: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate", Name: "settle_queue_full_total",
			Help: "Outcomes settled on the request's goroutine because the background queue was full.",
		}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "defender", Subsystem: "gate", Name: "backlog_outcomes",
			Help: "Outcomes the store did not take in time, waiting to be replayed to it.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate", Name: "replays_total",
			Help: "Outcomes of the backlog written to the store.",
		}),
		replayDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "gate", Name: "replays_dropped_total",
			Help: "Outcomes of the backlog never written to the store, by reason: full (the backlog's bound), stale (older than the store keeps them), recalls_full (the bounds on the recalls, each kind apart: of Records the fail mode refused, and of Begins whose answer came late), closed (after Close).",
		}, []string{"reason"}),
	}
	for _, o := range []Outcome{OutcomeSuccess, OutcomeFailure, OutcomeBlocked} {
		m.attempts[o] = attempts.WithLabelValues(string(o))
	}
	for op, name := range storeOpNames {
		m.opDuration[op] = m.storeDuration.WithLabelValues(name)
		m.opWait[op] = m.storeWait.WithLabelValues(name)
		m.opErrors[op] = m.storeErrors.WithLabelValues(name)
		m.rejected[op] = m.storeRejected.WithLabelValues(name)
	}
	for _, f := range []FailMode{FailLocal, FailClosed} {
		m.degraded[f] = degraded.WithLabelValues(string(f))
	}
	m.observed = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "defender", Subsystem: "gate", Name: "observed_refusals_total",
		Help: "Decisions that enforce mode would have refused, let through by observe mode (DEFENDER_MODE=observe).",
	})
	m.shared = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "defender", Subsystem: "gate", Name: "shared_attempts_total",
		Help: "Attempts from addresses on a shared egress list, by list: counted by (IP, username) pair, never blocked whole; their spraying is reported as transitions of kind spray_shared.",
	}, []string{"list"})
	if reg == nil {
		return m
	}
	reg.MustRegister(attempts, degraded, m.storeErrors, m.storeRejected, m.transitions, m.storeDuration, m.storeWait,
		m.settleSync, m.backlog, m.replayed, m.replayDropped, m.observed, m.shared)
	if g.adm != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "defender", Subsystem: "gate", Name: "store_in_flight",
			Help: "Store calls that logins wait for now (at most DEFENDER_REDIS_MAX_IN_FLIGHT).",
		}, func() float64 { return float64(g.adm.inFlight()) }))
	}
	if mem, ok := g.store.(*MemoryStore); ok {
		reg.MustRegister(newMemoryCollector(mem, "store"))
	}
	if g.local != nil {
		reg.MustRegister(newMemoryCollector(g.local, "local"))
	}
	return m
}

// waitBuckets are the store wait's histogram bounds: the usual ones up to
// the deadline, the deadline itself, and a few past it.
func waitBuckets(timeout float64) []float64 {
	var b []float64
	for _, v := range []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1} {
		if v < timeout {
			b = append(b, v)
		}
	}
	return append(b, timeout, 1.25*timeout, 1.5*timeout, 2*timeout, 4*timeout)
}

// memoryCollector exports a MemoryStore's counters: how much it holds and
// what it had to evict under a flood of new subjects.
type memoryCollector struct {
	mem                                                        *MemoryStore
	entries, bytes, evictions, evictedBlocks, expired, refused *prometheus.Desc
}

// newMemoryCollector describes mem in the role it plays: "store" (the
// gate's store) or "local" (the local limiter beside a Redis store).
func newMemoryCollector(mem *MemoryStore, role string) *memoryCollector {
	labels := prometheus.Labels{"role": role}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("defender_gate_memory_"+name, help, nil, labels)
	}
	return &memoryCollector{
		mem:           mem,
		entries:       desc("entries", "Subjects the in-memory store tracks (DEFENDER_MEMORY_MAX_ENTRIES)."),
		bytes:         desc("bytes", "Memory the in-memory store's subjects take, as it counts them (DEFENDER_MEMORY_MAX_BYTES)."),
		evictions:     desc("evictions_total", "Live subjects dropped to make room for new ones."),
		evictedBlocks: desc("evicted_blocks_total", "Blocked subjects dropped to make room: the shard held nothing else."),
		expired:       desc("expired_total", "Subjects dropped because everything in them had expired."),
		refused:       desc("refused_total", "Attempts the local limiter refused for want of room: it keeps what only it knows (failures its store has not had) rather than evict it."),
	}
}

func (c *memoryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.entries, c.bytes, c.evictions, c.evictedBlocks, c.expired, c.refused} {
		ch <- d
	}
}

func (c *memoryCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.mem.stats()
	ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(st.Entries))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(c.evictions, prometheus.CounterValue, float64(st.Evictions))
	ch <- prometheus.MustNewConstMetric(c.evictedBlocks, prometheus.CounterValue, float64(st.EvictedBlocks))
	ch <- prometheus.MustNewConstMetric(c.expired, prometheus.CounterValue, float64(st.Expired))
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.Refused))
}

// logLimits keep repeated log lines to one per interval: under an attack
// or an outage the same line would come thousands of times a second.
// Block lines, one per subject, come in bursts of blockLogBurst, then one
// a second: a spray over many names blocks each. Metrics carry the
// counts (defender_gate_degraded_total, defender_gate_transitions_total,
// defender_gate_replays_dropped_total).
type logLimits struct {
	storeLate, backlogFull rate.Sometimes
	blocks                 *rate.Limiter
}

// logInterval is the least time between two of the same repeated lines.
const (
	logInterval   = 10 * time.Second
	blockLogBurst = 20
)

func (l *logLimits) init() {
	l.storeLate.Interval = logInterval
	l.backlogFull.Interval = logInterval
	l.blocks = rate.NewLimiter(1, blockLogBurst)
}
