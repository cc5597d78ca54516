package store_test

import (
	"bytes"
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

	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/cache/internal/store"
)

const maxEntry = 4 << 10

func testConfig(bucket string) store.Config {
	return store.Config{Bucket: bucket, MaxEntryBytes: maxEntry, MaxBucketBytes: 64 << 20, Replicas: 1}
}

// key returns a valid cache key derived from s.
func key(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// open starts a Store on its own connection to srv.
func open(tb testing.TB, srv *server.Server, cfg store.Config) (*store.Store, *prometheus.Registry, *nats.Conn) {
	tb.Helper()
	nc := natstest.Connect(tb, srv)
	js, err := jetstream.New(nc)
	require.NoError(tb, err)
	reg := prometheus.NewRegistry()
	s, err := store.New(js, cfg, reg)
	require.NoError(tb, err)
	require.NoError(tb, s.Start(tb.Context()))
	return s, reg, nc
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, _, _ := open(t, srv, testConfig("round_trip"))

	tests := []struct {
		name  string
		value []byte
	}{
		{"small", []byte("hello")},
		{"empty", []byte{}},
		{"binary", []byte{0, 1, 2, 0xff, '\r', '\n'}},
		{"at the limit", bytes.Repeat([]byte("x"), maxEntry)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := key(tt.name)
			require.NoError(t, s.Put(t.Context(), k, tt.value, time.Hour))
			got, found, err := s.Get(t.Context(), k)
			require.NoError(t, err)
			require.True(t, found)
			require.Equal(t, len(tt.value), len(got))
			require.True(t, bytes.Equal(tt.value, got))
		})
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

func TestPutReplaces(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, _, _ := open(t, srv, testConfig("replace"))
	k := key("replace")

	require.NoError(t, s.Put(t.Context(), k, []byte("first"), time.Hour))
	require.NoError(t, s.Put(t.Context(), k, []byte("second"), time.Hour))
	got, found, err := s.Get(t.Context(), k)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "second", string(got))
}

func TestTTLExpiry(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, _, _ := open(t, srv, testConfig("ttl"))

	tests := []struct {
		name string
		ttl  time.Duration
	}{
		{"one second", time.Second},
		{"sub-second rounds up to one second", 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			short, long := key(tt.name+"/short"), key(tt.name+"/long")
			require.NoError(t, s.Put(t.Context(), short, []byte("v"), tt.ttl))
			require.NoError(t, s.Put(t.Context(), long, []byte("v"), time.Hour))
			require.Eventually(t, func() bool {
				_, found, err := s.Get(t.Context(), short)
				return err == nil && !found
			}, 30*time.Second, 100*time.Millisecond, "entry with ttl %s never expired", tt.ttl)
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

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, reg, _ := open(t, srv, testConfig("invalid"))
	valid := key("valid")

	tests := []struct {
		name    string
		key     string
		value   []byte
		ttl     time.Duration
		wantErr error
		getToo  bool // Get must reject the key as well
	}{
		{name: "empty key", key: "", ttl: time.Hour, wantErr: store.ErrInvalidKey, getToo: true},
		{name: "short key", key: valid[:63], ttl: time.Hour, wantErr: store.ErrInvalidKey, getToo: true},
		{name: "long key", key: valid + "0", ttl: time.Hour, wantErr: store.ErrInvalidKey, getToo: true},
		{name: "upper-case hex", key: strings.ToUpper(valid), ttl: time.Hour, wantErr: store.ErrInvalidKey, getToo: true},
		{name: "not hex", key: strings.Repeat("g", 64), ttl: time.Hour, wantErr: store.ErrInvalidKey, getToo: true},
		{name: "subject wildcard", key: valid[:62] + ".>", ttl: time.Hour, wantErr: store.ErrInvalidKey, getToo: true},
		{name: "zero ttl", key: valid, ttl: 0, wantErr: store.ErrInvalidTTL},
		{name: "negative ttl", key: valid, ttl: -time.Second, wantErr: store.ErrInvalidTTL},
		{name: "one byte over the limit", key: valid, value: make([]byte, maxEntry+1), ttl: time.Hour, wantErr: store.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.ErrorIs(t, s.Put(t.Context(), tt.key, tt.value, tt.ttl), tt.wantErr)
			if tt.getToo {
				_, _, err := s.Get(t.Context(), tt.key)
				require.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
	t.Cleanup(func() {
		// Bad input is the caller's fault, not a backend error, and stores nothing.
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP parley_cache_errors_total Cache operations that failed in the backend (not bad input), by op.
# TYPE parley_cache_errors_total counter
parley_cache_errors_total{op="get"} 0
parley_cache_errors_total{op="put"} 0
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
	nc.Close() // the first replica goes away

	// A new Store on the same server re-runs CreateOrUpdateKeyValue and sees the entry.
	second, _, _ := open(t, srv, cfg)
	got, found, err := second.Get(t.Context(), k)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "kept", string(got))
}

func TestSharedBetweenStores(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("shared")
	a, _, _ := open(t, srv, cfg)
	b, _, _ := open(t, srv, cfg)

	tests := []struct {
		name       string
		writer     *store.Store
		reader     *store.Store
		value      string
		wantReader string
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
	s, reg, _ := open(t, srv, testConfig("metrics"))
	k := key("metrics")

	require.NoError(t, s.Put(t.Context(), k, []byte("12345"), time.Hour))
	require.NoError(t, s.Put(t.Context(), key("other"), []byte("678"), time.Hour))
	for _, k := range []string{k, k, key("absent")} {
		_, _, err := s.Get(t.Context(), k)
		require.NoError(t, err)
	}
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP parley_cache_bytes_written_total Value bytes stored.
# TYPE parley_cache_bytes_written_total counter
parley_cache_bytes_written_total 8
# HELP parley_cache_hits_total Get calls that found an entry.
# TYPE parley_cache_hits_total counter
parley_cache_hits_total 2
# HELP parley_cache_misses_total Get calls that found no live entry.
# TYPE parley_cache_misses_total counter
parley_cache_misses_total 1
# HELP parley_cache_puts_total Entries stored.
# TYPE parley_cache_puts_total counter
parley_cache_puts_total 2
`), "parley_cache_bytes_written_total", "parley_cache_hits_total", "parley_cache_misses_total", "parley_cache_puts_total"))
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
parley_cache_errors_total{op="put"} 1
`), "parley_cache_errors_total"))
	})
}

func TestFull(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("full")
	cfg.MaxBucketBytes = 16 << 10
	s, _, _ := open(t, srv, cfg)

	value := make([]byte, 2<<10)
	var err error
	for i := range 64 {
		if err = s.Put(t.Context(), key(fmt.Sprint(i)), value, time.Hour); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, store.ErrFull)
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
		})
	}
}

func TestNewRejectsBadLimits(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, -1} {
		_, err := store.New(nil, store.Config{Bucket: "b", MaxEntryBytes: n}, prometheus.NewRegistry())
		require.Error(t, err)
	}
	reg := prometheus.NewRegistry()
	_, err := store.New(nil, testConfig("b"), reg)
	require.NoError(t, err)
	_, err = store.New(nil, testConfig("b"), reg)
	require.Error(t, err, "registering the metrics twice must fail, not panic")
}

func TestValueAtMaxPayload(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	cfg := testConfig("max_payload")
	cfg.MaxEntryBytes = int(nc.MaxPayload()) // allowed: a value this size fits only without headers
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
parley_cache_errors_total{op="put"} 0
`), "parley_cache_errors_total"))
	})
}
