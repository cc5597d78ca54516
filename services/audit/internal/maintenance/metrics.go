package maintenance

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Run outcomes, the values of parley_audit_maintenance_runs_total's outcome label.
const (
	outcomeOK      = "ok"
	outcomeError   = "error"
	outcomeSkipped = "skipped"
)

type metrics struct {
	runs         *prometheus.CounterVec
	created      prometheus.Counter
	dropped      prometheus.Counter
	indexed      prometheus.Counter
	usageDeleted prometheus.Counter
	lastSuccess  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_audit_maintenance_runs_total",
			Help: "Partition maintenance runs by outcome: ok, error, skipped (another replica was running it).",
		}, []string{"outcome"}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_audit_partitions_created_total",
			Help: "Day partitions created ahead of time by the maintenance job.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_audit_partitions_dropped_total",
			Help: "Day partitions dropped after AUDIT_RETENTION.",
		}),
		indexed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_audit_search_indexes_built_total",
			Help: "Search indexes built on day partitions.",
		}),
		usageDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_audit_usage_rows_deleted_total",
			Help: "Usage roll-up rows deleted after AUDIT_USAGE_RETENTION.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_audit_maintenance_last_success_timestamp_seconds",
			Help: "When a maintenance run last succeeded (Unix time).",
		}),
	}
	for _, o := range []string{outcomeOK, outcomeError, outcomeSkipped} {
		m.runs.WithLabelValues(o)
	}
	for _, c := range []prometheus.Collector{m.runs, m.created, m.dropped, m.indexed, m.usageDeleted, m.lastSuccess} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register maintenance metrics: %w", err)
		}
	}
	return m, nil
}
