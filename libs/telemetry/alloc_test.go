package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TestTracingOffAllocations: with tracing off, a call without a caller's traceparent costs
// the hot path no allocation in the interceptors and the HTTP wrapper: no span work at
// all. (make test-allocations runs it without -race.)
func TestTracingOffAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are exact only without -race; make test-allocations runs it")
	}
	tel, _ := newTelemetry(t, false)
	ctx := context.Background()

	si, err := tel.ServerInterceptor()
	require.NoError(t, err)
	ci, err := tel.ClientInterceptor()
	require.NoError(t, err)
	noop := func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) { return nil, nil } //nolint:nilnil // a no-op next
	server, client := si.WrapUnary(noop), ci.WrapUnary(noop)
	req := connect.NewRequest(&emptypb.Empty{})
	require.Zero(t, testing.AllocsPerRun(100, func() { _, _ = server(ctx, req) }), "server interceptor")
	require.Zero(t, testing.AllocsPerRun(100, func() { _, _ = client(ctx, req) }), "client interceptor")

	h := tel.HTTPHandler("POST", "/v1.0-alpha2/conversation/{name}/converse", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest(http.MethodPost, "/v1.0-alpha2/conversation/echo/converse", nil)
	w := httptest.NewRecorder()
	require.Zero(t, testing.AllocsPerRun(100, func() { h.ServeHTTP(w, r) }), "HTTP handler")
}
