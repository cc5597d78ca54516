package ingest

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Batch outcomes, the values of parley_audit_batches_total's outcome label.
const (
	outcomeOK        = "ok"
	outcomeError     = "error"
	outcomeAbandoned = "abandoned"
)

// Dead-letter reasons, the values of the Parley-Dead-Letter-Reason header and of
// parley_audit_dead_letters_total's reason label.
const (
	// ReasonDecode means the payload is not a parley.audit.v1.ConversationEvent.
	ReasonDecode = "decode"
	// ReasonInvalid means the event decodes but can never be stored (store.PrepareRow refuses it).
	ReasonInvalid = "invalid"
	// ReasonMaxDeliver means PostgreSQL rejected the row on the consumer's last delivery,
	// or the service stopped while holding it on that delivery; JetStream would never
	// deliver it again.
	ReasonMaxDeliver = "max_deliver"
)

type metrics struct {
	rows            prometheus.Counter
	batches         *prometheus.CounterVec
	batchRows       prometheus.Histogram
	batchBytes      prometheus.Histogram
	delay           prometheus.Histogram
	deadLetters     *prometheus.CounterVec
	deadLetterFails prometheus.Counter
	lag             prometheus.Gauge
	fetchFailures   prometheus.Counter
	pauses          prometheus.Counter

	sealedOpened     prometheus.Counter
	sealedUnreadable *prometheus.CounterVec
	scrubTexts       prometheus.Histogram
	scrubErrors      prometheus.Counter
	purges           *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_audit_rows_written_total",
			Help: "Conversation rows inserted into PostgreSQL (redelivered duplicates not counted).",
		}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_audit_batches_total",
			Help: "Insert attempts by outcome: ok, error (retried or isolated), abandoned (at stop).",
		}, []string{"outcome"}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_audit_batch_rows",
			Help:    "Events per committed batch.",
			Buckets: []float64{1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000},
		}),
		batchBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_audit_batch_bytes",
			Help:    "Message bytes per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10), // 1 KiB to 256 MiB
		}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_audit_ingest_delay_seconds",
			Help: "Time from the router stamping a conversation to its row being committed " +
				"(includes any clock difference between the hosts).",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400},
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_audit_dead_letters_total",
			Help: "Events moved to the dead-letter subject, by reason.",
		}, []string{"reason"}),
		deadLetterFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_audit_dead_letter_failures_total",
			Help: "Poison events that could not be published to the dead-letter subject.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_audit_ingest_lag",
			Help: "Events in the stream not yet written: the consumer's pending plus ack-pending messages.",
		}),
		fetchFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_audit_fetch_failures_total",
			Help: "Fetches from the audit stream's consumer that failed (NATS unreachable, the consumer's leader moving); each is retried after a backoff.",
		}),
		pauses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_audit_fetch_pauses_total",
			Help: "Times the writer found the stream empty and gathered events for AUDIT_BATCH_MAX_WAIT before its next fetch.",
		}),
		sealedOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_audit_sealed_opened_total",
			Help: "Sealed audit copies opened with the audit service's key.",
		}),
		sealedUnreadable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_audit_sealed_unreadable_total",
			Help: "Sealed audit copies stored with their texts redacted, by reason: no_key, open (wrong key or altered), parse, scrub_refused.",
		}, []string{"reason"}),
		scrubTexts: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_audit_scrub_texts",
			Help:    "Texts per Scrub call made for sealed audit copies (many events' texts share a call under load).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096},
		}),
		scrubErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_audit_scrub_errors_total",
			Help: "Scrub calls for sealed audit copies that failed (the batch is held and retried, or a refused copy redacted).",
		}),
		purges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_audit_stream_purges_total",
			Help: "Sweeps purging the stored events (below the consumer's ack floor) from the audit stream, by outcome: ok, failed (tried again at the next sweep).",
		}, []string{"outcome"}),
	}
	for _, r := range []string{UnreadableNoKey, UnreadableOpen, UnreadableParse, UnreadableRefused} {
		m.sealedUnreadable.WithLabelValues(r)
	}
	for _, o := range []string{sweepOK, sweepFailed} {
		m.purges.WithLabelValues(o)
	}
	for _, o := range []string{outcomeOK, outcomeError, outcomeAbandoned} {
		m.batches.WithLabelValues(o)
	}
	for _, r := range []string{ReasonDecode, ReasonInvalid, ReasonMaxDeliver} {
		m.deadLetters.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.rows, m.batches, m.batchRows, m.batchBytes, m.delay, m.deadLetters, m.deadLetterFails, m.lag, m.fetchFailures, m.pauses,
		m.sealedOpened, m.sealedUnreadable, m.scrubTexts, m.scrubErrors, m.purges} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register ingest metrics: %w", err)
		}
	}
	return m, nil
}
