// Package crossing counts the process crossings a conversation waits for: every call the
// router makes to another process (pii-scrubber, cache, a worker over NATS, the audit
// stream) is one crossing, and the number of them that follow one another on a request's
// path (its sequential crossings) sets the request's latency and much of its CPU on small
// machines (docs/architecture.md, "Crossing budget").
//
// A conversation starts a Trace in its context; the adapters that cross a process
// boundary call Track around the call. Crossings that overlap in time count once towards
// the sequential number, so work made concurrent shows as fewer sequential crossings.
package crossing

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Kind names a crossing.
type Kind string

// The router's crossings.
const (
	Scrub        Kind = "scrub"         // Connect call to pii-scrubber
	CacheLookup  Kind = "cache_lookup"  // Connect call to cache: Lookup
	CacheWait    Kind = "cache_wait"    // Connect call to cache: Wait for a lease holder
	CachePut     Kind = "cache_put"     // Connect call to cache: Put (ends the lease)
	CacheRelease Kind = "cache_release" // Connect call to cache: Release a lease
	Dispatch     Kind = "dispatch"      // NATS request to a worker and its final reply
	AuditPublish Kind = "audit_publish" // JetStream publish of the audit event and its ack
)

// Kinds lists every kind, for metric label values.
var Kinds = []Kind{Scrub, CacheLookup, CacheWait, CachePut, CacheRelease, Dispatch, AuditPublish}

// Trace records the crossings of one request.
type Trace struct {
	mu     sync.Mutex
	origin time.Time
	spans  []span
	ended  bool
}

type span struct {
	kind       Kind
	start, end time.Duration // since origin; end < 0 while in flight
}

type traceKey struct{}

// Start begins a trace and returns the context that carries it.
func Start(ctx context.Context) (context.Context, *Trace) {
	t := &Trace{origin: time.Now()}
	return context.WithValue(ctx, traceKey{}, t), t
}

// Detach returns ctx without its trace: work started with it after (or beside) the
// reply, which the answer does not wait for, is not counted.
func Detach(ctx context.Context) context.Context {
	return context.WithValue(ctx, traceKey{}, (*Trace)(nil))
}

// Track records the start of a crossing of kind on ctx's trace; call the returned
// function when the answer is back. Without a trace it records nothing.
func Track(ctx context.Context, kind Kind) (done func()) {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	if t == nil {
		return func() {}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return func() {}
	}
	i := len(t.spans)
	t.spans = append(t.spans, span{kind: kind, start: time.Since(t.origin), end: -1})
	return func() {
		t.mu.Lock()
		t.spans[i].end = time.Since(t.origin)
		t.mu.Unlock()
	}
}

// Summary is what a trace found.
type Summary struct {
	// Sequential is the length of the longest chain of crossings each of which started
	// after the previous one ended: the crossings the answer waited for one after another.
	Sequential int
	// Chain is that chain's kinds, in order.
	Chain []Kind
	// Kinds counts every crossing made before End, by kind.
	Kinds map[Kind]int
	// Time sums the durations of those crossings, by kind (one still in flight at End
	// counts until End).
	Time map[Kind]time.Duration
}

// End closes the trace (later crossings do not delay the answer and are not counted)
// and summarises it. A crossing still in flight counts as ending now.
func (t *Trace) End() Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ended = true
	now := time.Since(t.origin)
	spans := slices.Clone(t.spans)
	sum := Summary{Kinds: map[Kind]int{}, Time: map[Kind]time.Duration{}}
	for i := range spans {
		if spans[i].end < 0 {
			spans[i].end = now
		}
		sum.Kinds[spans[i].kind]++
		sum.Time[spans[i].kind] += spans[i].end - spans[i].start
	}
	// The most pairwise disjoint intervals: greedily by earliest end.
	slices.SortStableFunc(spans, func(a, b span) int { return compare(a.end, b.end) })
	last := time.Duration(-1)
	for _, s := range spans {
		if s.start >= last {
			sum.Chain = append(sum.Chain, s.kind)
			last = s.end
		}
	}
	sum.Sequential = len(sum.Chain)
	return sum
}

func compare(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
