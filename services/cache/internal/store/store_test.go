package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/cache/internal/store"
)

// TestMain fails the package when a goroutine outlives the tests: the purge watcher, the
// key watchers and the L1's maintenance must all end in Stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const maxEntry = 4 << 10

func testConfig(bucket string) store.Config {
	return store.Config{
		Bucket: bucket, MaxEntryBytes: maxEntry, MaxBucketBytes: 64 << 20, Replicas: 1,
		L1MaxBytes: 1 << 20, MaxLeaseTTL: time.Minute,
	}
}

// hash returns a valid key hash derived from s.
func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// key returns a key of tenant "t", component "c", derived from s.
func key(s string) store.Key {
	return store.Key{Tenant: "t", Component: "c", Hash: hash(s)}
}

// open starts a Store on its own connection to srv and stops it at cleanup.
func open(tb testing.TB, srv *server.Server, cfg store.Config) (*store.Store, *prometheus.Registry, *nats.Conn) {
	tb.Helper()
	nc := natstest.Connect(tb, srv)
	js, err := jetstream.New(nc)
	require.NoError(tb, err)
	reg := prometheus.NewRegistry()
	s, err := store.New(js, cfg, reg)
	require.NoError(tb, err)
	require.NoError(tb, s.Start(tb.Context()))
	tb.Cleanup(func() { require.NoError(tb, s.Stop(stopContext(tb))) })
	return s, reg, nc
}

// stopContext is for Stop in a cleanup, when tb.Context is already cancelled.
func stopContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(tb.Context()), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// metric reads one counter or gauge of reg; labels select the series.
func metric(tb testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	require.NoError(tb, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	tb.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	tests := []struct {
		name  string
		value []byte
	}{
		{"small", []byte("hello")},
		{"empty", []byte{}},
		{"binary", []byte{0, 1, 2, 0xff, '\r', '\n'}},
		{"at the limit", bytes.Repeat([]byte("x"), maxEntry)},
	}
	for _, l1 := range []int64{0, 1 << 20} {
		cfg := testConfig(fmt.Sprintf("round_trip_%d", l1))
		cfg.L1MaxBytes = l1
		s, _, _ := open(t, srv, cfg)
		for _, tt := range tests {
			t.Run(fmt.Sprintf("l1 %d/%s", l1, tt.name), func(t *testing.T) {
				t.Parallel()
				k := key(tt.name)
				require.NoError(t, s.Put(t.Context(), k, tt.value, time.Hour))
				for range 2 { // the second read comes from memory when L1 is on
					got, found, err := s.Get(t.Context(), k)
					require.NoError(t, err)
					require.True(t, found)
					require.True(t, bytes.Equal(tt.value, got))
				}
			})
		}
	}
}

func TestGetMissing(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, _, _ := open(t, srv, testConfig("missing"))

	got, found, err := s.Get(t.Context(), key("never stored"))
	require.NoError(t, err)
	require.False(t, found)
	require.Nil(t, got)
}

func TestScopesAreSeparate(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, _, _ := open(t, srv, testConfig("scopes"))
	h := hash("same hash")
	keys := []store.Key{
		{Tenant: "t1", Component: "c1", Hash: h},
		{Tenant: "t2", Component: "c1", Hash: h},
		{Tenant: "t1", Component: "c2", Hash: h},
		{Tenant: "a.b", Component: "c.d>*", Hash: h}, // any name is a valid scope
	}
	for i, k := range keys {
		require.NoError(t, s.Put(t.Context(), k, []byte(fmt.Sprint(i)), time.Hour))
	}
	for i, k := range keys {
		got, found, err := s.Get(t.Context(), k)
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, fmt.Sprint(i), string(got))
	}
}

func TestPutReplaces(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	a, _, _ := open(t, srv, testConfig("replace"))
	b, _, _ := open(t, srv, testConfig("replace"))
	k := key("replace")

	require.NoError(t, a.Put(t.Context(), k, []byte("first"), time.Hour))
	require.NoError(t, a.Put(t.Context(), k, []byte("second"), time.Hour))
	for _, s := range []*store.Store{a, b} {
		got, found, err := s.Get(t.Context(), k)
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, "second", string(got))
	}
}

func TestTTLExpiry(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	tests := []struct {
		name string
		ttl  time.Duration
	}{
		{"one second", time.Second},
		{"sub-second", 300 * time.Millisecond},
	}
	for _, l1 := range []int64{0, 1 << 20} {
		cfg := testConfig(fmt.Sprintf("ttl_%d", l1))
		cfg.L1MaxBytes = l1
		s, _, _ := open(t, srv, cfg)
		for _, tt := range tests {
			t.Run(fmt.Sprintf("l1 %d/%s", l1, tt.name), func(t *testing.T) {
				t.Parallel()
				short, long := key(tt.name+"/short"), key(tt.name+"/long")
				require.NoError(t, s.Put(t.Context(), short, []byte("v"), tt.ttl))
				require.NoError(t, s.Put(t.Context(), long, []byte("v"), time.Hour))
				require.Eventually(t, func() bool {
					_, found, err := s.Get(t.Context(), short)
					return err == nil && !found
				}, 30*time.Second, 50*time.Millisecond, "entry with ttl %s never expired", tt.ttl)
				_, found, err := s.Get(t.Context(), long)
				require.NoError(t, err)
				require.True(t, found, "an entry with a long ttl must outlive a short one")
				// A key whose entry expired can be stored again.
				require.NoError(t, s.Put(t.Context(), short, []byte("again"), time.Hour))
				got, found, err := s.Get(t.Context(), short)
				require.NoError(t, err)
				require.True(t, found)
				require.Equal(t, "again", string(got))
			})
		}
	}
}

func TestForeignValueIsAMiss(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, _, nc := open(t, srv, testConfig("foreign"))
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(t.Context(), "foreign")
	require.NoError(t, err)

	// A value without this version's header, as an older release or a hand-made put
	// would leave it under an entry's key.
	k := store.Key{Tenant: "t", Component: "c", Hash: hash("foreign")}
	_, err = kv.Put(t.Context(), tokenKey(k), []byte("raw"))
	require.NoError(t, err)
	_, found, err := s.Get(t.Context(), k)
	require.NoError(t, err)
	require.False(t, found)
}

// tokenKey is the bucket key of k, as docs/cache.md describes it.
func tokenKey(k store.Key) string {
	tok := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:8]) }
	return tok(k.Tenant) + "." + tok(k.Component) + "." + k.Hash
}

func TestBucketKeyLayout(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, _, nc := open(t, srv, testConfig("layout"))
	k := store.Key{Tenant: "default", Component: "echo", Hash: hash("layout")}
	require.NoError(t, s.Put(t.Context(), k, []byte("v"), time.Hour))

	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(t.Context(), "layout")
	require.NoError(t, err)
	e, err := kv.Get(t.Context(), tokenKey(k))
	require.NoError(t, err)
	require.Equal(t, byte(1), e.Value()[0], "format byte")
	require.Equal(t, "v", string(e.Value()[9:]))
}

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, reg, _ := open(t, srv, testConfig("invalid"))
	valid := hash("valid")
	long := strings.Repeat("x", 1025)

	tests := []struct {
		name    string
		key     store.Key
		value   []byte
		ttl     time.Duration
		wantErr error
		getToo  bool // Get, Lookup, Wait and Release must reject the key as well
	}{
		{name: "empty key", key: store.Key{Tenant: "t", Component: "c"}, ttl: time.Hour, wantErr: store.ErrInvalidKey, getToo: true},
		{name: "short key", key: store.Key{Tenant: "t", Component: "c", Hash: valid[:63]}, ttl: time.Hour, wantErr: store.ErrInvalidKey, getToo: true},
		{name: "long key", key: store.Key{Tenant: "t", Component: "c", Hash: valid + "0"}, ttl: time.Hour, wantErr: store.ErrInvalidKey, getToo: true},
		{name: "upper-case hex", key: store.Key{Tenant: "t", Component: "c", Hash: strings.ToUpper(valid)}, ttl: time.Hour, wantErr: store.ErrInvalidKey, getToo: true},
		{name: "not hex", key: store.Key{Tenant: "t", Component: "c", Hash: strings.Repeat("g", 64)}, ttl: time.Hour, wantErr: store.ErrInvalidKey, getToo: true},
		{name: "subject wildcard", key: store.Key{Tenant: "t", Component: "c", Hash: valid[:62] + ".>"}, ttl: time.Hour, wantErr: store.ErrInvalidKey, getToo: true},
		{name: "no tenant", key: store.Key{Component: "c", Hash: valid}, ttl: time.Hour, wantErr: store.ErrInvalidScope, getToo: true},
		{name: "no component", key: store.Key{Tenant: "t", Hash: valid}, ttl: time.Hour, wantErr: store.ErrInvalidScope, getToo: true},
		{name: "tenant too long", key: store.Key{Tenant: long, Component: "c", Hash: valid}, ttl: time.Hour, wantErr: store.ErrInvalidScope, getToo: true},
		{name: "zero ttl", key: key("valid"), ttl: 0, wantErr: store.ErrInvalidTTL},
		{name: "negative ttl", key: key("valid"), ttl: -time.Second, wantErr: store.ErrInvalidTTL},
		{name: "one byte over the limit", key: key("valid"), value: make([]byte, maxEntry+1), ttl: time.Hour, wantErr: store.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.ErrorIs(t, s.Put(t.Context(), tt.key, tt.value, tt.ttl), tt.wantErr)
			if !tt.getToo {
				return
			}
			_, _, err := s.Get(t.Context(), tt.key)
			require.ErrorIs(t, err, tt.wantErr)
			_, err = s.Lookup(t.Context(), tt.key, time.Second)
			require.ErrorIs(t, err, tt.wantErr)
			_, _, err = s.Wait(t.Context(), tt.key, time.Second)
			require.ErrorIs(t, err, tt.wantErr)
			require.ErrorIs(t, s.Release(t.Context(), tt.key, 1), tt.wantErr)
		})
	}
	t.Run("wait without a wait", func(t *testing.T) {
		t.Parallel()
		_, _, err := s.Wait(t.Context(), key("valid"), 0)
		require.ErrorIs(t, err, store.ErrInvalidWait)
	})
	t.Run("release without a lease", func(t *testing.T) {
		t.Parallel()
		require.ErrorIs(t, s.Release(t.Context(), key("valid"), 0), store.ErrInvalidLease)
	})
	t.Run("purge of everything", func(t *testing.T) {
		t.Parallel()
		_, err := s.Purge(t.Context(), "", "")
		require.ErrorIs(t, err, store.ErrInvalidPurge)
	})
	t.Cleanup(func() {
		// Bad input is the caller's fault, not a backend error, and stores nothing.
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP parley_cache_errors_total Cache operations that failed in the backend (not bad input), by op.
# TYPE parley_cache_errors_total counter
parley_cache_errors_total{op="get"} 0
parley_cache_errors_total{op="lookup"} 0
parley_cache_errors_total{op="purge"} 0
parley_cache_errors_total{op="put"} 0
parley_cache_errors_total{op="release"} 0
parley_cache_errors_total{op="wait"} 0
# HELP parley_cache_puts_total Entries stored.
# TYPE parley_cache_puts_total counter
parley_cache_puts_total 0
`), "parley_cache_errors_total", "parley_cache_puts_total"))
	})
}

func TestSurvivesNewStore(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("restart")
	first, _, nc := open(t, srv, cfg)
	k := key("restart")
	require.NoError(t, first.Put(t.Context(), k, []byte("kept"), time.Hour))
	require.NoError(t, first.Stop(t.Context()))
	nc.Close() // the first replica goes away, and its memory with it

	// A new Store on the same server re-runs CreateOrUpdateKeyValue and sees the entry.
	second, reg, _ := open(t, srv, cfg)
	got, found, err := second.Get(t.Context(), k)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "kept", string(got))
	require.InDelta(t, 1, metric(t, reg, "parley_cache_hits_total", "layer", "l2"), 0)
}

func TestSharedBetweenStores(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("shared")
	a, _, _ := open(t, srv, cfg)
	b, _, _ := open(t, srv, cfg)

	tests := []struct {
		name           string
		writer, reader *store.Store
		value          string
	}{
		{name: "a to b", writer: a, reader: b, value: "from a"},
		{name: "b to a", writer: b, reader: a, value: "from b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := key(tt.name)
			require.NoError(t, tt.writer.Put(t.Context(), k, []byte(tt.value), time.Hour))
			got, found, err := tt.reader.Get(t.Context(), k)
			require.NoError(t, err)
			require.True(t, found)
			require.Equal(t, tt.value, string(got))
		})
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("metrics")
	s, reg, _ := open(t, srv, cfg)
	other, _, _ := open(t, srv, cfg)
	k := key("metrics")

	require.NoError(t, s.Put(t.Context(), k, []byte("12345"), time.Hour))
	require.NoError(t, other.Put(t.Context(), key("other"), []byte("678"), time.Hour))
	// l1 (put here), l1, l2 (put by the other replica), l1, miss.
	for _, k := range []store.Key{k, k, key("other"), key("other"), key("absent")} {
		_, _, err := s.Get(t.Context(), k)
		require.NoError(t, err)
	}
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP parley_cache_bytes_served_total Value bytes returned by hits.
# TYPE parley_cache_bytes_served_total counter
parley_cache_bytes_served_total 16
# HELP parley_cache_bytes_written_total Value bytes stored.
# TYPE parley_cache_bytes_written_total counter
parley_cache_bytes_written_total 5
# HELP parley_cache_hits_total Get, Lookup and Wait calls answered with an entry, by layer: l1 (memory), l2 (bucket), wait (stored by a lease holder while waiting).
# TYPE parley_cache_hits_total counter
parley_cache_hits_total{layer="l1"} 3
parley_cache_hits_total{layer="l2"} 1
parley_cache_hits_total{layer="wait"} 0
# HELP parley_cache_misses_total Get and Lookup calls that found no live entry.
# TYPE parley_cache_misses_total counter
parley_cache_misses_total 1
# HELP parley_cache_puts_total Entries stored.
# TYPE parley_cache_puts_total counter
parley_cache_puts_total 1
`), "parley_cache_bytes_served_total", "parley_cache_bytes_written_total", "parley_cache_hits_total",
		"parley_cache_misses_total", "parley_cache_puts_total"))
	require.Positive(t, metric(t, reg, "parley_cache_l1_bytes"))
	require.InDelta(t, 2, metric(t, reg, "parley_cache_l1_entries"), 0)
}

func TestL1BoundedByBytes(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("l1_bound")
	cfg.L1MaxBytes = 32 << 10
	s, reg, _ := open(t, srv, cfg)

	value := make([]byte, maxEntry)
	for i := range 64 { // 256 KiB of values through a 32 KiB memory
		require.NoError(t, s.Put(t.Context(), key(fmt.Sprint(i)), value, time.Hour))
	}
	require.Eventually(t, func() bool {
		return metric(t, reg, "parley_cache_l1_bytes") <= float64(cfg.L1MaxBytes) &&
			metric(t, reg, "parley_cache_l1_evictions_total", "cause", "size") > 0
	}, 10*time.Second, 10*time.Millisecond)
	// What memory dropped is still in the bucket.
	for i := range 64 {
		_, found, err := s.Get(t.Context(), key(fmt.Sprint(i)))
		require.NoError(t, err)
		require.True(t, found)
	}
	require.Positive(t, metric(t, reg, "parley_cache_hits_total", "layer", "l2"))
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, reg, nc := open(t, srv, testConfig("unavailable"))
	nc.Close()

	tests := []struct {
		name string
		call func() error
	}{
		{"get", func() error { _, _, err := s.Get(t.Context(), key("x")); return err }},
		{"put", func() error { return s.Put(t.Context(), key("x"), []byte("v"), time.Hour) }},
		{"lookup", func() error { _, err := s.Lookup(t.Context(), key("x"), time.Second); return err }},
		{"release", func() error { return s.Release(t.Context(), key("x"), 7) }},
		{"purge", func() error { _, err := s.Purge(t.Context(), "t", ""); return err }},
		{"ready", func() error { return s.Ready(t.Context()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.call()
			require.Error(t, err)
			if tt.name != "ready" {
				require.ErrorIs(t, err, store.ErrUnavailable)
			}
		})
	}
	t.Cleanup(func() {
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP parley_cache_errors_total Cache operations that failed in the backend (not bad input), by op.
# TYPE parley_cache_errors_total counter
parley_cache_errors_total{op="get"} 1
parley_cache_errors_total{op="lookup"} 1
parley_cache_errors_total{op="purge"} 1
parley_cache_errors_total{op="put"} 1
parley_cache_errors_total{op="release"} 1
parley_cache_errors_total{op="wait"} 0
`), "parley_cache_errors_total"))
	})
}

func TestFull(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("full")
	cfg.MaxBucketBytes = 16 << 10
	s, _, _ := open(t, srv, cfg)

	// Large values until one does not fit, then tiny ones until not even those do.
	for _, size := range []int{2 << 10, 0} {
		var err error
		for i := range 1024 {
			if err = s.Put(t.Context(), key(fmt.Sprint(size, i)), make([]byte, size), time.Hour); err != nil {
				break
			}
		}
		require.ErrorIs(t, err, store.ErrFull)
	}
	// A full bucket takes no lease either: the caller goes to the provider without one.
	res, err := s.Lookup(t.Context(), key("no room"), time.Minute)
	require.NoError(t, err)
	require.Equal(t, store.OutcomeMiss, res.Outcome)
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	tests := []struct {
		name    string
		cfg     store.Config
		wantMsg string
	}{
		{name: "entry larger than max_payload", cfg: store.Config{Bucket: "big", MaxEntryBytes: int(nc.MaxPayload()) + 1, MaxBucketBytes: 1 << 30, Replicas: 1}, wantMsg: "max_payload"},
		{name: "bad bucket name", cfg: store.Config{Bucket: "a.b", MaxEntryBytes: 1, MaxBucketBytes: 1 << 20, Replicas: 1}, wantMsg: "a.b"},
		{name: "more replicas than servers", cfg: store.Config{Bucket: "replicas", MaxEntryBytes: 1, MaxBucketBytes: 1 << 20, Replicas: 3}, wantMsg: "replicas"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := store.New(js, tt.cfg, prometheus.NewRegistry())
			require.NoError(t, err)
			err = s.Start(t.Context())
			require.ErrorContains(t, err, tt.wantMsg)
			// Calls before a successful Start fail instead of panicking.
			_, _, err = s.Get(t.Context(), key("x"))
			require.ErrorIs(t, err, store.ErrNotStarted)
			_, err = s.Lookup(t.Context(), key("x"), time.Second)
			require.ErrorIs(t, err, store.ErrNotStarted)
			require.NoError(t, s.Stop(t.Context()))
		})
	}
}

func TestNewRejectsBadLimits(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, -1} {
		_, err := store.New(nil, store.Config{Bucket: "b", MaxEntryBytes: n}, prometheus.NewRegistry())
		require.Error(t, err)
	}
	_, err := store.New(nil, store.Config{Bucket: "b", MaxEntryBytes: 1, L1MaxBytes: -1}, prometheus.NewRegistry())
	require.Error(t, err)
	reg := prometheus.NewRegistry()
	s, err := store.New(nil, testConfig("b"), reg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Stop(stopContext(t))) })
	_, err = store.New(nil, testConfig("b"), reg)
	require.Error(t, err, "registering the metrics twice must fail, not panic")
}

func TestValueAtMaxPayload(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	cfg := testConfig("max_payload")
	cfg.MaxEntryBytes = int(nc.MaxPayload()) // allowed: a value this size fits only without headers
	cfg.L1MaxBytes = 0
	s, reg, _ := open(t, srv, cfg)

	tests := []struct {
		name    string
		size    int
		wantErr error
	}{
		{name: "a little under the limit", size: cfg.MaxEntryBytes - 1024},
		{name: "value plus headers over max_payload", size: cfg.MaxEntryBytes, wantErr: store.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := s.Put(t.Context(), key(tt.name), make([]byte, tt.size), time.Hour)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.ErrorContains(t, err, "max_payload")
				return
			}
			require.NoError(t, err)
		})
	}
	t.Cleanup(func() {
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP parley_cache_errors_total Cache operations that failed in the backend (not bad input), by op.
# TYPE parley_cache_errors_total counter
parley_cache_errors_total{op="get"} 0
parley_cache_errors_total{op="lookup"} 0
parley_cache_errors_total{op="purge"} 0
parley_cache_errors_total{op="put"} 0
parley_cache_errors_total{op="release"} 0
parley_cache_errors_total{op="wait"} 0
`), "parley_cache_errors_total"))
	})
}

// TestSurvivesNodeLoss: a bucket with three replicas on a three-node NATS cluster keeps
// serving its entries and taking writes while the node the store is connected to is down
// (a write whose ack went with the node fails within its caller's deadline; the next one
// is stored), and keeps them once the node is back.
func TestSurvivesNodeLoss(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3, nil)
	nc := c.Connect(t, nats.Name("cache-store"))
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	cfg := testConfig("node_loss")
	cfg.Replicas, cfg.L1MaxBytes = 3, 0 // every read is the bucket's
	reg := prometheus.NewRegistry()
	s, err := store.New(js, cfg, reg)
	require.NoError(t, err)
	require.NoError(t, s.Start(t.Context()))
	t.Cleanup(func() { require.NoError(t, s.Stop(stopContext(t))) })
	st, err := js.Stream(t.Context(), "KV_node_loss")
	require.NoError(t, err)
	require.Equal(t, 3, st.CachedInfo().Config.Replicas)

	before, during := key("before"), key("during")
	require.NoError(t, s.Put(t.Context(), before, []byte("1"), time.Hour))
	lost := c.Serving("cache-store")
	require.GreaterOrEqual(t, lost, 0)
	c.Stop(t, lost)
	within := func(f func(ctx context.Context) bool) func() bool {
		return func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			return f(ctx)
		}
	}
	require.Eventually(t, within(func(ctx context.Context) bool {
		v, found, err := s.Get(ctx, before)
		return err == nil && found && string(v) == "1"
	}), 30*time.Second, 50*time.Millisecond, "the entry was not served with a node down")
	require.Eventually(t, within(func(ctx context.Context) bool {
		return s.Put(ctx, during, []byte("2"), time.Hour) == nil
	}), 30*time.Second, 50*time.Millisecond, "no write was stored with a node down")
	require.NotEqual(t, lost, c.Serving("cache-store"))

	c.Start(t, lost)
	c.WaitJetStream(t)
	for k, want := range map[store.Key]string{before: "1", during: "2"} {
		v, found, err := s.Get(t.Context(), k)
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, want, string(v))
	}
}
