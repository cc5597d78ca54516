package store

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Layer is where a hit was found.
type Layer int

// The layers of the cache.
const (
	// LayerL1 is the replica's memory.
	LayerL1 Layer = iota + 1
	// LayerL2 is the shared bucket.
	LayerL2
)

// Metric label values of parley_cache_hits_total{layer} and parley_cache_purged_total.
const (
	layerL1   = "l1"
	layerL2   = "l2"
	layerWait = "wait"
)

type metrics struct {
	hits                        *prometheus.CounterVec
	misses, puts                prometheus.Counter
	bytesWritten, bytesServed   prometheus.Counter
	evictions                   *prometheus.CounterVec
	leases, waits, purged       *prometheus.CounterVec
	purges                      prometheus.Counter
	errors                      *prometheus.CounterVec
	l1Bytes, l1Entries, waiting prometheus.GaugeFunc
	roundTrips                  *prometheus.CounterVec

	// The hit counters, resolved once: the hit path does no label lookup.
	hitL1, hitL2, hitWait prometheus.Counter
	// The round-trip counters, resolved once.
	rtGet, rtCreate, rtPut, rtPurge, rtWatch prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Store) (*metrics, error) {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_cache_hits_total",
			Help: "Get, Lookup and Wait calls answered with an entry, by layer: l1 (memory), l2 (bucket), wait (stored by a lease holder while waiting).",
		}, []string{"layer"}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_cache_misses_total", Help: "Get and Lookup calls that found no live entry.",
		}),
		puts: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_cache_puts_total", Help: "Entries stored."}),
		bytesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_cache_bytes_written_total", Help: "Value bytes stored.",
		}),
		bytesServed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_cache_bytes_served_total", Help: "Value bytes returned by hits.",
		}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_cache_l1_evictions_total",
			Help: "Entries the in-process cache dropped on its own, by cause: size (over CACHE_L1_MAX_BYTES), expired.",
		}, []string{"cause"}),
		leases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_cache_leases_total",
			Help: "Lookups that found no entry, by result: granted (the caller computes it), busy (another caller does), none (no lease could be taken).",
		}, []string{"result"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_cache_waits_total",
			Help: "Waits for a lease holder's value, by result: value, ended (lease released or expired without a value), timeout, error.",
		}, []string{"result"}),
		purges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_cache_purges_total", Help: "Purge calls served by this replica.",
		}),
		purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_cache_purged_total",
			Help: "Entries dropped by purges, by layer: l2 (bucket messages, by purges served here), l1 (this replica's memory, by any replica's purge).",
		}, []string{"layer"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_cache_errors_total", Help: "Cache operations that failed in the backend (not bad input), by op.",
		}, []string{"op"}),
		l1Bytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_cache_l1_bytes", Help: "Bytes held by the in-process cache, as weighed against CACHE_L1_MAX_BYTES.",
		}, func() float64 { return s.l1.weightedSize() }),
		l1Entries: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_cache_l1_entries", Help: "Entries held by the in-process cache (estimate).",
		}, func() float64 { return s.l1.entries() }),
		waiting: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_cache_waiting_keys", Help: "Keys this replica is watching for waiting callers.",
		}, func() float64 { return float64(s.waits.len()) }),
		roundTrips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_cache_bucket_round_trips_total",
			Help: "Requests to the JetStream bucket made while serving calls, by op: get, create (a lease), put, purge (a lease), watch; each is a crossing to NATS (docs/architecture.md, Crossing budget).",
		}, []string{"op"}),
	}
	for _, c := range []prometheus.Collector{
		m.hits, m.misses, m.puts, m.bytesWritten, m.bytesServed, m.evictions, m.leases, m.waits,
		m.purges, m.purged, m.errors, m.l1Bytes, m.l1Entries, m.waiting, m.roundTrips,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register cache metrics: %w", err)
		}
	}
	// Pre-create the label values so every series exists before its first event.
	m.hitL1, m.hitL2, m.hitWait = m.hits.WithLabelValues(layerL1), m.hits.WithLabelValues(layerL2), m.hits.WithLabelValues(layerWait)
	m.rtGet, m.rtCreate, m.rtPut = m.roundTrips.WithLabelValues("get"), m.roundTrips.WithLabelValues("create"), m.roundTrips.WithLabelValues("put")
	m.rtPurge, m.rtWatch = m.roundTrips.WithLabelValues("purge"), m.roundTrips.WithLabelValues("watch")
	for _, op := range []string{"get", "put", "lookup", "wait", "release", "purge"} {
		m.errors.WithLabelValues(op)
	}
	for _, c := range []string{"size", "expired"} {
		m.evictions.WithLabelValues(c)
	}
	for _, r := range []string{"granted", "busy", "none"} {
		m.leases.WithLabelValues(r)
	}
	for _, r := range []string{"value", "ended", "timeout", "error"} {
		m.waits.WithLabelValues(r)
	}
	for _, l := range []string{layerL1, layerL2} {
		m.purged.WithLabelValues(l)
	}
	return m, nil
}

func (m *metrics) hit(c prometheus.Counter, v []byte) {
	c.Inc()
	m.bytesServed.Add(float64(len(v)))
}
