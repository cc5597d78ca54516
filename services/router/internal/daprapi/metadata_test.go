package daprapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	"github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1/runtimev1connect"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// twoComponents lists components the way the component files give them: out of order,
// one without spec.version.
type twoComponents struct{ echoConverser }

func (twoComponents) List() []conversation.Component {
	return []conversation.Component{
		{Name: "openai", Type: "conversation.openai", Version: "v1"},
		{Name: "echo", Type: "conversation.echo"},
	}
}

// startDapr serves the Dapr service as the router mounts it (generated handler plus the
// Unimplemented interceptor) and GET /v1.0/metadata, over HTTP/1.1 and h2c.
func startDapr(t *testing.T) (*httptest.Server, *http.Client) {
	t.Helper()
	c := twoComponents{}
	h := New(c, c, Options{MaxBodyBytes: 1 << 16, Timeout: time.Second}, slog.New(slog.DiscardHandler))
	mux := http.NewServeMux()
	path, handler := runtimev1connect.NewDaprHandler(h, connect.WithInterceptors(Unimplemented{}))
	mux.Handle(path, handler)
	mux.HandleFunc("GET /v1.0/metadata", h.Metadata)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	return srv, &http.Client{Transport: &http.Transport{Protocols: protocols, DialContext: (&net.Dialer{}).DialContext}}
}

// TestGetMetadata: gRPC GetMetadata and GET /v1.0/metadata carry the same data in daprd's
// shapes (dapr/dapr pkg/api/universal/metadata.go and pkg/api/http/metadata.go).
func TestGetMetadata(t *testing.T) {
	t.Parallel()
	srv, hc := startDapr(t)
	client := runtimev1connect.NewDaprClient(hc, srv.URL, connect.WithGRPC())
	got, err := client.GetMetadata(t.Context(), &runtimev1.GetMetadataRequest{})
	require.NoError(t, err)
	want := &runtimev1.GetMetadataResponse{
		Id:             "parley",
		RuntimeVersion: "parley",
		RegisteredComponents: []*runtimev1.RegisteredComponents{
			{Name: "echo", Type: "conversation.echo", Capabilities: []string{}},
			{Name: "openai", Type: "conversation.openai", Version: "v1", Capabilities: []string{}},
		},
		ExtendedMetadata: map[string]string{"daprRuntimeVersion": "parley"},
	}
	require.True(t, proto.Equal(want, got), "%v", got)

	res, err := http.Get(srv.URL + "/v1.0/metadata") //nolint:noctx // a test against a local server
	require.NoError(t, err)
	defer func() { _ = res.Body.Close() }()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "application/json", res.Header.Get("Content-Type"))
	require.JSONEq(t, `{"id":"parley","runtimeVersion":"parley",
		"components":[{"name":"echo","type":"conversation.echo"},{"name":"openai","type":"conversation.openai","version":"v1"}],
		"extended":{"daprRuntimeVersion":"parley"}}`, string(body))
	var asDaprd struct{ ID string }
	require.NoError(t, json.Unmarshal(body, &asDaprd))
	require.Equal(t, got.GetId(), asDaprd.ID)
}

// TestUnimplemented calls every method of the Dapr service, with its own streaming shape,
// over gRPC: each one the router does not serve answers Unimplemented with Parley's
// message; the three it serves never do.
func TestUnimplemented(t *testing.T) {
	t.Parallel()
	srv, hc := startDapr(t)
	methods := runtimev1.File_dapr_proto_runtime_v1_dapr_proto.Services().ByName("Dapr").Methods()
	require.Equal(t, 72, methods.Len(), "the full Dapr service of v1.18.3")
	servedCount := 0
	for i := range methods.Len() {
		m := methods.Get(i)
		procedure := "/dapr.proto.runtime.v1.Dapr/" + string(m.Name())
		// gRPC sends an empty message as zero bytes, which every request type reads.
		client := connect.NewClient[emptypb.Empty, emptypb.Empty](hc, srv.URL+procedure, connect.WithGRPC())
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		var err error
		switch {
		case m.IsStreamingClient():
			// connect sends the request headers with the first message or the close.
			stream := client.CallBidiStream(ctx)
			_ = stream.CloseRequest()
			_, err = stream.Receive()
		case m.IsStreamingServer():
			var s *connect.ServerStreamForClient[emptypb.Empty]
			s, err = client.CallServerStream(ctx, connect.NewRequest(&emptypb.Empty{}))
			if err == nil {
				s.Receive()
				err = s.Err()
			}
		default:
			_, err = client.CallUnary(ctx, connect.NewRequest(&emptypb.Empty{}))
		}
		cancel()
		if served(procedure) {
			servedCount++
			require.NotEqual(t, connect.CodeUnimplemented, connect.CodeOf(err), "%s: %v", procedure, err)
			continue
		}
		require.Equal(t, connect.CodeUnimplemented, connect.CodeOf(err), "%s: %v", procedure, err)
		var ce *connect.Error
		require.ErrorAs(t, err, &ce)
		require.Equal(t, procedure+" is not implemented: Parley serves Dapr's conversation API (ConverseAlpha1, ConverseAlpha2) and GetMetadata", ce.Message())
	}
	require.Equal(t, 3, servedCount)
}
