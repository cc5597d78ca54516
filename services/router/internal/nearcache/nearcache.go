// Package nearcache is the router's in-process cache in front of the shared cache
// service: answers this router stored are served from its memory, with no crossing, until
// they expire, are evicted (the memory is bounded by bytes) or are purged. It is kept
// coherent over NATS: the cache service publishes every purge on cachepurge.Subject and
// the near cache drops what the purge covers; when it may have missed a notice (the
// connection is down, has reconnected, or the subscription dropped messages) it empties
// itself and serves nothing until the connection is back.
package nearcache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleyhq/parley/libs/cachepurge"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// overhead is what an entry costs beyond its key and value (list element, map entry,
// entry struct), counted against the byte limit.
const overhead = 160

// Cache is a conversation.Cache: a near cache in front of another one.
type Cache struct {
	inner  conversation.Cache
	nc     *nats.Conn
	sub    *nats.Subscription
	max    int64
	logger *slog.Logger
	m      metrics

	mu      sync.Mutex
	entries map[conversation.CacheID]*list.Element
	lru     *list.List // of *entry; front: most recently used
	size    int64
	// gen changes whenever entries are dropped by a purge or for coherence; an answer is
	// only kept if no purge happened while it was stored in the shared cache, so a purge
	// cannot be undone by a Put that raced it.
	gen uint64
	// reconnects and dropped are the connection's and the subscription's counts when
	// the near cache last knew it had missed no notice.
	reconnects uint64
	dropped    int
}

type entry struct {
	id      conversation.CacheID
	value   []byte
	expires time.Time
	weight  int64
}

type metrics struct {
	lookups   *prometheus.CounterVec
	evictions *prometheus.CounterVec
	notices   prometheus.Counter
	// hit and miss are lookups' series, resolved once: every lookup counts one.
	hit, miss prometheus.Counter
}

var _ conversation.Cache = (*Cache)(nil)

// New subscribes to purge notices on nc and returns a near cache of at most maxBytes
// in front of inner. Close ends the subscription.
func New(inner conversation.Cache, nc *nats.Conn, maxBytes int64, logger *slog.Logger, reg prometheus.Registerer) (*Cache, error) {
	if maxBytes <= 0 {
		return nil, errors.New("nearcache: the byte limit must be positive")
	}
	c := &Cache{
		inner: inner, nc: nc, max: maxBytes, logger: logger,
		entries: map[conversation.CacheID]*list.Element{}, lru: list.New(),
		reconnects: nc.Stats().Reconnects,
	}
	c.m = metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_near_cache_lookups_total",
			Help: "Cache lookups by the router's near cache, by result (hit: answered from the router's memory; miss: asked the cache service).",
		}, []string{"result"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_near_cache_evictions_total",
			Help: "Entries dropped from the router's near cache, by cause (size, expired, purge, coherence: a purge notice may have been missed).",
		}, []string{"cause"}),
		notices: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_router_near_cache_purge_notices_total",
			Help: "Purge notices received from the cache service.",
		}),
	}
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_router_near_cache_bytes",
		Help: "Bytes held by the router's near cache (keys, values and overhead), against ROUTER_NEAR_CACHE_BYTES.",
	}, func() float64 { c.mu.Lock(); defer c.mu.Unlock(); return float64(c.size) })
	for _, col := range []prometheus.Collector{c.m.lookups, c.m.evictions, c.m.notices, size} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register metric: %w", err)
		}
	}
	c.m.hit, c.m.miss = c.m.lookups.WithLabelValues("hit"), c.m.lookups.WithLabelValues("miss")
	for _, cause := range []string{"size", "expired", "purge", "coherence"} {
		c.m.evictions.WithLabelValues(cause)
	}
	sub, err := nc.Subscribe(cachepurge.Subject, c.onNotice)
	if err != nil {
		return nil, fmt.Errorf("nearcache: subscribe to purge notices: %w", err)
	}
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("nearcache: subscribe to purge notices: %w", err)
	}
	c.sub = sub
	return c, nil
}

// Close ends the purge subscription and empties the near cache.
func (c *Cache) Close() error {
	err := c.sub.Unsubscribe()
	c.mu.Lock()
	c.clear("coherence")
	c.mu.Unlock()
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("nearcache: unsubscribe: %w", err)
	}
	return nil
}

// Lookup answers from memory when it can, and otherwise asks the cache behind it.
func (c *Cache) Lookup(ctx context.Context, id conversation.CacheID, leaseTTL time.Duration) (conversation.CacheLookup, error) {
	if v, ok := c.get(id); ok {
		c.m.hit.Inc()
		return conversation.CacheLookup{Found: true, Value: v}, nil
	}
	c.m.miss.Inc()
	return c.inner.Lookup(ctx, id, leaseTTL) //nolint:wrapcheck // the inner cache's errors are the caller's
}

// Wait asks the cache behind it.
func (c *Cache) Wait(ctx context.Context, id conversation.CacheID, maxWait time.Duration) ([]byte, bool, error) {
	return c.inner.Wait(ctx, id, maxWait) //nolint:wrapcheck // the inner cache's errors are the caller's
}

// Put stores value in the cache behind it and, once stored there, in memory until the
// entry expires there (its expiry is counted from before the Put, so never later).
func (c *Cache) Put(ctx context.Context, id conversation.CacheID, value []byte, ttl time.Duration, lease uint64) error {
	gen := c.generation()
	expires := time.Now().Add(ttl)
	if err := c.inner.Put(ctx, id, value, ttl, lease); err != nil {
		return err //nolint:wrapcheck // the inner cache's errors are the caller's
	}
	c.set(id, value, expires, gen)
	return nil
}

// Release asks the cache behind it.
func (c *Cache) Release(ctx context.Context, id conversation.CacheID, lease uint64) error {
	return c.inner.Release(ctx, id, lease) //nolint:wrapcheck // the inner cache's errors are the caller's
}

func (c *Cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *Cache) get(id conversation.CacheID) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.coherent() {
		return nil, false
	}
	el, ok := c.entries[id]
	if !ok {
		return nil, false
	}
	e := el.Value.(*entry) //nolint:forcetypeassert // the list holds *entry only
	if !time.Now().Before(e.expires) {
		c.remove(el, "expired")
		return nil, false
	}
	c.lru.MoveToFront(el)
	return e.value, true
}

func (c *Cache) set(id conversation.CacheID, value []byte, expires time.Time, gen uint64) {
	weight := int64(len(id.Tenant) + len(id.Component) + len(id.Hash) + len(value) + overhead)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.coherent() || c.gen != gen || weight > c.max || !time.Now().Before(expires) {
		return
	}
	if el, ok := c.entries[id]; ok {
		c.remove(el, "")
	}
	c.entries[id] = c.lru.PushFront(&entry{id: id, value: value, expires: expires, weight: weight})
	c.size += weight
	for c.size > c.max {
		c.remove(c.lru.Back(), "size")
	}
}

// remove drops el, counting it under cause unless cause is empty (a replacement).
func (c *Cache) remove(el *list.Element, cause string) {
	e := c.lru.Remove(el).(*entry) //nolint:forcetypeassert // the list holds *entry only
	delete(c.entries, e.id)
	c.size -= e.weight
	if cause != "" {
		c.m.evictions.WithLabelValues(cause).Inc()
	}
}

// clear drops everything and starts a new generation.
func (c *Cache) clear(cause string) {
	c.gen++
	for c.lru.Len() > 0 {
		c.remove(c.lru.Back(), cause)
	}
}

// coherent reports whether no purge notice can have been missed: the connection is up,
// has not reconnected and the subscription dropped nothing since the near cache last
// knew it was complete. When one may have been missed it empties the near cache first.
// Called with mu held.
func (c *Cache) coherent() bool {
	if c.nc.Status() != nats.CONNECTED {
		c.clear("coherence")
		return false
	}
	reconnects := c.nc.Stats().Reconnects
	dropped, err := c.sub.Dropped()
	if err != nil {
		c.clear("coherence")
		return false
	}
	if reconnects != c.reconnects || dropped != c.dropped {
		c.clear("coherence")
		c.reconnects, c.dropped = reconnects, dropped
	}
	return true
}

// onNotice drops what a purge covers; a notice it cannot read empties the near cache.
// The notice is counted once it has been applied, so whoever sees the count sees its
// effect.
func (c *Cache) onNotice(msg *nats.Msg) {
	defer c.m.notices.Inc()
	n, err := cachepurge.Decode(msg.Data)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if err != nil {
		c.logger.Warn("unreadable cache purge notice: near cache emptied", "err", err)
		c.clear("purge")
		return
	}
	var drop []*list.Element
	for id, el := range c.entries {
		if n.Covers(id.Tenant, id.Component) {
			drop = append(drop, el)
		}
	}
	for _, el := range drop {
		c.remove(el, "purge")
	}
}
