package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrInvalidLease means a Release named no lease.
var ErrInvalidLease = errors.New("lease is required")

// Outcome is what a Lookup found.
type Outcome int

// The outcomes of a Lookup.
const (
	// OutcomeHit means the entry exists.
	OutcomeHit Outcome = iota + 1
	// OutcomeLeased means the caller holds the key's lease and must Put or Release.
	OutcomeLeased
	// OutcomeBusy means another caller holds the lease; Wait for its value.
	OutcomeBusy
	// OutcomeMiss means no lease could be taken (the bucket is full).
	OutcomeMiss
)

// Lookup is the answer of Store.Lookup.
type Lookup struct {
	Outcome Outcome
	// Value and Layer are set on a hit.
	Value []byte
	Layer Layer
	// Lease is set when Outcome is OutcomeLeased.
	Lease uint64
	// LeaseRemaining is how long the lease runs: the granted TTL when leased, what is
	// left of another caller's lease when busy.
	LeaseRemaining time.Duration
}

// Lookup returns the entry under k; failing that it grants the caller the key's lease
// for leaseTTL (clamped to [1s, MaxLeaseTTL]; 0 means the maximum), or reports that
// another caller holds it. The lease is a record at the entry's own key, so one
// conditional write decides: on a true miss, taking the lease is the only bucket
// request. Concurrent Lookups of one key in this replica share one resolution: the
// first caller gets the lease, the others are told to wait.
func (s *Store) Lookup(ctx context.Context, k Key, leaseTTL time.Duration) (Lookup, error) {
	if err := k.validate(); err != nil {
		return Lookup{}, err
	}
	if s.kv == nil {
		return Lookup{}, ErrNotStarted
	}
	ek := k.entryKey()
	if v, ok := s.l1.get(ek); ok {
		s.metrics.hit(s.metrics.hitL1, v)
		return Lookup{Outcome: OutcomeHit, Value: v, Layer: LayerL1}, nil
	}
	ttl := s.leaseTTL(leaseTTL)
	var (
		res    Lookup
		leader bool
		err    error
	)
	// A joiner whose leader was cancelled tries once more, leading itself.
	for range 2 {
		res, leader, err = s.flights.do(ctx, ek, func() (Lookup, error) { return s.resolve(ctx, ek, ttl) })
		if err == nil || leader || ctx.Err() != nil || !isContextErr(err) {
			break
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			s.metrics.errors.WithLabelValues("lookup").Inc()
		}
		return Lookup{}, fmt.Errorf("lookup: %w", err)
	}
	if res.Outcome == OutcomeLeased {
		switch {
		case !leader:
			// The lease is the flight leader's; the rest of this replica waits for it.
			res = Lookup{Outcome: OutcomeBusy, LeaseRemaining: res.LeaseRemaining}
		case ctx.Err() != nil:
			// Nobody will use this lease: end it now rather than make waiters wait
			// for its expiry.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			if ended, rerr := s.endLease(rctx, ek, res.Lease); rerr == nil && ended {
				s.waits.finish(ek, nil, false)
			}
			return Lookup{}, fmt.Errorf("lookup: %w", ctx.Err())
		}
	}
	switch res.Outcome {
	case OutcomeHit:
		s.metrics.hit(s.metrics.hitL2, res.Value)
	case OutcomeLeased:
		s.metrics.misses.Inc()
		s.metrics.leases.WithLabelValues("granted").Inc()
	case OutcomeBusy:
		s.metrics.misses.Inc()
		s.metrics.leases.WithLabelValues("busy").Inc()
	case OutcomeMiss:
		s.metrics.misses.Inc()
		s.metrics.leases.WithLabelValues("none").Inc()
	}
	return res, nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func (s *Store) leaseTTL(d time.Duration) time.Duration {
	switch {
	case d <= 0 || d > s.cfg.MaxLeaseTTL:
		return roundUpToSecond(s.cfg.MaxLeaseTTL)
	case d < minLeaseTTL:
		return minLeaseTTL
	}
	return roundUpToSecond(d)
}

// resolve decides ek in the bucket: it writes a lease record expecting the key to hold
// nothing (one request on a true miss); if the key holds something it reads it, and
// answers a live entry (hit) or a live lease (busy), or writes the lease once more over
// an expired record or a marker, expecting exactly that revision. At most three
// requests, no loop: a caller that loses the second race is told the key is busy.
func (s *Store) resolve(ctx context.Context, ek string, ttl time.Duration) (Lookup, error) {
	gen := s.l1.generation()
	rev, err := s.writeLease(ctx, ek, 0, ttl)
	if err == nil {
		return Lookup{Outcome: OutcomeLeased, Lease: rev, LeaseRemaining: ttl}, nil
	}
	if !isWrongLastSeq(err) {
		return leaseFailure(ctx, err)
	}
	r, err := s.last(ctx, ek)
	if err != nil {
		return Lookup{}, err
	}
	switch {
	case r.live(recordEntry):
		s.l1.set(ek, r.value, r.expires, gen)
		return Lookup{Outcome: OutcomeHit, Value: r.value, Layer: LayerL2}, nil
	case r.live(recordLease):
		return Lookup{Outcome: OutcomeBusy, LeaseRemaining: min(time.Until(r.expires), s.cfg.MaxLeaseTTL)}, nil
	}
	// An expired entry or lease not yet removed, a delete or expiry marker, a record
	// this version did not write, or nothing (the key was emptied since the first
	// write): take the lease over exactly what was read.
	rev, err = s.writeLease(ctx, ek, r.rev, ttl)
	switch {
	case err == nil:
		return Lookup{Outcome: OutcomeLeased, Lease: rev, LeaseRemaining: ttl}, nil
	case isWrongLastSeq(err):
		// Another caller wrote the key in between, most likely its own lease. Its
		// waiters' watch sees whatever it was.
		return Lookup{Outcome: OutcomeBusy, LeaseRemaining: leaseGrace}, nil
	}
	return leaseFailure(ctx, err)
}

// writeLease publishes a lease record for ek, lasting ttl, if the key's revision is
// still rev (0: the key holds no message). It returns the lease record's revision.
// Nats-Expected-Last-Subject-Sequence is sent even for 0 (nats.go keeps the
// expectation as a pointer), and JetStream compares it with the subject's last
// message whatever that is: a delete, purge or expiry marker is a message too.
func (s *Store) writeLease(ctx context.Context, ek string, rev uint64, ttl time.Duration) (uint64, error) {
	msg := &nats.Msg{Subject: s.subject + ek, Data: encodeLease(time.Now().Add(ttl))}
	s.metrics.rtCreate.Inc()
	ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgTTL(ttl), jetstream.WithExpectStream(s.stream),
		jetstream.WithExpectLastSequencePerSubject(rev))
	if err != nil {
		return 0, fmt.Errorf("write lease %s: %w", ek, err)
	}
	return ack.Sequence, nil
}

// leaseFailure answers a lease write that failed for another reason than a revision
// mismatch: a full bucket takes no lease (the caller asks the provider without one).
func leaseFailure(ctx context.Context, err error) (Lookup, error) {
	err = classify(ctx, err)
	if errors.Is(err, ErrFull) {
		return Lookup{Outcome: OutcomeMiss}, nil
	}
	return Lookup{}, fmt.Errorf("take lease: %w", err)
}

// isWrongLastSeq reports a conditional write refused because the key's revision was
// not the expected one: code 10071, or 10164 from a replicated bucket.
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// endLease removes ek if its revision is still lease, leaving a purge marker. ended is
// false when the lease had already expired or been replaced (by a value, or another
// caller's lease).
func (s *Store) endLease(ctx context.Context, ek string, lease uint64) (ended bool, err error) {
	s.metrics.rtPurge.Inc()
	err = s.kv.Purge(ctx, ek, jetstream.LastRevision(lease), jetstream.PurgeTTL(markerTTL))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isWrongLastSeq(err):
		return false, nil
	}
	return false, fmt.Errorf("end lease: %w", classify(ctx, err))
}

// Release ends lease on k without a value; callers waiting for k go to the provider
// themselves. A lease that has already expired or was replaced is left alone.
func (s *Store) Release(ctx context.Context, k Key, lease uint64) error {
	if err := k.validate(); err != nil {
		return err
	}
	if lease == 0 {
		return ErrInvalidLease
	}
	if s.kv == nil {
		return ErrNotStarted
	}
	ek := k.entryKey()
	ended, err := s.endLease(ctx, ek, lease)
	if err != nil {
		s.metrics.errors.WithLabelValues("release").Inc()
		return err
	}
	if ended {
		s.waits.finish(ek, nil, false)
	}
	return nil
}

// Wait waits at most maxWait (capped at MaxLeaseTTL plus a second) for the holder of
// k's lease to store a value. found is false when the lease ended without one, when
// maxWait passed, or when the replica is shutting down: the caller then asks the
// provider itself. Concurrent waits for one key in this replica share one watch of
// the bucket.
func (s *Store) Wait(ctx context.Context, k Key, maxWait time.Duration) ([]byte, bool, error) {
	if err := k.validate(); err != nil {
		return nil, false, err
	}
	if maxWait <= 0 {
		return nil, false, ErrInvalidWait
	}
	if s.kv == nil {
		return nil, false, ErrNotStarted
	}
	maxWait = min(maxWait, s.cfg.MaxLeaseTTL+leaseGrace)
	ek := k.entryKey()
	if v, ok := s.l1.get(ek); ok {
		s.metrics.waits.WithLabelValues("value").Inc()
		s.metrics.hit(s.metrics.hitWait, v)
		return v, true, nil
	}
	w := s.waits.join(ctx, ek, s.watchKey)
	if w == nil {
		s.metrics.waits.WithLabelValues("ended").Inc()
		return nil, false, nil
	}
	defer s.waits.leave(ek, w)
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	select {
	case <-w.done:
	case <-timer.C:
		s.metrics.waits.WithLabelValues("timeout").Inc()
		return nil, false, nil
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	switch {
	case w.err != nil:
		s.metrics.waits.WithLabelValues("error").Inc()
		s.metrics.errors.WithLabelValues("wait").Inc()
		return nil, false, fmt.Errorf("wait: %w", w.err)
	case w.found:
		s.metrics.waits.WithLabelValues("value").Inc()
		s.metrics.hit(s.metrics.hitWait, w.value)
		return w.value, true, nil
	}
	s.metrics.waits.WithLabelValues("ended").Inc()
	return nil, false, nil
}

// watchKey watches ek for the waiters of w until a value arrives or the lease is gone.
// The key holds the lease until the holder's value replaces it; the lease's expiry,
// read from its record, bounds the watch even if the expiry marker never arrives.
func (s *Store) watchKey(ctx context.Context, w *waiter, ek string) {
	defer s.waits.wg.Done()
	s.metrics.rtWatch.Inc()
	watcher, err := s.kv.Watch(ctx, ek)
	if err != nil {
		w.finish(nil, false, classify(ctx, err))
		return
	}
	defer func() { _ = watcher.Stop() }()
	expiry := time.NewTimer(time.Hour)
	expiry.Stop()
	defer expiry.Stop()
	initDone, held := false, false
	for {
		select {
		case <-ctx.Done():
			w.finish(nil, false, nil)
			return
		case <-expiry.C:
			w.finish(nil, false, nil)
			return
		case e, ok := <-watcher.Updates():
			if !ok {
				w.finish(nil, false, ErrUnavailable)
				return
			}
			if e == nil {
				initDone = true
			} else {
				held = false
				expiry.Stop()
				if e.Operation() == jetstream.KeyValuePut {
					kind, v, exp := decodeRecord(e.Value())
					switch {
					case kind == recordEntry && time.Now().Before(exp):
						s.l1.set(ek, v, exp, s.l1.generation())
						w.finish(v, true, nil)
						return
					case kind == recordLease && time.Now().Before(exp):
						held = true
						expiry.Reset(time.Until(exp) + leaseGrace)
					}
				}
			}
			if initDone && !held {
				w.finish(nil, false, nil)
				return
			}
		}
	}
}

// flights lets concurrent Lookups of one key in this replica share one resolution.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	res  Lookup
	err  error
}

// do runs fn for key unless a run is in flight, in which case it waits for that run's
// result. leader reports whether this call ran fn.
func (fs *flights) do(ctx context.Context, key string, fn func() (Lookup, error)) (res Lookup, leader bool, err error) {
	fs.mu.Lock()
	if f, ok := fs.m[key]; ok {
		fs.mu.Unlock()
		select {
		case <-f.done:
			return f.res, false, f.err
		case <-ctx.Done():
			return Lookup{}, false, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	fs.m[key] = f
	fs.mu.Unlock()
	defer func() {
		fs.mu.Lock()
		delete(fs.m, key)
		fs.mu.Unlock()
		close(f.done)
	}()
	f.res, f.err = fn()
	return f.res, true, f.err
}

// waits shares one bucket watch among the callers waiting for one key.
type waits struct {
	mu     sync.Mutex
	m      map[string]*waiter
	closed bool
	wg     sync.WaitGroup // the watch goroutines
}

// waiter is the shared state of the callers waiting for one key.
type waiter struct {
	done   chan struct{}
	once   sync.Once
	value  []byte
	found  bool
	err    error
	refs   int                // guarded by waits.mu
	cancel context.CancelFunc // ends the watch
}

func (w *waiter) finish(value []byte, found bool, err error) {
	w.once.Do(func() {
		w.value, w.found, w.err = value, found, err
		close(w.done)
	})
}

func (w *waiter) finished() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// join returns the live waiter of ek, or makes one and starts watch for it. It
// returns nil once the waits are closed.
func (ws *waits) join(ctx context.Context, ek string, watch func(context.Context, *waiter, string)) *waiter {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed {
		return nil
	}
	if w := ws.m[ek]; w != nil && !w.finished() {
		w.refs++
		return w
	}
	// The watch serves every waiter of the key, so it outlives the first one's
	// request; the last waiter to leave, or close, ends it.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &waiter{done: make(chan struct{}), refs: 1, cancel: cancel}
	ws.m[ek] = w
	ws.wg.Add(1)
	go watch(wctx, w, ek)
	return w
}

// leave drops one caller from w and ends the watch when it was the last.
func (ws *waits) leave(ek string, w *waiter) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w.refs--
	if w.refs > 0 {
		return
	}
	if ws.m[ek] == w {
		delete(ws.m, ek)
	}
	w.cancel()
}

// finish hands a value (or the end of the lease) to the waiters of ek in this replica
// without waiting for the bucket watch to report it.
func (ws *waits) finish(ek string, value []byte, found bool) {
	ws.mu.Lock()
	w := ws.m[ek]
	ws.mu.Unlock()
	if w != nil {
		w.finish(value, found, nil)
	}
}

// close ends every wait with "no value" and refuses new ones.
func (ws *waits) close() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.closed = true
	for _, w := range ws.m {
		w.finish(nil, false, nil)
		w.cancel()
	}
}

func (ws *waits) len() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.m)
}
