package rpcserver_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/rpcserver"
)

// TestGRPCPort: an RPC_GRPC_ADDRS address serves the same routes to gRPC clients on
// grpc-go's server, with the same middleware (error masking, panics), limits, health and
// reflection; it speaks nothing but gRPC.
func TestGRPCPort(t *testing.T) {
	t.Parallel()
	var ready error
	srv, clients := startAppB(t, &ready, identity.Config{Mode: identity.ModeOff},
		rpcserver.Defaults{Public: true, GRPCAddrs: []string{"127.0.0.1:0"}})
	require.NotEmpty(t, srv.GRPCAddr())
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	for _, tt := range scrubCases {
		t.Run(tt.name, func(t *testing.T) {
			res := new(piiv1.ScrubResponse)
			err := conn.Invoke(t.Context(), piiv1connect.ScrubberServiceScrubProcedure, &piiv1.ScrubRequest{Texts: []string{tt.text}}, res)
			// gRPC's codes and Connect's share their numbers.
			require.Equal(t, codes.Code(tt.wantCode), status.Code(err), "err: %v", err) //nolint:gosec // codes 0 to 16
			if tt.wantCode == 0 {
				require.Equal(t, "ok", res.GetResults()[0].GetText())
				return
			}
			require.Contains(t, status.Convert(err).Message(), tt.wantMsg)
			if tt.notMsg != "" {
				require.NotContains(t, err.Error(), tt.notMsg)
			}
		})
	}

	health, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: piiv1connect.ScrubberServiceName})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, health.GetStatus())

	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	require.NoError(t, err)
	require.NoError(t, refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}))
	listed, err := refl.Recv()
	require.NoError(t, err)
	var names []string
	for _, s := range listed.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	require.Contains(t, names, piiv1connect.ScrubberServiceName)
	require.NoError(t, refl.CloseSend())

	// The calls above were served by the same middleware, so counted by the same metrics.
	body := get(t, clients.HTTPClient("test"), srv.URL()+"/metrics", http.StatusOK)
	require.Contains(t, body, `parley_rpc_server_handled_total{code="internal",procedure="/parley.pii.v1.ScrubberService/Scrub"} 2`)
	require.Contains(t, body, `parley_rpc_server_handled_total{code="ok",procedure="/parley.pii.v1.ScrubberService/Scrub"} 1`)

	// HTTP/1.1 and the Connect protocol are the main address's: the gRPC port refuses them.
	res, err := http.Post("http://"+srv.GRPCAddr()+piiv1connect.ScrubberServiceScrubProcedure, "application/json", strings.NewReader(`{"texts":["hello"]}`))
	if err == nil {
		_ = res.Body.Close()
		require.NotEqual(t, http.StatusOK, res.StatusCode)
	}
}
