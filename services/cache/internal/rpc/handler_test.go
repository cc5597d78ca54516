package rpc_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"google.golang.org/protobuf/types/known/durationpb"

	cachev1 "github.com/parleyhq/parley/gen/pb/parley/cache/v1"
	"github.com/parleyhq/parley/gen/pb/parley/cache/v1/cachev1connect"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/logging"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/services/cache/internal/app"
)

const maxEntry = 64 << 10

func key(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// startApp boots the whole cache service in process against srv and returns the
// running app and its server.
func startApp(tb testing.TB, srv *server.Server) (*fxtest.App, *rpcserver.Server) {
	tb.Helper()
	var server *rpcserver.Server
	fxApp := fxtest.New(tb,
		platform.Module("cache"),
		app.Module,
		fx.Replace(
			rpcserver.Config{Addr: "127.0.0.1:0", MaxMessageBytes: 4 << 20},
			bus.Config{URL: srv.ClientURL(), ConnectTimeout: 5 * time.Second},
			app.Config{Bucket: "parley_cache", MaxEntryBytes: maxEntry, MaxBucketBytes: 64 << 20, Replicas: 1},
			logging.Config{Level: slog.LevelError},
		),
		fx.Populate(&server),
	)
	fxApp.RequireStart()
	return fxApp, server
}

// h2cClient speaks cleartext HTTP/2, as gRPC needs.
func h2cClient(tb testing.TB) *http.Client {
	tb.Helper()
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	transport := &http.Transport{Protocols: protocols}
	tb.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport}
}

var protocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"connect", nil},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
}

func TestCacheService(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	fxApp, server := startApp(t, srv)
	t.Cleanup(fxApp.RequireStop)
	httpClient := h2cClient(t)

	for _, proto := range protocols {
		client := cachev1connect.NewCacheServiceClient(httpClient, server.URL(), proto.opts...)
		hour := durationpb.New(time.Hour)
		tests := []struct {
			name      string
			put       *cachev1.PutRequest // nil: only Get
			getKey    string              // empty: only Put
			wantCode  connect.Code        // of the first call
			wantMsg   string
			wantFound bool
			wantValue []byte
		}{
			{
				name:   "put then get",
				put:    &cachev1.PutRequest{Key: key(proto.name + "/hit"), Value: []byte("cached response"), Ttl: hour},
				getKey: key(proto.name + "/hit"), wantFound: true, wantValue: []byte("cached response"),
			},
			{
				name:   "largest value",
				put:    &cachev1.PutRequest{Key: key(proto.name + "/large"), Value: bytes.Repeat([]byte{7}, maxEntry), Ttl: hour},
				getKey: key(proto.name + "/large"), wantFound: true, wantValue: bytes.Repeat([]byte{7}, maxEntry),
			},
			{name: "miss", getKey: key(proto.name + "/miss")},
			{name: "get with invalid key", getKey: "not-a-sha256", wantCode: connect.CodeInvalidArgument, wantMsg: "64 lowercase hex"},
			{
				name:     "put with invalid key",
				put:      &cachev1.PutRequest{Key: strings.Repeat("A", 64), Value: []byte("v"), Ttl: hour},
				wantCode: connect.CodeInvalidArgument, wantMsg: "64 lowercase hex",
			},
			{
				name:     "put without ttl",
				put:      &cachev1.PutRequest{Key: key("no ttl"), Value: []byte("v")},
				wantCode: connect.CodeInvalidArgument, wantMsg: "ttl is required",
			},
			{
				name:     "put with zero ttl",
				put:      &cachev1.PutRequest{Key: key("zero ttl"), Value: []byte("v"), Ttl: durationpb.New(0)},
				wantCode: connect.CodeInvalidArgument, wantMsg: "ttl must be positive",
			},
			{
				name:     "put with negative ttl",
				put:      &cachev1.PutRequest{Key: key("negative ttl"), Value: []byte("v"), Ttl: durationpb.New(-time.Minute)},
				wantCode: connect.CodeInvalidArgument, wantMsg: "ttl must be positive",
			},
			{
				name:     "put with malformed ttl",
				put:      &cachev1.PutRequest{Key: key("bad ttl"), Value: []byte("v"), Ttl: &durationpb.Duration{Seconds: 1, Nanos: -1}},
				wantCode: connect.CodeInvalidArgument, wantMsg: "ttl",
			},
			{
				name:     "put too large",
				put:      &cachev1.PutRequest{Key: key("large"), Value: make([]byte, maxEntry+1), Ttl: hour},
				wantCode: connect.CodeInvalidArgument, wantMsg: fmt.Sprintf("value too large: %d bytes, limit %d", maxEntry+1, maxEntry),
			},
		}
		for _, tt := range tests {
			t.Run(proto.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				if tt.put != nil {
					_, err := client.Put(t.Context(), tt.put)
					if tt.wantCode != 0 {
						require.Equal(t, tt.wantCode, connect.CodeOf(err), "err: %v", err)
						require.ErrorContains(t, err, tt.wantMsg)
						return
					}
					require.NoError(t, err)
				}
				if tt.getKey == "" {
					return
				}
				res, err := client.Get(t.Context(), &cachev1.GetRequest{Key: tt.getKey})
				if tt.wantCode != 0 {
					require.Equal(t, tt.wantCode, connect.CodeOf(err), "err: %v", err)
					require.ErrorContains(t, err, tt.wantMsg)
					return
				}
				require.NoError(t, err)
				require.Equal(t, tt.wantFound, res.GetFound())
				require.True(t, bytes.Equal(tt.wantValue, res.GetValue()), "value differs")
			})
		}
	}

	t.Run("ready and metrics", func(t *testing.T) {
		t.Parallel()
		require.Contains(t, httpGet(t, httpClient, server.URL()+"/readyz", http.StatusOK), "ready")
		metrics := httpGet(t, httpClient, server.URL()+"/metrics", http.StatusOK)
		for _, name := range []string{"parley_cache_hits_total", "parley_cache_misses_total", "parley_cache_puts_total", "parley_cache_bytes_written_total", `parley_cache_errors_total{op="get"}`} {
			require.Contains(t, metrics, name)
		}
	})
}

// TestEntriesOutliveTheApp checks that one replica's entries survive its restart and
// are seen by another replica on the same NATS.
func TestEntriesOutliveTheApp(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	httpClient := h2cClient(t)
	k := key("outlive")

	first, firstServer := startApp(t, srv)
	client := cachev1connect.NewCacheServiceClient(httpClient, firstServer.URL())
	_, err := client.Put(t.Context(), &cachev1.PutRequest{Key: k, Value: []byte("kept"), Ttl: durationpb.New(time.Hour)})
	require.NoError(t, err)
	first.RequireStop()

	second, secondServer := startApp(t, srv)
	t.Cleanup(second.RequireStop)
	client = cachev1connect.NewCacheServiceClient(httpClient, secondServer.URL(), connect.WithGRPC())
	res, err := client.Get(t.Context(), &cachev1.GetRequest{Key: k})
	require.NoError(t, err)
	require.True(t, res.GetFound())
	require.Equal(t, "kept", string(res.GetValue()))
}

func TestNATSDown(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	fxApp, server := startApp(t, srv)
	httpClient := h2cClient(t)
	srv.Shutdown()
	srv.WaitForShutdown()

	t.Run("calls", func(t *testing.T) {
		for _, proto := range protocols {
			client := cachev1connect.NewCacheServiceClient(httpClient, server.URL(), proto.opts...)
			t.Run(proto.name+"/get", func(t *testing.T) {
				t.Parallel()
				_, err := client.Get(t.Context(), &cachev1.GetRequest{Key: key("x")})
				require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "err: %v", err)
				require.ErrorContains(t, err, "cache backend unavailable")
			})
			t.Run(proto.name+"/put", func(t *testing.T) {
				t.Parallel()
				_, err := client.Put(t.Context(), &cachev1.PutRequest{Key: key("x"), Value: []byte("v"), Ttl: durationpb.New(time.Hour)})
				require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "err: %v", err)
			})
		}
	})
	t.Run("readiness fails", func(t *testing.T) {
		body := httpGet(t, httpClient, server.URL()+"/readyz", http.StatusServiceUnavailable)
		require.Contains(t, body, "cache_bucket")
	})

	// The bus library drains NATS on stop; a connection that is still reconnecting
	// cannot drain, which is the one stop error expected here.
	if err := fxApp.Stop(t.Context()); err != nil {
		require.ErrorIs(t, err, nats.ErrConnectionReconnecting)
	}
}

func httpGet(tb testing.TB, client *http.Client, url string, wantStatus int) string {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), http.MethodGet, url, nil)
	require.NoError(tb, err)
	res, err := client.Do(req)
	require.NoError(tb, err)
	defer func() { _ = res.Body.Close() }()
	body, err := io.ReadAll(res.Body)
	require.NoError(tb, err)
	require.Equal(tb, wantStatus, res.StatusCode, "body: %s", body)
	return string(body)
}

func BenchmarkRPCGet(b *testing.B) {
	srv := natstest.RunServer(b)
	fxApp, server := startApp(b, srv)
	b.Cleanup(fxApp.RequireStop)
	for _, proto := range protocols {
		client := cachev1connect.NewCacheServiceClient(h2cClient(b), server.URL(), proto.opts...)
		k := key("bench get " + proto.name)
		_, err := client.Put(b.Context(), &cachev1.PutRequest{Key: k, Value: make([]byte, 1<<10), Ttl: durationpb.New(time.Hour)})
		require.NoError(b, err)
		b.Run(proto.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := client.Get(b.Context(), &cachev1.GetRequest{Key: k})
				if err != nil || !res.GetFound() {
					b.Fatalf("get: found=%v err=%v", res.GetFound(), err)
				}
			}
		})
	}
}

func BenchmarkRPCPut(b *testing.B) {
	srv := natstest.RunServer(b)
	fxApp, server := startApp(b, srv)
	b.Cleanup(fxApp.RequireStop)
	value := make([]byte, 1<<10)
	for _, proto := range protocols {
		client := cachev1connect.NewCacheServiceClient(h2cClient(b), server.URL(), proto.opts...)
		b.Run(proto.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(value)))
			// A fixed set of keys: the bucket keeps one revision per key, so its size stays
			// bounded however long the benchmark runs.
			keys := make([]string, 1024)
			for i := range keys {
				keys[i] = key(fmt.Sprint(proto.name, i))
			}
			ttl := durationpb.New(time.Hour)
			i := 0
			for b.Loop() {
				i++
				req := &cachev1.PutRequest{Key: keys[i%len(keys)], Value: value, Ttl: ttl}
				if _, err := client.Put(b.Context(), req); err != nil {
					b.Fatalf("put: %v", err)
				}
			}
		})
	}
}
