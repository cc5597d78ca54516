package rpcserver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/libs/grpcbridge"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/identity/identitytest"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/libs/rpcclient"
	"github.com/parleyhq/parley/libs/rpcserver"
)

// scrubber answers by the text it gets, to exercise each error path.
type scrubber struct {
	piiv1connect.UnimplementedScrubberServiceHandler
}

func (scrubber) Scrub(_ context.Context, req *piiv1.ScrubRequest) (*piiv1.ScrubResponse, error) {
	switch strings.Join(req.GetTexts(), "") {
	case "panic":
		panic("boom")
	case "leak":
		return nil, errors.New("password=hunter2 at db.internal")
	case "coded":
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("bad text"))
	}
	return &piiv1.ScrubResponse{Results: []*piiv1.ScrubResult{{Text: "ok"}}}, nil
}

func startApp(t *testing.T, ready *error) (*rpcserver.Server, *rpcclient.Factory) {
	t.Helper()
	return startAppB(t, ready, identitytest.New(t).Config("test"), rpcserver.Defaults{})
}

// startAppB boots a service "test" with identity id (mutual TLS unless off), whose
// listener is public when defaults say so.
func startAppB(t testing.TB, ready *error, id identity.Config, defaults rpcserver.Defaults) (*rpcserver.Server, *rpcclient.Factory) {
	t.Helper()
	var srv *rpcserver.Server
	var clients *rpcclient.Factory
	app := fxtest.New(t,
		platform.Module("test"),
		platform.Clients,
		fx.Supply(defaults),
		fx.Replace(rpcserver.Config{Addr: "127.0.0.1:0", ExtraAddrs: []string{"127.0.0.1:0"}, MaxMessageBytes: 1 << 10}, id),
		fx.Provide(
			rpcserver.AsRoute(func(mw *rpcserver.Middleware) rpcserver.Route {
				path, h := piiv1connect.NewScrubberServiceHandler(scrubber{}, mw.HandlerOption())
				return rpcserver.Route{Pattern: path, Handler: h, Service: piiv1connect.ScrubberServiceName}
			}),
			rpcserver.AsCheck(func() rpcserver.Check {
				return rpcserver.Check{Name: "dep", Check: func(context.Context) error { return *ready }}
			}),
		),
		fx.Populate(&srv, &clients),
	)
	app.RequireStart()
	t.Cleanup(app.RequireStop)
	return srv, clients
}

func TestServerProtocolsAndErrors(t *testing.T) {
	t.Parallel()
	var ready error
	srv, clients := startApp(t, &ready)

	for _, proto := range []struct {
		name string
		hc   connect.HTTPClient
		opts []connect.ClientOption
	}{
		{"connect", clients.HTTPClient("test"), nil},
		{"grpc", clients.HTTPClient("test"), []connect.ClientOption{connect.WithGRPC()}},
		{"grpcweb", clients.HTTPClient("test"), []connect.ClientOption{connect.WithGRPCWeb()}},
		// Internal callers: gRPC on grpc-go's transport at both ends.
		{"rpc", clients.RPC("test"), clients.Options()},
	} {
		client := piiv1connect.NewScrubberServiceClient(proto.hc, srv.URL(), proto.opts...)
		for _, tt := range scrubCases {
			t.Run(proto.name+"/"+tt.name, func(t *testing.T) {
				res, err := client.Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{tt.text}})
				if tt.wantCode == 0 {
					require.NoError(t, err)
					require.Equal(t, "ok", res.GetResults()[0].GetText())
					return
				}
				require.Equal(t, tt.wantCode, connect.CodeOf(err), "err: %v", err)
				require.ErrorContains(t, err, tt.wantMsg)
				if tt.notMsg != "" {
					require.NotContains(t, err.Error(), tt.notMsg)
				}
			})
		}
	}

	// The server keeps serving after every failure above.
	health := grpchealth.NewClient(clients.HTTPClient("test"), srv.URL(), connect.WithGRPC())
	res, err := health.Check(t.Context(), &grpchealth.CheckRequest{Service: piiv1connect.ScrubberServiceName})
	require.NoError(t, err)
	require.Equal(t, grpchealth.StatusServing, res.Status)

	body := get(t, clients.HTTPClient("test"), srv.URL()+"/metrics", http.StatusOK)
	require.Contains(t, body, `parley_rpc_server_handled_total{code="internal",procedure="/parley.pii.v1.ScrubberService/Scrub"} 8`)
	require.Contains(t, body, `parley_rpc_server_handled_total{code="ok",procedure="/parley.pii.v1.ScrubberService/Scrub"} 4`)
}

// scrubCases are the scrubber's answers by text, through the server's middleware: an
// answer, a coded error, a masked one, a recovered panic and a message over the limit
// (startApp's 1 KiB).
var scrubCases = []struct {
	name     string
	text     string
	wantCode connect.Code
	wantMsg  string
	notMsg   string
}{
	{name: "ok", text: "hello"},
	{name: "coded error passes", text: "coded", wantCode: connect.CodeInvalidArgument, wantMsg: "bad text"},
	{name: "uncoded error is masked", text: "leak", wantCode: connect.CodeInternal, wantMsg: "internal error (id ", notMsg: "hunter2"},
	{name: "panic is recovered", text: "panic", wantCode: connect.CodeInternal, wantMsg: "internal error (id ", notMsg: "boom"},
	{name: "oversized message", text: strings.Repeat("x", 2048), wantCode: connect.CodeResourceExhausted},
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	var ready error
	pki := identitytest.New(t)
	srv, _ := startAppB(t, &ready, pki.Config("test"), rpcserver.Defaults{})
	// Probes and scrapers present no certificate.
	anon := pki.Client("", "")
	require.Equal(t, "ok\n", get(t, anon, srv.URL()+"/healthz", http.StatusOK))
	require.Contains(t, get(t, anon, srv.URL()+"/readyz", http.StatusOK), `"ready"`)
	require.Contains(t, get(t, anon, srv.URL()+"/metrics", http.StatusOK), "parley_tls_certificate_not_after_seconds")
	health := grpchealth.NewClient(anon, srv.URL(), connect.WithGRPC())
	res, err := health.Check(t.Context(), &grpchealth.CheckRequest{})
	require.NoError(t, err)
	require.Equal(t, grpchealth.StatusServing, res.Status)
	ready = errors.New("database down")
	require.Contains(t, get(t, anon, srv.URL()+"/readyz", http.StatusServiceUnavailable), "database down")
}

func TestInternalServerRequiresIdentity(t *testing.T) {
	t.Parallel()
	var ready error
	pki := identitytest.New(t)
	srv, _ := startAppB(t, &ready, pki.Config("test"), rpcserver.Defaults{})
	require.True(t, strings.HasPrefix(srv.URL(), "https://"), srv.URL())

	for _, proto := range []struct {
		name string
		opts []connect.ClientOption
	}{{"connect", nil}, {"grpc", []connect.ClientOption{connect.WithGRPC()}}, {"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}}} {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			// Without a certificate: refused before any handler, as Unauthenticated.
			_, err := piiv1connect.NewScrubberServiceClient(pki.Client("", ""), srv.URL(), proto.opts...).
				Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"hello"}})
			require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), "err: %v", err)
			if proto.name == "connect" {
				require.ErrorContains(t, err, "a client certificate of the trust domain is required")
			}
			// Cleartext to the TLS port gets nowhere.
			_, err = piiv1connect.NewScrubberServiceClient(http.DefaultClient, "http://"+srv.Addr(), proto.opts...).
				Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"hello"}})
			require.Error(t, err)
		})
	}
	// Nor is the grpc-go server that a client choosing identity.GRPCProtocol reaches.
	t.Run("grpc-go", func(t *testing.T) {
		t.Parallel()
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pki.CA().CertPEM())
		anon := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, NextProtos: []string{identity.GRPCProtocol}, ServerName: "localhost", InsecureSkipVerify: true}) //nolint:gosec // an anonymous client; the server's identity is not what this checks
		hc := grpcbridge.NewClient(func(host string) (*grpc.ClientConn, error) {
			return grpc.NewClient("passthrough:///"+host, grpc.WithTransportCredentials(anon))
		})
		t.Cleanup(hc.Close)
		_, err := piiv1connect.NewScrubberServiceClient(hc, srv.URL(), connect.WithGRPC()).
			Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"hello"}})
		require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), "err: %v", err)
		require.ErrorContains(t, err, "a client certificate of the trust domain is required")
	})
	// Reflection is no open path either.
	get(t, pki.Client("", ""), srv.URL()+"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", http.StatusUnauthorized)
}

func TestPublicAndPlaintextListeners(t *testing.T) {
	t.Parallel()
	pki := identitytest.New(t)
	for _, tt := range []struct {
		name     string
		id       identity.Config
		defaults rpcserver.Defaults
	}{
		{name: "public edge", id: pki.Config("test"), defaults: rpcserver.Defaults{Public: true}},
		{name: "INTERNAL_TLS=off", id: identity.Config{Mode: identity.ModeOff}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var ready error
			srv, _ := startAppB(t, &ready, tt.id, tt.defaults)
			require.True(t, strings.HasPrefix(srv.URL(), "http://"), srv.URL())
			res, err := piiv1connect.NewScrubberServiceClient(http.DefaultClient, srv.URL()).
				Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"hello"}})
			require.NoError(t, err)
			require.Equal(t, "ok", res.GetResults()[0].GetText())
		})
	}
}

func get(t *testing.T, client *http.Client, url string, wantStatus int) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	res, err := client.Do(req)
	require.NoError(t, err)
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, wantStatus, res.StatusCode, string(b))
	return string(b)
}

// TestStopPastDeadline: a server stopped with a context already over cuts what is left
// and returns, with and without a gRPC port (a server without one once chose at random
// between waiting for none and stopping a gRPC server it did not have).
func TestStopPastDeadline(t *testing.T) {
	t.Parallel()
	id, err := identity.NewSource(identity.Config{Mode: identity.ModeOff}, "test", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	for _, tt := range []struct {
		name      string
		grpcAddrs []string
	}{
		{name: "no gRPC port"},
		{name: "a gRPC port", grpcAddrs: []string{"127.0.0.1:0"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Each stop picks again where a select could: enough stops to meet both picks.
			for range 32 {
				srv, err := rpcserver.New(rpcserver.Params{
					Config:   rpcserver.Config{Addr: "127.0.0.1:0", GRPCAddrs: tt.grpcAddrs, MaxMessageBytes: 1 << 10},
					Defaults: rpcserver.Defaults{Public: true},
					Logger:   slog.New(slog.DiscardHandler),
					Registry: prometheus.NewRegistry(),
					Identity: id,
				})
				require.NoError(t, err)
				require.NoError(t, srv.Start(t.Context()))
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				require.NotPanics(t, func() { _ = srv.Stop(ctx) })
			}
		})
	}
}
