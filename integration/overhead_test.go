package integration_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
)

// serverTiming parses a Server-Timing value of the router (gateway, provider and total,
// in milliseconds) and checks that the gateway's and the provider's times make the total.
func serverTiming(t *testing.T, value string) map[string]float64 {
	t.Helper()
	got := map[string]float64{}
	for part := range strings.SplitSeq(value, ", ") {
		name, dur, ok := strings.Cut(part, ";dur=")
		require.True(t, ok, "Server-Timing %q", value)
		v, err := strconv.ParseFloat(dur, 64)
		require.NoError(t, err, "Server-Timing %q", value)
		require.GreaterOrEqual(t, v, 0.0, "Server-Timing %q", value)
		got[name] = v
	}
	require.Len(t, got, 3, "Server-Timing %q", value)
	require.Contains(t, got, "gateway")
	require.Contains(t, got, "provider")
	require.InDelta(t, got["total"], got["gateway"]+got["provider"], 0.002, "Server-Timing %q", value)
	return got
}

// TestOverheadReported: every API reports the gateway's own time apart from the
// provider's: a Server-Timing header on the Dapr HTTP API, a server-timing trailer on Dapr
// gRPC and the native API (unary and stream). A cache hit spends no provider time.
func TestOverheadReported(t *testing.T) {
	need(t)
	t.Parallel()
	n := nonce(t)
	conn := dial(t, st.RouterGRPCAddr())
	native := conversationv1connect.NewConversationServiceClient(h2cClient(), st.URL("router"))
	nativeReq := func(text string) *conversationv1.ConverseRequest {
		return &conversationv1.ConverseRequest{
			Component: "echo",
			Messages:  []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: text}},
		}
	}
	tests := []struct {
		name string
		// call runs one conversation (the same text twice: a miss, then a hit) and
		// returns its Server-Timing value.
		call func(t *testing.T, text string) string
	}{
		{"dapr http alpha1", func(t *testing.T, text string) string {
			res := post(t, "/v1.0-alpha1/conversation/echo/converse", `{"inputs":[{"content":"`+text+`"}]}`)
			require.Equal(t, http.StatusOK, res.status, res.body)
			return res.header.Get("Server-Timing")
		}},
		{"dapr http alpha2", func(t *testing.T, text string) string {
			res := post(t, "/v1.0-alpha2/conversation/echo/converse", userText(text))
			require.Equal(t, http.StatusOK, res.status, res.body)
			return res.header.Get("Server-Timing")
		}},
		{"dapr grpc alpha2", func(t *testing.T, text string) string {
			var trailer metadata.MD
			err := conn.Invoke(t.Context(), "/dapr.proto.runtime.v1.Dapr/ConverseAlpha2", &runtimev1.ConversationRequestAlpha2{
				Name: "echo",
				Inputs: []*runtimev1.ConversationInputAlpha2{{Messages: []*runtimev1.ConversationMessage{{
					MessageTypes: &runtimev1.ConversationMessage_OfUser{OfUser: &runtimev1.ConversationMessageOfUser{
						Content: []*runtimev1.ConversationMessageContent{{Text: text}},
					}},
				}}}},
			}, &runtimev1.ConversationResponseAlpha2{}, grpc.Trailer(&trailer))
			require.NoError(t, err)
			require.Len(t, trailer.Get("server-timing"), 1)
			return trailer.Get("server-timing")[0]
		}},
		{"native grpc", func(t *testing.T, text string) string {
			var trailer metadata.MD
			err := conn.Invoke(t.Context(), conversationv1connect.ConversationServiceConverseProcedure, nativeReq(text),
				&conversationv1.ConverseResponse{}, grpc.Trailer(&trailer))
			require.NoError(t, err)
			require.Len(t, trailer.Get("server-timing"), 1)
			return trailer.Get("server-timing")[0]
		}},
		{"native connect stream", func(t *testing.T, text string) string {
			stream, err := native.ConverseStream(t.Context(), &conversationv1.ConverseStreamRequest{Request: nativeReq(text)})
			require.NoError(t, err)
			defer func() { _ = stream.Close() }()
			for stream.Receive() {
			}
			require.NoError(t, stream.Err())
			return stream.ResponseTrailer().Get("Server-Timing")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			text := "overhead " + strings.ReplaceAll(tt.name, " ", "-") + " " + n
			serverTiming(t, tt.call(t, text)) // the miss
			hit := serverTiming(t, tt.call(t, text))
			require.Zero(t, hit["provider"], "a cache hit spends no provider time")
			require.Equal(t, hit["total"], hit["gateway"])
		})
	}
}
