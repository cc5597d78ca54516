package app

import (
	"errors"
	"fmt"
	"time"

	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/services/audit/internal/ingest"
	"github.com/parleyhq/parley/services/audit/internal/maintenance"
)

// maxBatchRows bounds AUDIT_BATCH_MAX_ROWS; a transaction of more rows gains nothing.
const maxBatchRows = 100_000

// Config holds the audit service's own settings.
type Config struct {
	// Consumer is the durable JetStream consumer's name; replicas sharing it share the work.
	Consumer string `env:"AUDIT_CONSUMER, default=parley-audit"`
	// BatchMaxRows is the most events written in one transaction.
	BatchMaxRows int `env:"AUDIT_BATCH_MAX_ROWS, default=500"`
	// BatchMaxBytes is the most message bytes in one batch (raised to the NATS server's
	// max_payload when lower, so that a large event can always be delivered).
	BatchMaxBytes int `env:"AUDIT_BATCH_MAX_BYTES, default=4194304"`
	// BatchMaxWait is the longest wait to fill a batch, and how long the writer lets
	// events gather in the stream after a fetch that took all it held.
	BatchMaxWait time.Duration `env:"AUDIT_BATCH_MAX_WAIT, default=200ms"`
	// MaxDeliver is how many times JetStream delivers an event; one PostgreSQL still
	// rejects on its last delivery goes to the dead-letter subject. A database outage does
	// not spend deliveries.
	MaxDeliver int `env:"AUDIT_MAX_DELIVER, default=5"`
	// AckWait is how long JetStream waits for an acknowledgement before redelivering.
	AckWait time.Duration `env:"AUDIT_ACK_WAIT, default=30s"`
	// StreamReplicas is the replica count of the PARLEY_AUDIT stream when audit creates it
	// (1 to 5); an existing stream is left as it is.
	StreamReplicas int `env:"AUDIT_STREAM_REPLICAS, default=1"`
	// Retention is how long conversations are kept: a day's partition is dropped once the
	// day ended this long ago. Zero keeps everything.
	Retention Period `env:"AUDIT_RETENTION, default=30d"`
	// UsageRetention is how long the daily usage roll-up is kept; zero keeps it all.
	UsageRetention Period `env:"AUDIT_USAGE_RETENTION, default=400d"`
	// PartitionsAhead is how many days after today have their partition created in
	// advance.
	PartitionsAhead int `env:"AUDIT_PARTITIONS_AHEAD, default=7"`
	// MaintenanceInterval is the time between runs of the partition maintenance.
	MaintenanceInterval time.Duration `env:"AUDIT_MAINTENANCE_INTERVAL, default=1h"`
	// SearchIndex is when a day's search index is built: "sealed" once the day is over
	// (plus SearchIndexDelay), keeping it off the ingest path, or "live" with the
	// partition, so that rows are indexed as they are written.
	SearchIndex string `env:"AUDIT_SEARCH_INDEX, default=sealed"`
	// PageMaxBytes is the byte budget of a ListConversations page: a page stops adding rows
	// once the next would pass it (a page always holds one row at least).
	PageMaxBytes int `env:"AUDIT_PAGE_MAX_BYTES, default=4194304"`
	// SearchIndexDelay is how long after a day ends its search index is built ("sealed").
	SearchIndexDelay time.Duration `env:"AUDIT_SEARCH_INDEX_DELAY, default=1h"`
	// SealKeyFile is the X25519 private key (PEM, PKCS #8) that opens the audit copies the
	// routers seal to this service (ROUTER_AUDIT_SEAL_KEY_FILE holds its public key). Unset,
	// a sealed event is stored with its texts redacted, and the service warns at start.
	SealKeyFile string `env:"AUDIT_SEAL_KEY_FILE"`
	// SealOldKeyFiles are earlier private keys, tried after SealKeyFile, while events
	// sealed to them may still be in the stream (a key rotation).
	SealOldKeyFiles []string `env:"AUDIT_SEAL_OLD_KEY_FILES"`
	// ScrubberURL locates pii-scrubber, which scrubs the opened copies: https:// under
	// mutual TLS (INTERNAL_TLS=on), http:// with INTERNAL_TLS=off.
	ScrubberURL string `env:"AUDIT_SCRUBBER_URL, default=https://127.0.0.1:3510"`
}

// Search index modes, the values of AUDIT_SEARCH_INDEX.
const (
	SearchIndexSealed = "sealed"
	SearchIndexLive   = "live"
)

// Validate reports every bad setting, naming its variable.
func (c *Config) Validate() error {
	var errs []error
	if err := bus.CheckName(c.Consumer); err != nil {
		errs = append(errs, fmt.Errorf("AUDIT_CONSUMER %q %w", c.Consumer, err))
	}
	if c.BatchMaxRows < 1 || c.BatchMaxRows > maxBatchRows {
		errs = append(errs, fmt.Errorf("AUDIT_BATCH_MAX_ROWS must be between 1 and %d, got %d", maxBatchRows, c.BatchMaxRows))
	}
	if c.BatchMaxBytes < 1 {
		errs = append(errs, fmt.Errorf("AUDIT_BATCH_MAX_BYTES must be positive, got %d", c.BatchMaxBytes))
	}
	if c.BatchMaxWait <= 0 {
		errs = append(errs, fmt.Errorf("AUDIT_BATCH_MAX_WAIT must be positive, got %s", c.BatchMaxWait))
	}
	if c.MaxDeliver < 1 {
		errs = append(errs, fmt.Errorf("AUDIT_MAX_DELIVER must be at least 1, got %d", c.MaxDeliver))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("AUDIT_ACK_WAIT must be at least 1s, got %s", c.AckWait))
	} else if c.BatchMaxWait > 0 && c.BatchMaxWait >= c.AckWait/2 {
		// Messages wait in a filling batch; they must not be redelivered meanwhile.
		errs = append(errs, fmt.Errorf("AUDIT_BATCH_MAX_WAIT (%s) must be less than half of AUDIT_ACK_WAIT (%s)", c.BatchMaxWait, c.AckWait))
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		errs = append(errs, fmt.Errorf("AUDIT_STREAM_REPLICAS must be between 1 and 5, got %d", c.StreamReplicas))
	}
	for _, p := range []struct {
		name string
		v    Period
	}{{"AUDIT_RETENTION", c.Retention}, {"AUDIT_USAGE_RETENTION", c.UsageRetention}} {
		if p.v != 0 && p.v.Duration() < 24*time.Hour {
			errs = append(errs, fmt.Errorf("%s must be 0 (keep everything) or at least 1d, got %s", p.name, p.v))
		}
	}
	if c.PartitionsAhead < 1 || c.PartitionsAhead > 366 {
		errs = append(errs, fmt.Errorf("AUDIT_PARTITIONS_AHEAD must be between 1 and 366, got %d", c.PartitionsAhead))
	}
	if c.MaintenanceInterval < time.Second || c.MaintenanceInterval > 24*time.Hour {
		errs = append(errs, fmt.Errorf("AUDIT_MAINTENANCE_INTERVAL must be between 1s and 24h, got %s", c.MaintenanceInterval))
	}
	if c.SearchIndex != SearchIndexSealed && c.SearchIndex != SearchIndexLive {
		errs = append(errs, fmt.Errorf("AUDIT_SEARCH_INDEX must be %s or %s, got %q", SearchIndexSealed, SearchIndexLive, c.SearchIndex))
	}
	if c.PageMaxBytes < 1 {
		errs = append(errs, fmt.Errorf("AUDIT_PAGE_MAX_BYTES must be positive, got %d", c.PageMaxBytes))
	}
	if len(c.SealOldKeyFiles) > 0 && c.SealKeyFile == "" {
		errs = append(errs, errors.New("AUDIT_SEAL_OLD_KEY_FILES needs AUDIT_SEAL_KEY_FILE (the current key)"))
	}
	if c.SearchIndexDelay < 0 {
		errs = append(errs, fmt.Errorf("AUDIT_SEARCH_INDEX_DELAY must not be negative, got %s", c.SearchIndexDelay))
	}
	return errors.Join(errs...)
}

// Maintenance returns the maintenance job's view of the settings.
func (c Config) Maintenance() maintenance.Config {
	return maintenance.Config{
		Interval:         c.MaintenanceInterval,
		Ahead:            c.PartitionsAhead,
		Retention:        c.Retention.Duration(),
		UsageRetention:   c.UsageRetention.Duration(),
		SearchIndexDelay: c.SearchIndexDelay,
	}
}

// Ingest returns the ingest loop's view of the settings.
func (c Config) Ingest() ingest.Config {
	return ingest.Config{
		Consumer:       c.Consumer,
		MaxRows:        c.BatchMaxRows,
		MaxBytes:       c.BatchMaxBytes,
		MaxWait:        c.BatchMaxWait,
		MaxDeliver:     c.MaxDeliver,
		AckWait:        c.AckWait,
		StreamReplicas: c.StreamReplicas,
	}
}
