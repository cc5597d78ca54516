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
	"sync/atomic"
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
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/identity/identitytest"
	"github.com/parleyhq/parley/libs/logging"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/services/cache/internal/app"
	"github.com/parleyhq/parley/services/cache/internal/rpc"
)

const maxEntry = 64 << 10

func key(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

const (
	tenant    = "default"
	component = "echo"
)

// startApp boots the whole cache service in process against srv and returns the
// running app and its server.
func startApp(tb testing.TB, srv *server.Server) (*fxtest.App, *rpcserver.Server) {
	tb.Helper()
	return startAppWith(tb, srv, maxEntry)
}

// startAppWith is startApp with entries of up to entryBytes.
func startAppWith(tb testing.TB, srv *server.Server, entryBytes int) (*fxtest.App, *rpcserver.Server) {
	tb.Helper()
	var server *rpcserver.Server
	fxApp := fxtest.New(tb,
		platform.Module("cache"),
		app.Module,
		fx.Replace(
			rpcserver.Config{Addr: "127.0.0.1:0", MaxMessageBytes: 4 << 20},
			identitytest.For(tb).Config(identity.Cache),
			bus.Config{URL: srv.ClientURL(), ConnectTimeout: 5 * time.Second},
			app.Config{
				Bucket: "parley_cache", MaxEntryBytes: entryBytes, MaxBucketBytes: 64 << 20, Replicas: 1,
				L1MaxBytes: 1 << 20, MaxLeaseTTL: time.Minute,
			},
			logging.Config{Level: slog.LevelError},
		),
		fx.Populate(&server),
	)
	fxApp.RequireStart()
	return fxApp, server
}

// h2cClient is a router's client of the cache: HTTP/2 over mutual TLS with a router
// certificate from the test's CA.
func h2cClient(tb testing.TB) *http.Client {
	tb.Helper()
	return identitytest.For(tb).Client(identity.Router, identity.Cache)
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
				put:    &cachev1.PutRequest{Tenant: tenant, Component: component, Key: key(proto.name + "/hit"), Value: []byte("cached response"), Ttl: hour},
				getKey: key(proto.name + "/hit"), wantFound: true, wantValue: []byte("cached response"),
			},
			{
				name:   "largest value",
				put:    &cachev1.PutRequest{Tenant: tenant, Component: component, Key: key(proto.name + "/large"), Value: bytes.Repeat([]byte{7}, maxEntry), Ttl: hour},
				getKey: key(proto.name + "/large"), wantFound: true, wantValue: bytes.Repeat([]byte{7}, maxEntry),
			},
			{name: "miss", getKey: key(proto.name + "/miss")},
			{name: "get with invalid key", getKey: "not-a-sha256", wantCode: connect.CodeInvalidArgument, wantMsg: "64 lowercase hex"},
			{
				name:     "put with invalid key",
				put:      &cachev1.PutRequest{Tenant: tenant, Component: component, Key: strings.Repeat("A", 64), Value: []byte("v"), Ttl: hour},
				wantCode: connect.CodeInvalidArgument, wantMsg: "64 lowercase hex",
			},
			{
				name:     "put without ttl",
				put:      &cachev1.PutRequest{Tenant: tenant, Component: component, Key: key("no ttl"), Value: []byte("v")},
				wantCode: connect.CodeInvalidArgument, wantMsg: "ttl is required",
			},
			{
				name:     "put with zero ttl",
				put:      &cachev1.PutRequest{Tenant: tenant, Component: component, Key: key("zero ttl"), Value: []byte("v"), Ttl: durationpb.New(0)},
				wantCode: connect.CodeInvalidArgument, wantMsg: "ttl must be positive",
			},
			{
				name:     "put with negative ttl",
				put:      &cachev1.PutRequest{Tenant: tenant, Component: component, Key: key("negative ttl"), Value: []byte("v"), Ttl: durationpb.New(-time.Minute)},
				wantCode: connect.CodeInvalidArgument, wantMsg: "ttl must be positive",
			},
			{
				name:     "put with malformed ttl",
				put:      &cachev1.PutRequest{Tenant: tenant, Component: component, Key: key("bad ttl"), Value: []byte("v"), Ttl: &durationpb.Duration{Seconds: 1, Nanos: -1}},
				wantCode: connect.CodeInvalidArgument, wantMsg: "ttl",
			},
			{
				name:     "put too large",
				put:      &cachev1.PutRequest{Tenant: tenant, Component: component, Key: key("large"), Value: make([]byte, maxEntry+1), Ttl: hour},
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
				res, err := client.Get(t.Context(), &cachev1.GetRequest{Tenant: tenant, Component: component, Key: tt.getKey})
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
		for _, name := range []string{
			`parley_cache_hits_total{layer="l1"}`, "parley_cache_misses_total", "parley_cache_puts_total",
			"parley_cache_bytes_written_total", "parley_cache_bytes_served_total", `parley_cache_errors_total{op="get"}`,
			`parley_cache_l1_evictions_total{cause="size"}`, "parley_cache_l1_bytes", `parley_cache_leases_total{result="granted"}`,
			`parley_cache_waits_total{result="value"}`, "parley_cache_purges_total",
		} {
			require.Contains(t, metrics, name)
		}
	})
}

// TestLeases drives the single-flight protocol over both protocols: the first Lookup
// gets the lease, the next is told to wait, the waiter gets the holder's value.
func TestLeases(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	fxApp, server := startApp(t, srv)
	t.Cleanup(fxApp.RequireStop)
	httpClient := h2cClient(t)

	for _, proto := range protocols {
		client := cachev1connect.NewCacheServiceClient(httpClient, server.URL(), proto.opts...)
		admin := cachev1connect.NewCacheServiceClient(identitytest.For(t).Client(identity.Admin, identity.Cache), server.URL(), proto.opts...)
		t.Run(proto.name+"/put ends the lease and wakes the waiter", func(t *testing.T) {
			t.Parallel()
			k := key(proto.name + "/lease put")
			first, err := client.Lookup(t.Context(), &cachev1.LookupRequest{Tenant: tenant, Component: component, Key: k, LeaseTtl: durationpb.New(30 * time.Second)})
			require.NoError(t, err)
			require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, first.GetOutcome())
			require.NotZero(t, first.GetLease())
			require.Equal(t, 30*time.Second, first.GetLeaseRemaining().AsDuration())

			second, err := client.Lookup(t.Context(), &cachev1.LookupRequest{Tenant: tenant, Component: component, Key: k})
			require.NoError(t, err)
			require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_BUSY, second.GetOutcome())
			require.Positive(t, second.GetLeaseRemaining().AsDuration())

			waited := make(chan *cachev1.WaitResponse, 1)
			go func() {
				res, err := client.Wait(t.Context(), &cachev1.WaitRequest{Tenant: tenant, Component: component, Key: k, MaxWait: durationpb.New(time.Minute)})
				if err != nil {
					t.Errorf("wait: %v", err)
				}
				waited <- res
			}()
			_, err = client.Put(t.Context(), &cachev1.PutRequest{
				Tenant: tenant, Component: component, Key: k, Value: []byte("answer"), Ttl: durationpb.New(time.Hour), Lease: first.GetLease(),
			})
			require.NoError(t, err)
			res := <-waited
			require.True(t, res.GetFound())
			require.Equal(t, "answer", string(res.GetValue()))

			hit, err := client.Lookup(t.Context(), &cachev1.LookupRequest{Tenant: tenant, Component: component, Key: k})
			require.NoError(t, err)
			require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_HIT, hit.GetOutcome())
			require.Equal(t, cachev1.Layer_LAYER_L1, hit.GetLayer())
			require.Equal(t, "answer", string(hit.GetValue()))
		})
		t.Run(proto.name+"/release sends the waiter to the provider", func(t *testing.T) {
			t.Parallel()
			k := key(proto.name + "/lease release")
			first, err := client.Lookup(t.Context(), &cachev1.LookupRequest{Tenant: tenant, Component: component, Key: k})
			require.NoError(t, err)
			require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, first.GetOutcome())
			waited := make(chan *cachev1.WaitResponse, 1)
			go func() {
				res, err := client.Wait(t.Context(), &cachev1.WaitRequest{Tenant: tenant, Component: component, Key: k, MaxWait: durationpb.New(time.Minute)})
				if err != nil {
					t.Errorf("wait: %v", err)
				}
				waited <- res
			}()
			_, err = client.Release(t.Context(), &cachev1.ReleaseRequest{Tenant: tenant, Component: component, Key: k, Lease: first.GetLease()})
			require.NoError(t, err)
			require.False(t, (<-waited).GetFound())
			again, err := client.Lookup(t.Context(), &cachev1.LookupRequest{Tenant: tenant, Component: component, Key: k})
			require.NoError(t, err)
			require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, again.GetOutcome(), "the released lease is free")
		})
		t.Run(proto.name+"/purge", func(t *testing.T) {
			t.Parallel()
			k := key(proto.name + "/purge")
			purgeTenant := "purge-" + proto.name
			_, err := client.Put(t.Context(), &cachev1.PutRequest{Tenant: purgeTenant, Component: component, Key: k, Value: []byte("v"), Ttl: durationpb.New(time.Hour)})
			require.NoError(t, err)
			res, err := admin.Purge(t.Context(), &cachev1.PurgeRequest{Tenant: purgeTenant})
			require.NoError(t, err)
			require.EqualValues(t, 1, res.GetPurged())
			require.EqualValues(t, 1, res.GetPurgedLocal())
			got, err := client.Get(t.Context(), &cachev1.GetRequest{Tenant: purgeTenant, Component: component, Key: k})
			require.NoError(t, err)
			require.False(t, got.GetFound())
		})
		invalid := []struct {
			name    string
			call    func(t *testing.T) error
			wantMsg string
		}{
			{"get without tenant", func(t *testing.T) error {
				_, err := client.Get(t.Context(), &cachev1.GetRequest{Component: component, Key: key("x")})
				return err
			}, "tenant and component are required"},
			{"lookup with a malformed lease ttl", func(t *testing.T) error {
				_, err := client.Lookup(t.Context(), &cachev1.LookupRequest{Tenant: tenant, Component: component, Key: key("x"), LeaseTtl: &durationpb.Duration{Seconds: 1, Nanos: -1}})
				return err
			}, "lease_ttl"},
			{"wait without max_wait", func(t *testing.T) error {
				_, err := client.Wait(t.Context(), &cachev1.WaitRequest{Tenant: tenant, Component: component, Key: key("x")})
				return err
			}, "max_wait is required"},
			{"release without a lease", func(t *testing.T) error {
				_, err := client.Release(t.Context(), &cachev1.ReleaseRequest{Tenant: tenant, Component: component, Key: key("x")})
				return err
			}, "lease is required"},
			{"purge of everything", func(t *testing.T) error {
				_, err := admin.Purge(t.Context(), &cachev1.PurgeRequest{})
				return err
			}, "purge needs a tenant, a component or both"},
		}
		for _, tt := range invalid {
			t.Run(proto.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				err := tt.call(t)
				require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "err: %v", err)
				require.ErrorContains(t, err, tt.wantMsg)
			})
		}
	}
}

// TestBatches: a batch answers each lookup or Put in order as Lookup or Put would, single
// flight holds between lookups of one batch, one call's error leaves the others
// answered, and a lookup batch's hits carry at most rpc.MaxBatchValueBytes of values.
func TestBatches(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	fxApp, server := startApp(t, srv)
	t.Cleanup(fxApp.RequireStop)
	httpClient := h2cClient(t)
	hour := durationpb.New(time.Hour)

	for _, proto := range protocols {
		client := cachev1connect.NewCacheServiceClient(httpClient, server.URL(), proto.opts...)
		lookup := func(k string) *cachev1.LookupRequest {
			return &cachev1.LookupRequest{Tenant: tenant, Component: component, Key: k}
		}
		hitKey := key(proto.name + "/batch hit")
		_, err := client.Put(t.Context(), &cachev1.PutRequest{Tenant: tenant, Component: component, Key: hitKey, Value: []byte("stored"), Ttl: hour})
		require.NoError(t, err)

		t.Run(proto.name+"/each lookup answered in order", func(t *testing.T) {
			t.Parallel()
			shared := key(proto.name + "/batch shared")
			res, err := client.LookupBatch(t.Context(), &cachev1.LookupBatchRequest{Lookups: []*cachev1.LookupRequest{
				lookup(hitKey),
				lookup(shared),
				lookup("not-a-sha256"),
				lookup(shared),
				{Tenant: tenant, Component: component, Key: key("bad ttl"), LeaseTtl: &durationpb.Duration{Seconds: 1, Nanos: -1}},
				{Component: component, Key: key("no tenant")},
			}})
			require.NoError(t, err)
			results := res.GetResults()
			require.Len(t, results, 6)

			require.Nil(t, results[0].GetError())
			require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_HIT, results[0].GetResponse().GetOutcome())
			require.Equal(t, "stored", string(results[0].GetResponse().GetValue()))

			// The same key twice in one batch: one lease, one wait, as across calls.
			outcomes := []cachev1.LookupOutcome{results[1].GetResponse().GetOutcome(), results[3].GetResponse().GetOutcome()}
			require.ElementsMatch(t, []cachev1.LookupOutcome{cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, cachev1.LookupOutcome_LOOKUP_OUTCOME_BUSY}, outcomes)

			for i, want := range map[int]string{2: "64 lowercase hex", 4: "lease_ttl", 5: "tenant and component are required"} {
				require.Nil(t, results[i].GetResponse(), "result %d", i)
				require.Equal(t, uint32(connect.CodeInvalidArgument), results[i].GetError().GetCode(), "result %d", i)
				require.Contains(t, results[i].GetError().GetMessage(), want, "result %d", i)
			}
		})
		t.Run(proto.name+"/a full batch", func(t *testing.T) {
			t.Parallel()
			batch := make([]*cachev1.LookupRequest, rpc.MaxBatch)
			for i := range batch {
				batch[i] = lookup(key(fmt.Sprintf("%s/full batch %d", proto.name, i)))
			}
			res, err := client.LookupBatch(t.Context(), &cachev1.LookupBatchRequest{Lookups: batch})
			require.NoError(t, err)
			require.Len(t, res.GetResults(), len(batch))
			leases := map[uint64]bool{}
			for i, r := range res.GetResults() {
				require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, r.GetResponse().GetOutcome(), "result %d", i)
				leases[r.GetResponse().GetLease()] = true
				// The lease answered at i is the lease of lookup i: Release takes it.
				_, err := client.Release(t.Context(), &cachev1.ReleaseRequest{Tenant: tenant, Component: component, Key: batch[i].GetKey(), Lease: r.GetResponse().GetLease()})
				require.NoError(t, err)
				again, err := client.Lookup(t.Context(), batch[i])
				require.NoError(t, err)
				require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, again.GetOutcome(), "lookup %d's lease was released", i)
			}
			require.Len(t, leases, len(batch), "every lease differs")
		})
		for _, tt := range []struct {
			name    string
			lookups int
			wantMsg string
		}{
			{"an empty batch", 0, "at least one is required"},
			{"a batch too large", rpc.MaxBatch + 1, fmt.Sprintf("lookups: %d, at most %d", rpc.MaxBatch+1, rpc.MaxBatch)},
		} {
			t.Run(proto.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				batch := make([]*cachev1.LookupRequest, tt.lookups)
				for i := range batch {
					batch[i] = lookup(key(fmt.Sprintf("%s/%s %d", proto.name, tt.name, i)))
				}
				_, err := client.LookupBatch(t.Context(), &cachev1.LookupBatchRequest{Lookups: batch})
				require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "err: %v", err)
				require.ErrorContains(t, err, tt.wantMsg)
			})
		}
	}

	for _, proto := range protocols {
		client := cachev1connect.NewCacheServiceClient(httpClient, server.URL(), proto.opts...)
		t.Run(proto.name+"/puts", func(t *testing.T) {
			t.Parallel()
			k := func(name string) string { return key(proto.name + "/batch put " + name) }
			lease, err := client.Lookup(t.Context(), &cachev1.LookupRequest{Tenant: tenant, Component: component, Key: k("leased")})
			require.NoError(t, err)
			require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, lease.GetOutcome())
			res, err := client.PutBatch(t.Context(), &cachev1.PutBatchRequest{Puts: []*cachev1.PutRequest{
				{Tenant: tenant, Component: component, Key: k("a"), Value: []byte("first"), Ttl: hour},
				{Tenant: tenant, Component: component, Key: k("no ttl"), Value: []byte("v")},
				{Tenant: tenant, Component: component, Key: k("leased"), Value: []byte("for the waiters"), Ttl: hour, Lease: lease.GetLease()},
				{Tenant: tenant, Component: component, Key: k("too large"), Value: make([]byte, maxEntry+1), Ttl: hour},
				{Tenant: tenant, Component: component, Key: k("b"), Value: []byte("second"), Ttl: hour},
			}})
			require.NoError(t, err)
			require.Len(t, res.GetResults(), 5)
			stored := map[string]string{"a": "first", "leased": "for the waiters", "b": "second"}
			refused := map[string]string{"no ttl": "ttl is required", "too large": "value too large"}
			for i, name := range []string{"a", "no ttl", "leased", "too large", "b"} {
				r := res.GetResults()[i]
				got, err := client.Get(t.Context(), &cachev1.GetRequest{Tenant: tenant, Component: component, Key: k(name)})
				require.NoError(t, err)
				if want, ok := stored[name]; ok {
					require.Nil(t, r.GetError(), name)
					require.True(t, got.GetFound(), name)
					require.Equal(t, want, string(got.GetValue()), name)
					continue
				}
				require.Equal(t, uint32(connect.CodeInvalidArgument), r.GetError().GetCode(), name)
				require.Contains(t, r.GetError().GetMessage(), refused[name], name)
				require.False(t, got.GetFound(), name)
			}
			for _, tt := range []struct {
				puts    int
				wantMsg string
			}{{0, "puts: at least one is required"}, {rpc.MaxBatch + 1, fmt.Sprintf("puts: %d, at most %d", rpc.MaxBatch+1, rpc.MaxBatch)}} {
				puts := make([]*cachev1.PutRequest, tt.puts)
				for i := range puts {
					puts[i] = &cachev1.PutRequest{Tenant: tenant, Component: component, Key: k(fmt.Sprint(i)), Value: []byte("v"), Ttl: hour}
				}
				_, err := client.PutBatch(t.Context(), &cachev1.PutBatchRequest{Puts: puts})
				require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "err: %v", err)
				require.ErrorContains(t, err, tt.wantMsg)
			}
		})
	}

	t.Run("hits past the batch's value budget are not sent", func(t *testing.T) {
		t.Parallel()
		// Entries as large as the NATS server allows, so a few fill the budget.
		bigSrv := natstest.RunServer(t)
		bigApp, bigServer := startAppWith(t, bigSrv, 1<<20)
		t.Cleanup(bigApp.RequireStop)
		client := cachev1connect.NewCacheServiceClient(h2cClient(t), bigServer.URL())
		const size = 1_000_000
		fit := rpc.MaxBatchValueBytes / size
		var batch []*cachev1.LookupRequest
		for i := range fit + 2 {
			k, value := key(fmt.Sprintf("big %d", i)), bytes.Repeat([]byte{byte(i)}, size)
			if i == fit+1 {
				value = []byte("small") // still fits after the one that did not
			}
			_, err := client.Put(t.Context(), &cachev1.PutRequest{Tenant: tenant, Component: component, Key: k, Value: value, Ttl: hour})
			require.NoError(t, err)
			batch = append(batch, &cachev1.LookupRequest{Tenant: tenant, Component: component, Key: k})
		}
		res, err := client.LookupBatch(t.Context(), &cachev1.LookupBatchRequest{Lookups: batch})
		require.NoError(t, err)
		for i, r := range res.GetResults() {
			out := r.GetResponse()
			switch {
			case i < fit:
				require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_HIT, out.GetOutcome(), "result %d", i)
				require.Len(t, out.GetValue(), size, "result %d", i)
			case i == fit:
				require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_HIT_NOT_SENT, out.GetOutcome(), "result %d", i)
				require.Empty(t, out.GetValue())
				got, err := client.Get(t.Context(), &cachev1.GetRequest{Tenant: tenant, Component: component, Key: batch[i].GetKey()})
				require.NoError(t, err)
				require.Len(t, got.GetValue(), size, "Get has what the batch did not send")
			default:
				require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_HIT, out.GetOutcome(), "result %d", i)
				require.Equal(t, "small", string(out.GetValue()))
			}
		}
	})
}

// TestShutdownEndsWaits: a replica stopping while a caller waits answers "no value" at
// once, so the caller goes to the provider and the shutdown is not held open.
func TestShutdownEndsWaits(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	fxApp, server := startApp(t, srv)
	client := cachev1connect.NewCacheServiceClient(h2cClient(t), server.URL())
	k := key("shutdown")
	first, err := client.Lookup(t.Context(), &cachev1.LookupRequest{Tenant: tenant, Component: component, Key: k})
	require.NoError(t, err)
	require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, first.GetOutcome())

	waited := make(chan *cachev1.WaitResponse, 1)
	go func() {
		res, err := client.Wait(t.Context(), &cachev1.WaitRequest{Tenant: tenant, Component: component, Key: k, MaxWait: durationpb.New(10 * time.Minute)})
		if err != nil {
			t.Errorf("wait: %v", err)
		}
		waited <- res
	}()
	require.Eventually(t, func() bool {
		return strings.Contains(httpGet(t, h2cClient(t), server.URL()+"/metrics", http.StatusOK), "parley_cache_waiting_keys 1")
	}, 10*time.Second, 10*time.Millisecond)
	fxApp.RequireStop()
	require.False(t, (<-waited).GetFound())
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
	_, err := client.Put(t.Context(), &cachev1.PutRequest{Tenant: tenant, Component: component, Key: k, Value: []byte("kept"), Ttl: durationpb.New(time.Hour)})
	require.NoError(t, err)
	first.RequireStop()

	second, secondServer := startApp(t, srv)
	t.Cleanup(second.RequireStop)
	client = cachev1connect.NewCacheServiceClient(httpClient, secondServer.URL(), connect.WithGRPC())
	res, err := client.Get(t.Context(), &cachev1.GetRequest{Tenant: tenant, Component: component, Key: k})
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
				_, err := client.Get(t.Context(), &cachev1.GetRequest{Tenant: tenant, Component: component, Key: key("x")})
				require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "err: %v", err)
				require.ErrorContains(t, err, "cache backend unavailable")
			})
			t.Run(proto.name+"/put", func(t *testing.T) {
				t.Parallel()
				_, err := client.Put(t.Context(), &cachev1.PutRequest{Tenant: tenant, Component: component, Key: key("x"), Value: []byte("v"), Ttl: durationpb.New(time.Hour)})
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

// BenchmarkRPCGet reads a 1 KiB entry through the service: serially and from parallel
// callers (throughput; HTTP/2 multiplexes them on one connection).
func BenchmarkRPCGet(b *testing.B) {
	srv := natstest.RunServer(b)
	fxApp, server := startApp(b, srv)
	b.Cleanup(fxApp.RequireStop)
	for _, proto := range protocols {
		client := cachev1connect.NewCacheServiceClient(h2cClient(b), server.URL(), proto.opts...)
		k := key("bench get " + proto.name)
		_, err := client.Put(b.Context(), &cachev1.PutRequest{Tenant: tenant, Component: component, Key: k, Value: make([]byte, 1<<10), Ttl: durationpb.New(time.Hour)})
		require.NoError(b, err)
		get := func(b *testing.B) error {
			res, err := client.Get(b.Context(), &cachev1.GetRequest{Tenant: tenant, Component: component, Key: k})
			if err != nil || !res.GetFound() {
				return fmt.Errorf("get: found=%v err=%w", res.GetFound(), err)
			}
			return nil
		}
		b.Run(proto.name, func(b *testing.B) { serial(b, get) })
		b.Run(proto.name+"/parallel", func(b *testing.B) { parallel(b, get) })
	}
}

// BenchmarkRPCLookupHit is the router's hit path in the cache service.
func BenchmarkRPCLookupHit(b *testing.B) {
	srv := natstest.RunServer(b)
	fxApp, server := startApp(b, srv)
	b.Cleanup(fxApp.RequireStop)
	client := cachev1connect.NewCacheServiceClient(h2cClient(b), server.URL())
	k := key("bench lookup")
	_, err := client.Put(b.Context(), &cachev1.PutRequest{Tenant: tenant, Component: component, Key: k, Value: make([]byte, 1<<10), Ttl: durationpb.New(time.Hour)})
	require.NoError(b, err)
	lookup := func(b *testing.B) error {
		res, err := client.Lookup(b.Context(), &cachev1.LookupRequest{Tenant: tenant, Component: component, Key: k})
		if err != nil || res.GetOutcome() != cachev1.LookupOutcome_LOOKUP_OUTCOME_HIT {
			return fmt.Errorf("lookup: %v %w", res.GetOutcome(), err)
		}
		return nil
	}
	b.Run("serial", func(b *testing.B) { serial(b, lookup) })
	b.Run("parallel", func(b *testing.B) { parallel(b, lookup) })
}

func serial(b *testing.B, call func(*testing.B) error) {
	b.ReportAllocs()
	for b.Loop() {
		if err := call(b); err != nil {
			b.Fatal(err)
		}
	}
}

// parallel runs call from 16 goroutines per GOMAXPROCS, as a loaded router would.
func parallel(b *testing.B, call func(*testing.B) error) {
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := call(b); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRPCPut stores 1 KiB entries through the service, serially and in parallel.
func BenchmarkRPCPut(b *testing.B) {
	srv := natstest.RunServer(b)
	fxApp, server := startApp(b, srv)
	b.Cleanup(fxApp.RequireStop)
	value := make([]byte, 1<<10)
	for _, proto := range protocols {
		client := cachev1connect.NewCacheServiceClient(h2cClient(b), server.URL(), proto.opts...)
		// A fixed set of keys: the bucket keeps one revision per key, so its size stays
		// bounded however long the benchmark runs.
		keys := make([]string, 1024)
		for i := range keys {
			keys[i] = key(fmt.Sprint(proto.name, i))
		}
		ttl := durationpb.New(time.Hour)
		var i atomic.Int64
		put := func(b *testing.B) error {
			req := &cachev1.PutRequest{Tenant: tenant, Component: component, Key: keys[i.Add(1)%int64(len(keys))], Value: value, Ttl: ttl}
			if _, err := client.Put(b.Context(), req); err != nil {
				return fmt.Errorf("put: %w", err)
			}
			return nil
		}
		b.Run(proto.name, func(b *testing.B) {
			b.SetBytes(int64(len(value)))
			serial(b, put)
		})
		b.Run(proto.name+"/parallel", func(b *testing.B) {
			b.SetBytes(int64(len(value)))
			parallel(b, put)
		})
	}
}
