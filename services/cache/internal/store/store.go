// Package store keeps cache entries in a NATS JetStream key-value bucket, with an
// in-process L1 in front of it. Every replica of the cache service (and every router
// behind it) sees the same entries, and they survive restarts because the bucket uses
// file storage. Leases, held at the entry's own key, make identical concurrent misses
// reach the provider once, across replicas (docs/cache.md).
package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleyhq/parley/libs/bus"
)

// Domain errors. internal/rpc maps them to Connect codes.
var (
	// ErrInvalidKey means the key is not 64 lowercase hex characters (a SHA-256).
	ErrInvalidKey = errors.New("key must be 64 lowercase hex characters")
	// ErrInvalidScope means the tenant or component is missing or too long.
	ErrInvalidScope = errors.New("tenant and component are required (at most 1024 bytes each)")
	// ErrInvalidPurge means a purge named neither a tenant nor a component.
	ErrInvalidPurge = errors.New("purge needs a tenant, a component or both")
	// ErrInvalidTTL means the TTL is not positive.
	ErrInvalidTTL = errors.New("ttl must be positive")
	// ErrInvalidWait means the wait is not positive.
	ErrInvalidWait = errors.New("max_wait must be positive")
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
	// markerTTL is how long JetStream keeps the marker left when a key expires or a
	// lease ends. A marker is required for per-key TTL (it turns on the stream's
	// AllowMsgTTL); reads treat it as a miss, so a short life only saves space.
	markerTTL = time.Minute
	// headerReserve is room in the stream's message limit for the headers a put
	// carries (Nats-TTL, Nats-Expected-Stream) and the entry's own 9-byte header:
	// JetStream counts them against MaxMsgSize, the Store checks the value alone
	// against MaxEntryBytes.
	headerReserve = 1024
	// jsErrStoreFailed is JetStream's JSStreamStoreFailedF code, returned with
	// "maximum bytes exceeded" when a DiscardNew stream (every KV bucket) is full.
	jsErrStoreFailed jetstream.ErrorCode = 10077
	// minLeaseTTL is JetStream's TTL granularity.
	minLeaseTTL = time.Second
	// leaseGrace is how long past a lease's expiry a waiter trusts neither the lease
	// nor its missing expiry marker.
	leaseGrace = time.Second
	// noticeTTL is how long purge notices stay in the bucket; a replica that is cut off
	// from NATS for longer may keep purged entries in memory until they expire.
	noticeTTL = time.Hour
	// noticePrefix starts the keys of purge notices. It is not a 16-hex-digit token,
	// so no purge filter ever selects a notice.
	noticePrefix = "_purge."
)

// Config sizes the bucket and the in-process cache.
type Config struct {
	// Bucket is the key-value bucket name.
	Bucket string
	// MaxEntryBytes is the largest value a Put accepts.
	MaxEntryBytes int
	// MaxBucketBytes caps the bucket's storage.
	MaxBucketBytes int64
	// Replicas is the number of JetStream replicas of the bucket.
	Replicas int
	// L1MaxBytes caps the in-process cache (keys, values and overhead); 0 turns it off.
	L1MaxBytes int64
	// MaxLeaseTTL caps leases and waits.
	MaxLeaseTTL time.Duration
}

// Store is the cache over a JetStream key-value bucket with per-entry TTL.
type Store struct {
	cfg     Config
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	bucket  jetstream.Stream // the bucket's stream, for reads that need a key's revision
	subject string           // the bucket's subject prefix, "$KV.<bucket>."
	stream  string           // the bucket's stream name, "KV_<bucket>"
	l1      *l1
	metrics *metrics
	flights flights
	waits   waits

	// bg tracks the store's goroutines: the purge-notice watcher and one watcher per
	// key being waited for. stopNotices ends the first; waits.close the others.
	bg          sync.WaitGroup
	stopNotices context.CancelFunc
}

// New builds a Store and registers its metrics on reg. It does no I/O: Start creates
// or updates the bucket.
func New(js jetstream.JetStream, cfg Config, reg prometheus.Registerer) (*Store, error) {
	if cfg.MaxEntryBytes <= 0 || cfg.MaxEntryBytes > math.MaxInt32-headerReserve {
		return nil, fmt.Errorf("max entry bytes %d out of range", cfg.MaxEntryBytes)
	}
	if cfg.L1MaxBytes < 0 {
		return nil, fmt.Errorf("l1 max bytes %d is negative", cfg.L1MaxBytes)
	}
	if cfg.MaxLeaseTTL < minLeaseTTL {
		cfg.MaxLeaseTTL = minLeaseTTL
	}
	s := &Store{
		cfg:     cfg,
		js:      js,
		subject: "$KV." + cfg.Bucket + ".",
		stream:  "KV_" + cfg.Bucket,
		flights: flights{m: map[string]*flight{}},
		waits:   waits{m: map[string]*waiter{}},
	}
	m, err := newMetrics(reg, s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if cfg.L1MaxBytes > 0 {
		if s.l1, err = newL1(cfg.L1MaxBytes, m); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Start creates the bucket, or updates it to the configured limits, and starts
// watching for purges made through other replicas. A Store must be started before use.
func (s *Store) Start(ctx context.Context) error {
	if nc := s.js.Conn(); nc != nil && int64(s.cfg.MaxEntryBytes) > nc.MaxPayload() {
		return fmt.Errorf("max entry bytes %d exceeds the NATS server's max_payload %d", s.cfg.MaxEntryBytes, nc.MaxPayload())
	}
	kv, err := bus.RetryAPI(ctx, bus.APIAttempt, func(ctx context.Context) (jetstream.KeyValue, error) {
		return s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         s.cfg.Bucket,
			Description:    "Parley response cache",
			MaxValueSize:   int32(s.cfg.MaxEntryBytes + headerReserve), //nolint:gosec // range checked in New
			MaxBytes:       s.cfg.MaxBucketBytes,
			Storage:        jetstream.FileStorage,
			Replicas:       s.cfg.Replicas,
			LimitMarkerTTL: markerTTL,
		})
	})
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		return fmt.Errorf("create kv bucket %s: per-entry TTL needs nats-server 2.11 or later: %w", s.cfg.Bucket, err)
	}
	if err != nil {
		return fmt.Errorf("create kv bucket %s: %w", s.cfg.Bucket, err)
	}
	bucket, err := bus.RetryAPI(ctx, bus.APIAttempt, func(ctx context.Context) (jetstream.Stream, error) {
		return s.js.Stream(ctx, s.stream)
	})
	if err != nil {
		return fmt.Errorf("kv bucket %s stream: %w", s.cfg.Bucket, err)
	}
	if s.l1 != nil {
		// The watcher outlives the start-up context; Stop ends it.
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		w, err := kv.Watch(wctx, noticePrefix+">", jetstream.UpdatesOnly())
		if err != nil {
			cancel()
			return fmt.Errorf("watch purge notices in %s: %w", s.cfg.Bucket, err)
		}
		s.stopNotices = cancel
		s.bg.Add(1)
		go s.followPurges(wctx, w)
	}
	s.kv, s.bucket = kv, bucket
	return nil
}

// EndWaits answers every pending and future Wait with "no value", so a shutting-down
// replica sends its waiters to the provider instead of holding the server open.
func (s *Store) EndWaits(context.Context) error {
	s.waits.close()
	return nil
}

// Stop ends the store's goroutines and waits for them.
func (s *Store) Stop(ctx context.Context) error {
	s.waits.close()
	if s.stopNotices != nil {
		s.stopNotices()
	}
	done := make(chan struct{})
	go func() {
		s.bg.Wait()
		s.waits.wg.Wait()
		close(done)
	}()
	defer s.l1.stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop cache store: %w", ctx.Err())
	}
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

// Get returns the value under k. A missing or expired entry is (nil, false, nil).
func (s *Store) Get(ctx context.Context, k Key) ([]byte, bool, error) {
	if err := k.validate(); err != nil {
		return nil, false, err
	}
	if s.kv == nil {
		return nil, false, ErrNotStarted
	}
	ek := k.entryKey()
	if v, ok := s.l1.get(ek); ok {
		s.metrics.hit(s.metrics.hitL1, v)
		return v, true, nil
	}
	v, found, err := s.readEntry(ctx, ek)
	if err != nil {
		s.metrics.errors.WithLabelValues("get").Inc()
		return nil, false, fmt.Errorf("kv get: %w", err)
	}
	if !found {
		s.metrics.misses.Inc()
		return nil, false, nil
	}
	s.metrics.hit(s.metrics.hitL2, v)
	return v, true, nil
}

// readEntry reads ek from the bucket and keeps a live value in L1.
func (s *Store) readEntry(ctx context.Context, ek string) ([]byte, bool, error) {
	gen := s.l1.generation()
	r, err := s.last(ctx, ek)
	if err != nil {
		return nil, false, err
	}
	if !r.live(recordEntry) {
		return nil, false, nil
	}
	s.l1.set(ek, r.value, r.expires, gen)
	return r.value, true, nil
}

// kvOperationHeader marks a key-value delete or purge (nats.go keeps its name unexported).
const kvOperationHeader = "KV-Operation"

// record is the last message under a bucket key.
type record struct {
	// rev is the message's stream sequence, the key's revision; 0 when the key holds
	// no message at all.
	rev uint64
	// kind is recordNone for a delete, purge or expiry marker.
	kind    recordKind
	value   []byte
	expires time.Time
}

// live reports whether r is a record of kind k that has not expired.
func (r record) live(k recordKind) bool {
	return r.kind == k && time.Now().Before(r.expires)
}

// last reads the last message under ek, in one direct get. Unlike KeyValue.Get it
// returns the revision of a delete or expiry marker too, which a conditional write over
// the marker must name.
func (s *Store) last(ctx context.Context, ek string) (record, error) {
	s.metrics.rtGet.Inc()
	m, err := s.bucket.GetLastMsgForSubject(ctx, s.subject+ek)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return record{}, nil
	}
	if err != nil {
		return record{}, classify(ctx, err)
	}
	r := record{rev: m.Sequence}
	if m.Header.Get(kvOperationHeader) != "" || m.Header.Get(jetstream.MarkerReasonHeader) != "" {
		return r, nil // a marker: a revision, no record
	}
	r.kind, r.value, r.expires = decodeRecord(m.Data)
	return r, nil
}

// Put stores value under k for ttl, replacing any earlier entry and whatever lease is
// held on k: the lease lives at the entry's key, so storing the value ends it, in the
// same single write, whoever holds it (a PutRequest's lease is not needed and not
// checked). JetStream removes the entry at the next whole second after ttl; reads see it
// expire at ttl.
func (s *Store) Put(ctx context.Context, k Key, value []byte, ttl time.Duration) error {
	if err := k.validate(); err != nil {
		return err
	}
	switch {
	case ttl <= 0:
		return ErrInvalidTTL
	case len(value) > s.cfg.MaxEntryBytes:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(value), s.cfg.MaxEntryBytes)
	case s.kv == nil:
		return ErrNotStarted
	}
	ek := k.entryKey()
	gen := s.l1.generation()
	expires := time.Now().Add(ttl)
	if err := s.publish(ctx, ek, encodeEntry(value, expires), ttl); err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return fmt.Errorf("%w: %d bytes with headers exceed the NATS max_payload", ErrTooLarge, len(value))
		}
		s.metrics.errors.WithLabelValues("put").Inc()
		return fmt.Errorf("kv put: %w", classify(ctx, err))
	}
	s.metrics.puts.Inc()
	s.metrics.bytesWritten.Add(float64(len(value)))
	s.l1.set(ek, value, expires, gen)
	s.waits.finish(ek, value, true)
	return nil
}

// publish stores data under key with a per-message TTL. nats.go v1.55.0's
// KeyValue.Put takes no options, jetstream.KeyTTL applies only to Create (which fails
// on an existing key) and Update clears the TTL. So this publishes to the bucket's
// subject with the same Nats-TTL header Create sends: a plain put with a per-key TTL,
// in one round trip.
func (s *Store) publish(ctx context.Context, key string, data []byte, ttl time.Duration) error {
	msg := &nats.Msg{Subject: s.subject + key, Data: data}
	s.metrics.rtPut.Inc()
	_, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgTTL(roundUpToSecond(ttl)), jetstream.WithExpectStream(s.stream))
	if err != nil {
		return fmt.Errorf("publish %s: %w", key, err)
	}
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
