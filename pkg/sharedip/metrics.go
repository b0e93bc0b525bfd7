package sharedip

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the lists' Prometheus collectors, labelled by list.
type metrics struct {
	prefixes    *prometheus.GaugeVec
	refreshes   *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
}

func newMetrics(lists []string) *metrics {
	m := &metrics{
		prefixes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "defender", Subsystem: "shared", Name: "prefixes",
			Help: "Distinct prefixes of each shared egress list in use (0: not loaded yet).",
		}, []string{"list"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "defender", Subsystem: "shared", Name: "refreshes_total",
			Help: "Loads of each shared egress list after the start, by result: ok (loaded, or unchanged), " +
				"failed (unreadable, network, HTTP status) or refused (too wide, too many bad lines, empty where it was not, too large); " +
				"after failed and refused the last good list stays in use.",
		}, []string{"list", "result"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "defender", Subsystem: "shared", Name: "last_success_timestamp_seconds",
			Help: "When each shared egress list was last loaded or found unchanged, in Unix seconds (0: never): alert on its age.",
		}, []string{"list"}),
	}
	// Every series exists from the start, so that an alert on failures
	// sees the first one as an increase.
	for _, l := range lists {
		m.prefixes.WithLabelValues(l)
		m.lastSuccess.WithLabelValues(l)
		for _, r := range []string{resultOK, resultFailed, resultRefused} {
			m.refreshes.WithLabelValues(l, r)
		}
	}
	return m
}

func (m *metrics) loaded(list string, prefixes int, at time.Time) {
	m.prefixes.WithLabelValues(list).Set(float64(prefixes))
	m.confirmed(list, at)
}

func (m *metrics) confirmed(list string, at time.Time) {
	m.lastSuccess.WithLabelValues(list).Set(float64(at.UnixNano()) / 1e9)
}

func (m *metrics) refreshed(list, result string) {
	m.refreshes.WithLabelValues(list, result).Inc()
}

// Collectors returns the lists' Prometheus collectors, for the caller to
// register: defender_shared_prefixes, defender_shared_refreshes_total and
// defender_shared_last_success_timestamp_seconds, each labelled by list.
func (s *Sets) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.metrics.prefixes, s.metrics.refreshes, s.metrics.lastSuccess}
}
