package nearcache

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/cachepurge"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// shared is the cache behind the near cache, in memory: it counts the lookups that
// reach it, and its Put can run a hook before storing.
type shared struct {
	mu      sync.Mutex
	m       map[conversation.CacheID][]byte
	lookups int
	onPut   func()
}

func newShared() *shared { return &shared{m: map[conversation.CacheID][]byte{}} }

func (s *shared) Lookup(_ context.Context, id conversation.CacheID, _ time.Duration) (conversation.CacheLookup, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups++
	if v, ok := s.m[id]; ok {
		return conversation.CacheLookup{Found: true, Value: v}, nil
	}
	return conversation.CacheLookup{Lease: 1}, nil
}

func (s *shared) Wait(context.Context, conversation.CacheID, time.Duration) ([]byte, bool, error) {
	return nil, false, nil
}

func (s *shared) Put(_ context.Context, id conversation.CacheID, value []byte, _ time.Duration, _ uint64) error {
	if s.onPut != nil {
		s.onPut()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[id] = value
	return nil
}

func (s *shared) Release(context.Context, conversation.CacheID, uint64) error { return nil }

func (s *shared) reached() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups
}

type fixture struct {
	near   *Cache
	shared *shared
	nc     *nats.Conn
	// cache publishes purge notices, as the cache service does.
	cache *nats.Conn
	srv   *server.Server
}

func newFixture(t *testing.T, maxBytes int64, opts ...nats.Option) fixture {
	t.Helper()
	srv := natstest.RunServer(t)
	nc, err := nats.Connect(srv.ClientURL(), opts...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	sh := newShared()
	near, err := New(sh, nc, maxBytes, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, near.Close()) })
	return fixture{near: near, shared: sh, nc: nc, cache: natstest.Connect(t, srv), srv: srv}
}

func id(tenant, component, hash string) conversation.CacheID {
	return conversation.CacheID{Tenant: tenant, Component: component, Hash: hash}
}

// hit reports whether a lookup of k was answered without reaching the shared cache.
func (f fixture) hit(t *testing.T, k conversation.CacheID) bool {
	t.Helper()
	before := f.shared.reached()
	res, err := f.near.Lookup(t.Context(), k, 0)
	require.NoError(t, err)
	if f.shared.reached() == before {
		require.True(t, res.Found)
		return true
	}
	return false
}

func (f fixture) put(t *testing.T, k conversation.CacheID, value string, ttl time.Duration) {
	t.Helper()
	require.NoError(t, f.near.Put(t.Context(), k, []byte(value), ttl, 1))
}

func TestHitAfterPut(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1<<20)
	k := id("t", "c", "h1")
	require.False(t, f.hit(t, k), "nothing stored yet")
	f.put(t, k, "answer", time.Hour)
	for range 3 {
		require.True(t, f.hit(t, k))
	}
	res, err := f.near.Lookup(t.Context(), k, 0)
	require.NoError(t, err)
	require.Equal(t, "answer", string(res.Value))
	require.Equal(t, 1, f.shared.reached(), "only the first lookup reached the shared cache")
	require.InDelta(t, 4, testutil.ToFloat64(f.near.m.lookups.WithLabelValues("hit")), 0)
}

// TestBytesBound: the near cache never holds more than its bytes; the least recently
// used entry goes first, and an entry larger than the bound is not kept at all.
func TestBytesBound(t *testing.T) {
	t.Parallel()
	value := strings.Repeat("v", 1000)
	one := int64(len("t") + len("c") + len("h1") + len(value) + overhead)
	f := newFixture(t, 2*one)
	a, b, c := id("t", "c", "h1"), id("t", "c", "h2"), id("t", "c", "h3")
	f.put(t, a, value, time.Hour)
	f.put(t, b, value, time.Hour)
	require.True(t, f.hit(t, a), "a is now the most recently used")
	f.put(t, c, value, time.Hour)
	require.True(t, f.hit(t, a))
	require.True(t, f.hit(t, c))
	require.False(t, f.hit(t, b), "b was the least recently used")
	require.InDelta(t, 1, testutil.ToFloat64(f.near.m.evictions.WithLabelValues("size")), 0)
	f.near.mu.Lock()
	require.LessOrEqual(t, f.near.size, 2*one)
	f.near.mu.Unlock()

	big := id("t", "c", "big")
	f.put(t, big, strings.Repeat("v", int(2*one)), time.Hour)
	require.False(t, f.hit(t, big), "larger than the whole near cache")
	require.True(t, f.hit(t, a), "and it evicted nothing")
}

// TestExpiry: an entry lives no longer than it does in the shared cache.
func TestExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1<<20)
	k := id("t", "c", "short")
	// Long enough that a descheduled test goroutine does not see it expire before Put
	// stores it: Put refuses an entry already expired, and the eviction count below
	// would then be 0.
	f.put(t, k, "answer", time.Second)
	long := id("t", "c", "long")
	f.put(t, long, "answer", time.Hour)
	require.Eventually(t, func() bool { return !f.hit(t, k) }, 10*time.Second, 5*time.Millisecond)
	require.True(t, f.hit(t, long))
	require.InDelta(t, 1, testutil.ToFloat64(f.near.m.evictions.WithLabelValues("expired")), 0)

	gone := id("t", "c", "already")
	f.put(t, gone, "answer", -time.Second)
	require.False(t, f.hit(t, gone), "an expired answer is not kept")
}

// TestPurgeNotice: a purge published over real NATS drops exactly what it covers.
func TestPurgeNotice(t *testing.T) {
	t.Parallel()
	entries := []conversation.CacheID{id("t1", "c1", "1"), id("t1", "c2", "2"), id("t2", "c1", "3"), id("t2", "c2", "4")}
	tests := []struct {
		name     string
		notice   []byte
		wantGone []int
	}{
		{"tenant", mustEncode(t, cachepurge.Notice{Tenant: "t1"}), []int{0, 1}},
		{"component", mustEncode(t, cachepurge.Notice{Component: "c1"}), []int{0, 2}},
		{"component of a tenant", mustEncode(t, cachepurge.Notice{Tenant: "t2", Component: "c2"}), []int{3}},
		{"unknown tenant", mustEncode(t, cachepurge.Notice{Tenant: "t3"}), nil},
		{"unreadable notice empties it", []byte("garbage"), []int{0, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 1<<20)
			for _, k := range entries {
				f.put(t, k, "answer", time.Hour)
			}
			require.NoError(t, f.cache.Publish(cachepurge.Subject, tt.notice))
			require.Eventually(t, func() bool { return testutil.ToFloat64(f.near.m.notices) == 1 }, 10*time.Second, 5*time.Millisecond)
			gone := map[int]bool{}
			for _, i := range tt.wantGone {
				gone[i] = true
			}
			for i, k := range entries {
				require.Equal(t, !gone[i], f.hit(t, k), "entry %d", i)
			}
		})
	}
}

// TestPurgeDuringPut: a purge that arrives while the answer is being stored in the
// shared cache keeps it out of the near cache, so the purge is never undone here.
func TestPurgeDuringPut(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1<<20)
	k := id("t", "c", "raced")
	f.shared.onPut = func() {
		require.NoError(t, f.cache.Publish(cachepurge.Subject, mustEncode(t, cachepurge.Notice{Tenant: "t"})))
		require.Eventually(t, func() bool { return testutil.ToFloat64(f.near.m.notices) == 1 }, 10*time.Second, 5*time.Millisecond)
	}
	f.put(t, k, "answer", time.Hour)
	require.False(t, f.hit(t, k))
}

// TestMissedNotices: while the connection is down, and after it reconnected (notices
// may have been missed meanwhile), nothing stored before is served.
func TestMissedNotices(t *testing.T) {
	t.Parallel()
	t.Run("reconnected", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 1<<20, nats.ReconnectWait(10*time.Millisecond), nats.MaxReconnects(-1))
		k := id("t", "c", "h")
		f.put(t, k, "answer", time.Hour)
		require.True(t, f.hit(t, k))
		cid, err := f.nc.GetClientID()
		require.NoError(t, err)
		reconnects := f.nc.Stats().Reconnects
		require.NoError(t, f.srv.DisconnectClientByID(cid))
		require.Eventually(t, func() bool {
			return f.nc.Stats().Reconnects > reconnects && f.nc.Status() == nats.CONNECTED
		}, 10*time.Second, 5*time.Millisecond)
		require.False(t, f.hit(t, k), "emptied: a purge may have been missed")
		f.put(t, k, "answer", time.Hour)
		require.True(t, f.hit(t, k), "and in use again")
	})
	t.Run("closed", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 1<<20)
		k := id("t", "c", "h")
		f.put(t, k, "answer", time.Hour)
		f.nc.Close()
		require.False(t, f.hit(t, k))
		f.put(t, k, "answer", time.Hour)
		require.False(t, f.hit(t, k), "nothing is kept while notices cannot arrive")
	})
}

func mustEncode(t *testing.T, n cachepurge.Notice) []byte {
	t.Helper()
	b, err := n.Encode()
	require.NoError(t, err)
	return b
}
