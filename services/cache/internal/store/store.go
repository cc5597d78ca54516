// Package store keeps cache entries in a NATS JetStream key-value bucket. Every replica
// of the cache service (and every router behind it) sees the same entries, and they
// survive restarts because the bucket uses file storage.
package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Domain errors. internal/rpc maps them to Connect codes.
var (
	// ErrInvalidKey means the key is not 64 lowercase hex characters (a SHA-256).
	ErrInvalidKey = errors.New("key must be 64 lowercase hex characters")
	// ErrInvalidTTL means the TTL is not positive.
	ErrInvalidTTL = errors.New("ttl must be positive")
	// ErrTooLarge means the value exceeds the maximum entry size.
	ErrTooLarge = errors.New("value too large")
	// ErrFull means the bucket has reached its byte limit; entries free space as they expire.
	ErrFull = errors.New("cache bucket is full")
	// ErrUnavailable means NATS could not be reached or did not answer.
	ErrUnavailable = errors.New("cache backend unavailable")
	// ErrNotStarted means Start has not created or bound the bucket yet.
	ErrNotStarted = errors.New("cache store not started")
)

const (
	// markerTTL is how long JetStream keeps the marker left when a key expires. A
	// marker is required for per-key TTL (it turns on the stream's AllowMsgTTL); Get
	// treats the marker as a miss, so a short life only saves space.
	markerTTL = time.Minute
	// headerReserve is room in the stream's message limit for the headers a put
	// carries (Nats-TTL, Nats-Expected-Stream): JetStream counts headers against
	// MaxMsgSize, the Store checks the value alone against MaxEntryBytes.
	headerReserve = 1024
	// jsErrStoreFailed is JetStream's JSStreamStoreFailedF code, returned with
	// "maximum bytes exceeded" when a DiscardNew stream (every KV bucket) is full.
	jsErrStoreFailed jetstream.ErrorCode = 10077
)

// Config sizes the bucket.
type Config struct {
	// Bucket is the key-value bucket name.
	Bucket string
	// MaxEntryBytes is the largest value a Put accepts.
	MaxEntryBytes int
	// MaxBucketBytes caps the bucket's storage.
	MaxBucketBytes int64
	// Replicas is the number of JetStream replicas of the bucket.
	Replicas int
}

// Store is the cache over a JetStream key-value bucket with per-entry TTL.
type Store struct {
	cfg     Config
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	subject string // the bucket's subject prefix, "$KV.<bucket>."
	stream  string // the bucket's stream name, "KV_<bucket>"
	metrics metrics
}

type metrics struct {
	hits, misses, puts, bytesWritten prometheus.Counter
	errors                           *prometheus.CounterVec
}

// New builds a Store and registers its metrics on reg. It does no I/O: Start creates
// or updates the bucket.
func New(js jetstream.JetStream, cfg Config, reg prometheus.Registerer) (*Store, error) {
	if cfg.MaxEntryBytes <= 0 || cfg.MaxEntryBytes > math.MaxInt32-headerReserve {
		return nil, fmt.Errorf("max entry bytes %d out of range", cfg.MaxEntryBytes)
	}
	m := metrics{
		hits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_cache_hits_total", Help: "Get calls that found an entry."}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_cache_misses_total", Help: "Get calls that found no live entry."}),
		puts:   prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_cache_puts_total", Help: "Entries stored."}),
		bytesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_cache_bytes_written_total", Help: "Value bytes stored.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_cache_errors_total", Help: "Cache operations that failed in the backend (not bad input), by op.",
		}, []string{"op"}),
	}
	for _, c := range []prometheus.Collector{m.hits, m.misses, m.puts, m.bytesWritten, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register cache metrics: %w", err)
		}
	}
	// Pre-create the label values so the series exist before the first failure.
	m.errors.WithLabelValues("get")
	m.errors.WithLabelValues("put")
	return &Store{
		cfg:     cfg,
		js:      js,
		subject: "$KV." + cfg.Bucket + ".",
		stream:  "KV_" + cfg.Bucket,
		metrics: m,
	}, nil
}

// Start creates the bucket, or updates it to the configured limits. A Store must be
// started before use.
func (s *Store) Start(ctx context.Context) error {
	if nc := s.js.Conn(); nc != nil && int64(s.cfg.MaxEntryBytes) > nc.MaxPayload() {
		return fmt.Errorf("max entry bytes %d exceeds the NATS server's max_payload %d", s.cfg.MaxEntryBytes, nc.MaxPayload())
	}
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         s.cfg.Bucket,
		Description:    "Parley response cache",
		MaxValueSize:   int32(s.cfg.MaxEntryBytes + headerReserve), //nolint:gosec // range checked in New
		MaxBytes:       s.cfg.MaxBucketBytes,
		Storage:        jetstream.FileStorage,
		Replicas:       s.cfg.Replicas,
		LimitMarkerTTL: markerTTL,
	})
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		return fmt.Errorf("create kv bucket %s: per-entry TTL needs nats-server 2.11 or later: %w", s.cfg.Bucket, err)
	}
	if err != nil {
		return fmt.Errorf("create kv bucket %s: %w", s.cfg.Bucket, err)
	}
	s.kv = kv
	return nil
}

// Ready reports whether the bucket answers.
func (s *Store) Ready(ctx context.Context) error {
	if s.kv == nil {
		return ErrNotStarted
	}
	if _, err := s.kv.Status(ctx); err != nil {
		return fmt.Errorf("kv bucket %s: %w", s.cfg.Bucket, err)
	}
	return nil
}

// Get returns the value under key. A missing or expired entry is (nil, false, nil).
func (s *Store) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if !validKey(key) {
		return nil, false, ErrInvalidKey
	}
	if s.kv == nil {
		return nil, false, ErrNotStarted
	}
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		s.metrics.misses.Inc()
		return nil, false, nil
	}
	if err != nil {
		s.metrics.errors.WithLabelValues("get").Inc()
		return nil, false, fmt.Errorf("kv get: %w", classify(ctx, err))
	}
	s.metrics.hits.Inc()
	return e.Value(), true, nil
}

// Put stores value under key for ttl, replacing any earlier entry. JetStream keeps TTLs
// in whole seconds, so ttl is rounded up to the next second.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	switch {
	case !validKey(key):
		return ErrInvalidKey
	case ttl <= 0:
		return ErrInvalidTTL
	case len(value) > s.cfg.MaxEntryBytes:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(value), s.cfg.MaxEntryBytes)
	case s.kv == nil:
		return ErrNotStarted
	}
	// nats.go v1.55.0's KeyValue.Put takes no options, jetstream.KeyTTL applies only to
	// Create (which fails on an existing key) and Update clears the TTL. So Put publishes
	// to the bucket's subject with the same Nats-TTL header Create sends: a plain put
	// with a per-key TTL, in one round trip.
	msg := &nats.Msg{Subject: s.subject + key, Data: value}
	_, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgTTL(roundUpToSecond(ttl)), jetstream.WithExpectStream(s.stream))
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return fmt.Errorf("%w: %d bytes with headers exceed the NATS max_payload", ErrTooLarge, len(value))
		}
		s.metrics.errors.WithLabelValues("put").Inc()
		return fmt.Errorf("kv put: %w", classify(ctx, err))
	}
	s.metrics.puts.Inc()
	s.metrics.bytesWritten.Add(float64(len(value)))
	return nil
}

// classify turns a NATS error into ErrFull or ErrUnavailable where it is one, keeping
// the original in the chain. The caller's own cancellation or deadline stays as it is.
func classify(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errors.Join(ctx.Err(), err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrStoreFailed {
		return fmt.Errorf("%w: %w", ErrFull, err)
	}
	for _, target := range []error{
		nats.ErrConnectionClosed, nats.ErrConnectionDraining, nats.ErrConnectionReconnecting,
		nats.ErrDisconnected, nats.ErrNoServers, nats.ErrTimeout, nats.ErrNoResponders,
		jetstream.ErrNoStreamResponse, jetstream.ErrJetStreamNotEnabled, jetstream.ErrStreamNotFound,
		context.DeadlineExceeded, // a JetStream API timeout while the caller's ctx is still live
	} {
		if errors.Is(err, target) {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	return err
}

func roundUpToSecond(d time.Duration) time.Duration {
	if r := d % time.Second; r != 0 && d <= math.MaxInt64-time.Second {
		d += time.Second - r
	}
	return d
}

// validKey accepts exactly 64 lowercase hex characters, which are also a valid NATS
// subject token.
func validKey(key string) bool {
	if len(key) != 64 {
		return false
	}
	for i := range len(key) {
		c := key[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
