package rpcclient_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/libs/grpcbridge"

	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/identity/identitytest"
	"github.com/parleyhq/parley/libs/rpcclient"
	"github.com/parleyhq/parley/libs/telemetry"
)

func TestCheckURL(t *testing.T) {
	t.Parallel()
	off, err := identity.NewSource(identity.Config{Mode: identity.ModeOff}, "router", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	tests := []struct {
		name    string
		id      *identity.Source
		url     string
		wantErr string
	}{
		{name: "https under mTLS", id: identitytest.New(t).Source(identity.Router), url: "https://cache:3520"},
		{name: "http under mTLS", id: identitytest.New(t).Source(identity.Router), url: "http://cache:3520", wantErr: "ROUTER_CACHE_URL must be a https:// URL while INTERNAL_TLS=on"},
		{name: "http when off", id: off, url: "http://127.0.0.1:3520"},
		{name: "https when off", id: off, url: "https://127.0.0.1:3520", wantErr: "must be a http:// URL while INTERNAL_TLS=off"},
		{name: "no host", id: off, url: "http://", wantErr: "ROUTER_CACHE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tel, err := telemetry.New(t.Context(), "router", telemetry.Config{SampleRatio: 1})
			require.NoError(t, err)
			f, err := rpcclient.New(tel, tt.id)
			require.NoError(t, err)
			err = f.CheckURL("ROUTER_CACHE_URL", tt.url)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// peerScrubber answers with the identity of its caller.
type peerScrubber struct {
	piiv1connect.UnimplementedScrubberServiceHandler
}

func (peerScrubber) Scrub(ctx context.Context, _ *piiv1.ScrubRequest) (*piiv1.ScrubResponse, error) {
	id, ok := identity.PeerFrom(ctx)
	if !ok {
		return nil, connect.NewError(connect.CodeUnauthenticated, identity.ErrNoPeer)
	}
	return &piiv1.ScrubResponse{Results: []*piiv1.ScrubResult{{Text: id.String()}}}, nil
}

// TestRPCReachesGRPCServer: RPC's calls choose the server's grpc-go side of a split port
// (its HTTP side refuses everything here), which sees the caller's verified identity;
// HTTPClient's reach the HTTP side.
func TestRPCReachesGRPCServer(t *testing.T) {
	t.Parallel()
	pki := identitytest.New(t)
	server := pki.Source(identity.Scrubber)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	split := grpcbridge.NewSplit(ln, server.GRPCServerTLS(), identity.GRPCProtocol, 0, nil)
	go split.Run()
	t.Cleanup(func() { _ = split.Close() })
	mux := http.NewServeMux()
	mux.Handle(piiv1connect.NewScrubberServiceHandler(peerScrubber{}))
	g := grpc.NewServer(append(grpcbridge.New(server.Peers(mux), grpcbridge.Options{}).ServerOptions(), grpc.Creds(grpcbridge.Handshaken()))...)
	go func() { _ = g.Serve(split.GRPC()) }()
	t.Cleanup(g.Stop)
	refuse := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "the HTTP side", http.StatusTeapot)
	})}
	go func() { _ = refuse.Serve(split.HTTP()) }()
	t.Cleanup(func() { _ = refuse.Close() })

	tel, err := telemetry.New(t.Context(), "router", telemetry.Config{})
	require.NoError(t, err)
	f, err := rpcclient.New(tel, pki.Source(identity.Router))
	require.NoError(t, err)
	t.Cleanup(f.CloseIdleConnections)
	url := "https://" + ln.Addr().String()
	res, err := piiv1connect.NewScrubberServiceClient(f.RPC(identity.Scrubber), url, f.Options()...).
		Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"x"}})
	require.NoError(t, err)
	require.Equal(t, "spiffe://parley.test/router", res.GetResults()[0].GetText())

	_, err = piiv1connect.NewScrubberServiceClient(f.HTTPClient(identity.Scrubber), url, f.Options()...).
		Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"x"}})
	require.ErrorContains(t, err, "418")

	// A client for another identity refuses this server.
	_, err = piiv1connect.NewScrubberServiceClient(f.RPC(identity.Cache), url, f.Options()...).
		Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"x"}})
	require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "err: %v", err)
	require.ErrorContains(t, err, "want spiffe://parley.test/cache")
}

// TestRPCFallsBackToH2: a server that does not offer identity.GRPCProtocol (net/http
// with ServerTLS: an older service, a test double) negotiates h2, and RPC's calls are
// served there, with the caller's identity, as gRPC over net/http.
func TestRPCFallsBackToH2(t *testing.T) {
	t.Parallel()
	pki := identitytest.New(t)
	server := pki.Source(identity.Scrubber)
	mux := http.NewServeMux()
	mux.Handle(piiv1connect.NewScrubberServiceHandler(peerScrubber{}))
	srv := httptest.NewUnstartedServer(server.Peers(mux))
	srv.EnableHTTP2 = true
	srv.TLS = server.ServerTLS()
	srv.StartTLS()
	t.Cleanup(srv.Close)

	tel, err := telemetry.New(t.Context(), "router", telemetry.Config{})
	require.NoError(t, err)
	f, err := rpcclient.New(tel, pki.Source(identity.Router))
	require.NoError(t, err)
	t.Cleanup(f.CloseIdleConnections)
	res, err := piiv1connect.NewScrubberServiceClient(f.RPC(identity.Scrubber), srv.URL, f.Options()...).
		Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"x"}})
	require.NoError(t, err)
	require.Equal(t, "spiffe://parley.test/router", res.GetResults()[0].GetText())
}
