package store

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// l1Overhead is the bookkeeping an in-memory entry costs beyond its key and value
// (otter's node, the entry struct, the slice header), counted against the byte limit.
const l1Overhead = 128

// l1Entry is a value held in memory with the expiry it had in the bucket.
type l1Entry struct {
	value   []byte
	expires time.Time
}

// l1 is the replica's in-process cache in front of the bucket, bounded by bytes, each
// entry living no longer than it does in the bucket.
type l1 struct {
	c *otter.Cache[string, l1Entry]
	// gen changes whenever a purge drops entries. A value read from the bucket is only
	// kept in memory if no purge happened while it was read, so a purge cannot be
	// undone by a read that raced it.
	gen atomic.Uint64
	// off is set when purges can no longer reach this replica; memory then serves
	// nothing, so no purged entry outlives its purge here.
	off atomic.Bool
}

func newL1(maxBytes int64, m *metrics) (*l1, error) {
	c, err := otter.New(&otter.Options[string, l1Entry]{
		MaximumWeight: uint64(maxBytes), //nolint:gosec // positive, checked by the caller
		Weigher: func(k string, e l1Entry) uint32 {
			return uint32(min(len(k)+len(e.value)+l1Overhead, math.MaxUint32)) //nolint:gosec // clamped
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, l1Entry]) time.Duration {
			return time.Until(e.Value.expires)
		}),
		OnAtomicDeletion: func(e otter.DeletionEvent[string, l1Entry]) {
			switch e.Cause {
			case otter.CauseOverflow:
				m.evictions.WithLabelValues("size").Inc()
			case otter.CauseExpiration:
				m.evictions.WithLabelValues("expired").Inc()
			case otter.CauseInvalidation, otter.CauseReplacement:
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("l1 cache: %w", err)
	}
	return &l1{c: c}, nil
}

// get returns a live value. A nil l1 (disabled) never has one.
func (l *l1) get(k string) ([]byte, bool) {
	if l == nil {
		return nil, false
	}
	if l.off.Load() {
		return nil, false
	}
	e, ok := l.c.GetIfPresent(k)
	if !ok || !time.Now().Before(e.expires) {
		return nil, false
	}
	return e.value, true
}

// set keeps value until expires, unless a purge happened since gen was read.
func (l *l1) set(k string, value []byte, expires time.Time, gen uint64) {
	if l == nil || l.off.Load() || !time.Now().Before(expires) || l.gen.Load() != gen {
		return
	}
	l.c.Set(k, l1Entry{value: value, expires: expires})
	// A purge that began between the check and the Set may have scanned before the Set:
	// then its generation is visible now, and the entry goes.
	if l.gen.Load() != gen {
		l.c.Invalidate(k)
	}
}

// generation is the purge generation to pass to set.
func (l *l1) generation() uint64 {
	if l == nil {
		return 0
	}
	return l.gen.Load()
}

// purge drops the entries in scope (t, c) and returns how many it dropped.
func (l *l1) purge(t, c string) uint64 {
	if l == nil {
		return 0
	}
	l.gen.Add(1)
	var keys []string
	for k := range l.c.Keys() {
		if inScope(k, t, c) {
			keys = append(keys, k)
		}
	}
	var n uint64
	for _, k := range keys {
		if _, ok := l.c.Invalidate(k); ok {
			n++
		}
	}
	return n
}

// blind turns memory off and empties it.
func (l *l1) blind() {
	if l == nil {
		return
	}
	l.off.Store(true)
	l.gen.Add(1)
	l.c.InvalidateAll()
}

func (l *l1) weightedSize() float64 {
	if l == nil {
		return 0
	}
	return float64(l.c.WeightedSize())
}

func (l *l1) entries() float64 {
	if l == nil {
		return 0
	}
	return float64(l.c.EstimatedSize())
}

func (l *l1) stop() {
	if l != nil {
		l.c.StopAllGoroutines()
	}
}
