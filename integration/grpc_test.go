package integration_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
)

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if rest, ok := strings.CutPrefix(addr, "https://"); ok {
		// An internal service: TLS trusting the development CA, no client certificate.
		addr = rest
		cfg, err := st.TLSConfig("")
		require.NoError(t, err)
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(strings.TrimPrefix(addr, "http://"), grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestDaprGRPC drives the Dapr gRPC service with a plain grpc-go client, on Dapr's gRPC
// port and on the router's main port.
func TestDaprGRPC(t *testing.T) {
	need(t)
	t.Parallel()
	for _, addr := range []string{st.RouterGRPCAddr(), strings.TrimPrefix(st.URL("router"), "http://")} {
		conn := dial(t, addr)
		t.Run(addr+"/alpha2", func(t *testing.T) {
			t.Parallel()
			n := nonce(t)
			req := &runtimev1.ConversationRequestAlpha2{
				Name: "echo",
				Inputs: []*runtimev1.ConversationInputAlpha2{{Messages: []*runtimev1.ConversationMessage{{
					MessageTypes: &runtimev1.ConversationMessage_OfUser{OfUser: &runtimev1.ConversationMessageOfUser{
						Content: []*runtimev1.ConversationMessageContent{{Text: "grpc says hi to 10.8.9.1 " + n}},
					}},
				}}}},
				ScrubPii: proto(true),
			}
			for _, wantCache := range []string{"miss", "hit"} {
				var header metadata.MD
				res := &runtimev1.ConversationResponseAlpha2{}
				err := conn.Invoke(t.Context(), "/dapr.proto.runtime.v1.Dapr/ConverseAlpha2", req, res, grpc.Header(&header))
				require.NoError(t, err)
				require.Len(t, res.GetOutputs(), 1)
				ch := res.GetOutputs()[0].GetChoices()[0]
				require.Equal(t, "grpc says hi to <IP> "+n, ch.GetMessage().GetContent())
				require.Equal(t, "stop", ch.GetFinishReason())
				require.EqualValues(t, 6, res.GetOutputs()[0].GetUsage().GetTotalTokens()/2)
				require.Equal(t, []string{wantCache}, header.Get("parley-cache"))
			}
		})
		t.Run(addr+"/alpha1", func(t *testing.T) {
			t.Parallel()
			res := &runtimev1.ConversationResponse{}
			err := conn.Invoke(t.Context(), "/dapr.proto.runtime.v1.Dapr/ConverseAlpha1", &runtimev1.ConversationRequest{
				Name: "echo-nocache", ContextID: proto("c"),
				Inputs: []*runtimev1.ConversationInput{{Content: "one"}, {Content: "two", Role: proto("assistant")}},
			}, res)
			require.NoError(t, err)
			require.Equal(t, "c", res.GetContextID())
			require.Len(t, res.GetOutputs(), 1)
			require.Equal(t, "one\ntwo", res.GetOutputs()[0].GetResult())
		})
		t.Run(addr+"/errors", func(t *testing.T) {
			t.Parallel()
			tests := []struct {
				method   string
				req      any
				wantCode codes.Code
				wantMsg  string
			}{
				{"ConverseAlpha2", &runtimev1.ConversationRequestAlpha2{Name: "nope"}, codes.InvalidArgument, "failed finding conversation component nope"},
				{"ConverseAlpha2", &runtimev1.ConversationRequestAlpha2{Name: "echo"}, codes.InvalidArgument, "failed conversing with component echo: missing inputs in request"},
				{"ConverseAlpha2", &runtimev1.ConversationRequestAlpha2{Name: "echo", Inputs: []*runtimev1.ConversationInputAlpha2{{Messages: []*runtimev1.ConversationMessage{{}}}}},
					codes.InvalidArgument, "failed conversing with component echo: invalid params: message type cannot be nil"},
				{"ConverseAlpha1", &runtimev1.ConversationRequest{Name: "orphan", Inputs: []*runtimev1.ConversationInput{{Content: "x"}}},
					codes.Internal, "failed conversing with component orphan: no worker serves the component"},
				{"GetState", &runtimev1.GetStateRequest{StoreName: "s", Key: "k"}, codes.Unimplemented,
					"/dapr.proto.runtime.v1.Dapr/GetState is not implemented: Parley serves Dapr's conversation API (ConverseAlpha1, ConverseAlpha2) and GetMetadata"},
			}
			for _, tt := range tests {
				err := conn.Invoke(t.Context(), "/dapr.proto.runtime.v1.Dapr/"+tt.method, tt.req, &runtimev1.ConversationResponse{})
				st, ok := status.FromError(err)
				require.True(t, ok, "%v", err)
				require.Equal(t, tt.wantCode, st.Code(), "%s: %v", tt.method, err)
				if tt.wantMsg != "" {
					require.Equal(t, tt.wantMsg, st.Message())
					require.Empty(t, st.Details())
				}
			}
		})
	}
}

// TestEveryServiceHealth checks grpc.health.v1, /healthz, /readyz and /metrics on every
// service port.
func TestEveryServiceHealth(t *testing.T) {
	need(t)
	t.Parallel()
	for _, name := range []string{"router", "pii-scrubber", "cache", "provider-worker", "audit"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			conn := dial(t, st.URL(name))
			res, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			require.Equal(t, healthpb.HealthCheckResponse_SERVING, res.GetStatus())
			for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "go_goroutines"} {
				res := get(t, st.URL(name)+path)
				require.Equal(t, http.StatusOK, res.status, "%s%s: %s", name, path, res.body)
				require.Contains(t, res.body, want)
			}
		})
	}
}

// TestNativeConverse drives ConversationService over Connect, gRPC and gRPC-Web.
func TestNativeConverse(t *testing.T) {
	need(t)
	t.Parallel()
	for _, proto := range []struct {
		name string
		opt  []connect.ClientOption
	}{{"connect", nil}, {"grpc", []connect.ClientOption{connect.WithGRPC()}}, {"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}}} {
		client := conversationv1connect.NewConversationServiceClient(h2cClient(), st.URL("router"), proto.opt...)
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			n := nonce(t)
			req := &conversationv1.ConverseRequest{
				Component: "echo",
				Messages: []*conversationv1.Message{
					{Role: conversationv1.Role_ROLE_SYSTEM, Content: "be brief"},
					{Role: conversationv1.Role_ROLE_USER, Content: "mail me at carol@example.net " + n},
				},
				Scrub:     &conversationv1.Scrub{Inputs: true},
				ContextId: "native-" + n,
			}
			res, err := client.Converse(t.Context(), req)
			require.NoError(t, err)
			require.Len(t, res.GetChoices(), 1)
			require.Equal(t, fmt.Sprintf("be brief\nmail me at <EMAIL_ADDRESS> %s", n), res.GetChoices()[0].GetMessage().GetContent())
			require.Equal(t, "stop", res.GetChoices()[0].GetFinishReason())
			require.Equal(t, conversationv1.Role_ROLE_ASSISTANT, res.GetChoices()[0].GetMessage().GetRole())
			require.EqualValues(t, 7, res.GetUsage().GetPromptTokens())
			require.Equal(t, "native-"+n, res.GetContextId())
			require.NotEmpty(t, res.GetRequestId())
			require.False(t, res.GetCacheHit())

			again, err := client.Converse(t.Context(), req)
			require.NoError(t, err)
			require.True(t, again.GetCacheHit())

			req.CacheMode = conversationv1.CacheMode_CACHE_MODE_BYPASS
			bypass, err := client.Converse(t.Context(), req)
			require.NoError(t, err)
			require.False(t, bypass.GetCacheHit())
		})
		t.Run(proto.name+"/errors", func(t *testing.T) {
			t.Parallel()
			tests := []struct {
				name string
				req  *conversationv1.ConverseRequest
				want connect.Code
			}{
				{"no component", &conversationv1.ConverseRequest{Messages: []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER}}}, connect.CodeInvalidArgument},
				{"no messages", &conversationv1.ConverseRequest{Component: "echo"}, connect.CodeInvalidArgument},
				{"no role", &conversationv1.ConverseRequest{Component: "echo", Messages: []*conversationv1.Message{{Content: "x"}}}, connect.CodeInvalidArgument},
				{"unknown component", &conversationv1.ConverseRequest{Component: "nope", Messages: []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER}}}, connect.CodeNotFound},
				{"no worker", &conversationv1.ConverseRequest{Component: "orphan", Messages: []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER}}}, connect.CodeUnavailable},
			}
			for _, tt := range tests {
				_, err := client.Converse(t.Context(), tt.req)
				require.Equal(t, tt.want, connect.CodeOf(err), "%s: %v", tt.name, err)
			}
			stream, err := client.ConverseStream(t.Context(), &conversationv1.ConverseStreamRequest{})
			require.NoError(t, err)
			for stream.Receive() {
				t.Fatal("no message expected")
			}
			require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(stream.Err()))
		})
		t.Run(proto.name+"/stream", func(t *testing.T) {
			t.Parallel()
			n := nonce(t)
			req := &conversationv1.ConverseStreamRequest{Request: &conversationv1.ConverseRequest{
				Component: "echo",
				Messages:  []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: "stream me " + n}},
			}}
			// The second stream is a cache hit, replayed as a stream.
			for _, wantHit := range []bool{false, true} {
				stream, err := client.ConverseStream(t.Context(), req)
				require.NoError(t, err)
				content, got := readStream(stream)
				require.NoError(t, stream.Err())
				require.Equal(t, "stream me "+n, content)
				// echo streams word by word; a hit replays the answer in one delta.
				deltas := 3
				if wantHit {
					deltas = 1
				}
				require.Len(t, got, deltas+1, "the deltas, then the finish message")
				last := got[len(got)-1]
				require.Equal(t, "stop", last.GetFinishReason())
				require.EqualValues(t, 3, last.GetUsage().GetPromptTokens())
				for _, m := range got {
					require.NotEmpty(t, m.GetRequestId())
				}
				require.Equal(t, wantHit, last.GetCacheHit())
			}
		})
	}
}

func proto[T any](v T) *T { return &v }
