package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
	"github.com/parleyhq/parley/integration/stack"
)

// splitAnswer is the answer of splitProvider: an e-mail address, a card number and an
// IBAN the scrubber must catch wherever the stream is cut.
const splitAnswer = "Write to bob@example.com, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, today."

// splitProvider is an OpenAI-compatible provider on a loopback port. For "split N" it
// answers splitAnswer, streamed in two chunks cut at byte N; for "hold" it streams one
// chunk and then waits for the request to end, which it reports on cancelled.
type splitProvider struct {
	srv       *httptest.Server
	cancelled chan struct{}
}

func newSplitProvider(t *testing.T) *splitProvider {
	t.Helper()
	p := &splitProvider{cancelled: make(chan struct{}, 4)}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Stream   bool `json:"stream"`
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		prompt := req.Messages[len(req.Messages)-1].Content
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"model":"split","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":9,"total_tokens":11}}`, splitAnswer)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		flusher, _ := w.(http.Flusher)
		event := func(content string, finish string) {
			c, _ := json.Marshal(content)
			f := "null"
			if finish != "" {
				f = strconv.Quote(finish)
			}
			_, _ = fmt.Fprintf(w, "data: {\"model\":\"split\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%s},\"finish_reason\":%s}]}\n\n", c, f)
			flusher.Flush()
		}
		if prompt == "hold" {
			event("first words ", "")
			select {
			case <-r.Context().Done():
				p.cancelled <- struct{}{}
			case <-time.After(30 * time.Second):
			}
			return
		}
		k, _ := strconv.Atoi(strings.TrimPrefix(prompt, "split "))
		k = min(max(k, 0), len(splitAnswer))
		event(splitAnswer[:k], "")
		event(splitAnswer[k:], "")
		event("", "stop")
		_, _ = io.WriteString(w, "data: {\"model\":\"split\",\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":9,\"total_tokens\":11}}\n\ndata: [DONE]\n\n")
		flusher.Flush()
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *splitProvider) component(name string) string {
	return stack.OpenAIComponent(name, p.srv.URL, "test-key", "split")
}

func splitRequest(prompt string) *conversationv1.ConverseRequest {
	return &conversationv1.ConverseRequest{
		Component: "split",
		Messages:  []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: prompt}},
		Scrub:     &conversationv1.Scrub{Outputs: true},
	}
}

// readStream reads a ConverseStream to its end: the content deltas joined, the messages.
func readStream(stream *connect.ServerStreamForClient[conversationv1.ConverseStreamResponse]) (string, []*conversationv1.ConverseStreamResponse) {
	var b strings.Builder
	var msgs []*conversationv1.ConverseStreamResponse
	for stream.Receive() {
		b.WriteString(stream.Msg().GetContentDelta())
		msgs = append(msgs, stream.Msg())
	}
	return b.String(), msgs
}

// TestStreamingEndToEnd streams through the real processes (router, pii-scrubber,
// provider-worker, cache, audit) from an OpenAI-compatible provider that streams:
//   - an answer with an e-mail address, a card number and an IBAN, cut at every byte offset,
//     never reaches the caller unscrubbed, and the deltas concatenated equal the unary
//     scrubbed answer;
//   - a caller that goes away mid-stream cancels the provider's HTTP request;
//   - a worker SIGKILLed mid-stream gives the caller an error, not a shorter success.
func TestStreamingEndToEnd(t *testing.T) {
	need(t)
	p := newSplitProvider(t)
	own := startOwnStack(t, map[string]string{"split.yaml": p.component("split")}, map[string]string{
		"WORKER_ENDPOINT_ALLOWLIST":      "127.0.0.1",
		"WORKER_HEARTBEAT_INTERVAL":      "100ms",
		"ROUTER_WORKER_HEARTBEAT_MISSES": "10",
	})
	client := conversationv1connect.NewConversationServiceClient(h2cClient(), own.URL("router"))

	unary, err := client.Converse(t.Context(), splitRequest("split 0"))
	require.NoError(t, err)
	want := unary.GetChoices()[0].GetMessage().GetContent()
	require.NotContains(t, want, "bob@example.com")
	require.NotContains(t, want, "4111")
	require.NotContains(t, want, "DE89")

	t.Run("pii split at every offset", func(t *testing.T) {
		var lastID string
		for k := 0; k <= len(splitAnswer); k++ {
			stream, err := client.ConverseStream(t.Context(), &conversationv1.ConverseStreamRequest{Request: splitRequest(fmt.Sprintf("split %d", k))})
			require.NoError(t, err)
			got, msgs := readStream(stream)
			require.NoError(t, stream.Err(), "cut at %d", k)
			require.Equal(t, want, got, "cut at %d", k)
			for _, m := range msgs {
				for _, raw := range []string{"bob@", "example.com", "4111 ", " 1111", "DE89", "3704", "0130 00"} {
					require.NotContains(t, m.GetContentDelta(), raw, "cut at %d", k)
				}
			}
			last := msgs[len(msgs)-1]
			require.Equal(t, "stop", last.GetFinishReason())
			require.EqualValues(t, 11, last.GetUsage().GetTotalTokens())
			require.Equal(t, "split", last.GetModel())
			if k == len(splitAnswer)/2 {
				lastID = last.GetRequestId()
			}
		}
		// One audit row for the stream, with the whole scrubbed answer and its time to
		// first token.
		row := auditRow(t, auditv1connect.NewAuditServiceClient(h2cClient(), own.URL("router")), lastID)
		response := jsonText(t, row.GetResponse())
		require.Contains(t, response, want)
		require.NotContains(t, response, "bob@example.com")
		require.Positive(t, row.GetTimeToFirstToken().AsDuration())
		require.LessOrEqual(t, row.GetTimeToFirstToken().AsDuration(), row.GetLatency().AsDuration())
		require.EqualValues(t, 11, row.GetUsage().GetTotalTokens())
	})

	t.Run("cancel reaches the provider", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		stream, err := client.ConverseStream(ctx, &conversationv1.ConverseStreamRequest{Request: &conversationv1.ConverseRequest{
			Component: "split", Messages: []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: "hold"}},
		}})
		require.NoError(t, err)
		require.True(t, stream.Receive(), "first delta: %v", stream.Err())
		require.Equal(t, "first words ", stream.Msg().GetContentDelta())
		cancel()
		select {
		case <-p.cancelled:
		case <-time.After(30 * time.Second):
			t.Fatal("the provider's request was not cancelled")
		}
	})

	// The same stream, and the same cancellation, through the gRPC-only port (grpc-go's
	// server and libs/grpcbridge).
	t.Run("gRPC port", func(t *testing.T) {
		conn := dial(t, own.RouterGRPCAddr())
		desc := &grpc.StreamDesc{ServerStreams: true}
		open := func(ctx context.Context, req *conversationv1.ConverseRequest) grpc.ClientStream {
			stream, err := conn.NewStream(ctx, desc, conversationv1connect.ConversationServiceConverseStreamProcedure)
			require.NoError(t, err)
			require.NoError(t, stream.SendMsg(&conversationv1.ConverseStreamRequest{Request: req}))
			require.NoError(t, stream.CloseSend())
			return stream
		}
		stream := open(t.Context(), splitRequest("split 5"))
		var b strings.Builder
		var last *conversationv1.ConverseStreamResponse
		for {
			m := new(conversationv1.ConverseStreamResponse)
			if err := stream.RecvMsg(m); err != nil {
				require.ErrorIs(t, err, io.EOF)
				break
			}
			b.WriteString(m.GetContentDelta())
			last = m
		}
		require.Equal(t, want, b.String())
		require.Equal(t, "stop", last.GetFinishReason())

		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		held := open(ctx, &conversationv1.ConverseRequest{
			Component: "split", Messages: []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: "hold"}},
		})
		first := new(conversationv1.ConverseStreamResponse)
		require.NoError(t, held.RecvMsg(first))
		require.Equal(t, "first words ", first.GetContentDelta())
		cancel()
		select {
		case <-p.cancelled:
		case <-time.After(30 * time.Second):
			t.Fatal("the provider's request was not cancelled")
		}
	})

	t.Run("worker killed mid-stream", func(t *testing.T) {
		stream, err := client.ConverseStream(t.Context(), &conversationv1.ConverseStreamRequest{Request: &conversationv1.ConverseRequest{
			Component: "split", Messages: []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: "hold"}},
		}})
		require.NoError(t, err)
		require.True(t, stream.Receive(), "first delta: %v", stream.Err())
		require.NoError(t, own.Kill("provider-worker"))
		for stream.Receive() {
			require.Empty(t, stream.Msg().GetFinishReason(), "no finish after the worker died")
		}
		require.Equal(t, connect.CodeUnavailable, connect.CodeOf(stream.Err()), "%v", stream.Err())
		require.ErrorContains(t, stream.Err(), "mid-stream")
	})
}
