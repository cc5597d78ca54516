package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
	"github.com/parleyhq/parley/integration/fakeprovider"
	"github.com/parleyhq/parley/integration/otlpsink"
)

// TestOneTracePerConversation runs conversations through the real processes exporting to
// an in-process OTLP receiver, and checks the trace each one leaves: one trace id shared
// by spans from every service, continuing the caller's traceparent; the parent/child
// structure router → scrubber, cache, dispatch → worker → provider HTTP call, and audit
// publish → audit write (linked), for a unary and a streamed (ConverseStream)
// conversation; the GenAI attributes; the trace id in the audit row;
// and no prompt text in any span.
func TestOneTracePerConversation(t *testing.T) {
	need(t)
	t.Parallel()
	sink, err := otlpsink.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sink.Close(context.Background()) })
	fake := newScriptedFake(t, fakeprovider.Options{}, nil)
	own := startOwnStack(t, map[string]string{
		"traced.yaml": fake.component("traced") + "  - name: responseCacheTTL\n    value: 10m\n",
	}, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": sink.Endpoint(),
		"OTEL_BSP_SCHEDULE_DELAY":     "100",
	})
	// A word that exists nowhere else: if it shows up in a span, prompt text leaked.
	secret := "quokka" + randomHex(t, 8)
	router := own.URL("router")

	t.Run("dapr http", func(t *testing.T) {
		traceID, parentID := randomHex(t, 16), randomHex(t, 8)
		body := fmt.Sprintf(`{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"write to dave@example.org about %s"}]}}],"scrubPii":true}],"scrubPii":true}`, secret)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, router+"/v1.0-alpha2/conversation/traced/converse", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
		resp, err := h2cClient().Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))

		// Each service exports its spans on its own schedule: wait for every span asserted
		// below, and for a scrubber span under each of the router's scrub calls.
		want := [][2]string{
			{"audit", "process parley.audit.conversation"},
			{"router", "POST /v1.0-alpha2/conversation/{name}/converse"},
			{"router", "chat fake-model"},
			{"router", "parley.pii.v1.ScrubberService/Scrub"},
			{"router", "parley.cache.v1.CacheService/Lookup"},
			{"cache", "parley.cache.v1.CacheService/Lookup"},
			{"router", "send parley.provider.traced"},
			{"provider-worker", "process parley.provider.traced"},
			{"provider-worker", "chat fake-model"},
			{"provider-worker", "POST"},
			{"router", "send parley.audit.conversation"},
		}
		tr := waitTraceFor(t, sink, traceID, func(tr traceSpans) bool {
			return tr.has(want) && tr.count("pii-scrubber", "parley.pii.v1.ScrubberService/Scrub") >= tr.count("router", "parley.pii.v1.ScrubberService/Scrub")
		})
		t.Logf("the conversation's trace:\n%s", tr)
		server := tr.one(t, "router", "POST /v1.0-alpha2/conversation/{name}/converse", parentID)
		chat := tr.one(t, "router", "chat fake-model", server.SpanID)
		// Inputs, outputs and perhaps the audit copies are scrubbed: each call is the
		// router's client span under the conversation, with the scrubber's server span under it.
		scrubs := tr.all("router", "parley.pii.v1.ScrubberService/Scrub")
		require.NotEmpty(t, scrubs, "scrubber calls in:\n%s", tr)
		for _, s := range scrubs {
			require.Equal(t, chat.SpanID, s.ParentSpanID)
			tr.one(t, "pii-scrubber", "parley.pii.v1.ScrubberService/Scrub", s.SpanID)
		}
		lookup := tr.one(t, "router", "parley.cache.v1.CacheService/Lookup", chat.SpanID)
		tr.one(t, "cache", "parley.cache.v1.CacheService/Lookup", lookup.SpanID)
		send := tr.one(t, "router", "send parley.provider.traced", chat.SpanID)
		process := tr.one(t, "provider-worker", "process parley.provider.traced", send.SpanID)
		call := tr.one(t, "provider-worker", "chat fake-model", process.SpanID)
		httpCall := tr.one(t, "provider-worker", "POST", call.SpanID)
		publish := tr.one(t, "router", "send parley.audit.conversation", chat.SpanID)
		write := tr.one(t, "audit", "process parley.audit.conversation", publish.SpanID)
		require.Equal(t, []otlpsink.Link{{TraceID: traceID, SpanID: publish.SpanID}}, write.Links, "the audit write links to the publish")
		require.Equal(t, "200", httpCall.Attributes["http.response.status_code"])

		for _, s := range []otlpsink.Span{chat, call} {
			a := s.Attributes
			require.Equal(t, "chat", a["gen_ai.operation.name"], s.Service)
			require.Equal(t, "openai", a["gen_ai.system"], s.Service)
			require.Equal(t, "fake-model", a["gen_ai.request.model"], s.Service)
			require.NotEmpty(t, a["gen_ai.response.model"], s.Service)
			require.NotContains(t, []string{"", "0"}, a["gen_ai.usage.input_tokens"], s.Service)
			require.NotContains(t, []string{"", "0"}, a["gen_ai.usage.output_tokens"], s.Service)
			require.Equal(t, "[stop]", a["gen_ai.response.finish_reasons"], s.Service)
		}
		requestID := chat.Attributes["parley.request_id"]
		require.NotEmpty(t, requestID)
		requireAuditTraceID(t, router, requestID, traceID)

		// The same question again is a cache hit: no dispatch, still one trace.
		req2, err := http.NewRequestWithContext(t.Context(), http.MethodPost, router+"/v1.0-alpha2/conversation/traced/converse", strings.NewReader(body))
		require.NoError(t, err)
		req2.Header.Set("Content-Type", "application/json")
		trace2 := randomHex(t, 16)
		req2.Header.Set("traceparent", "00-"+trace2+"-"+parentID+"-01")
		resp2, err := h2cClient().Do(req2)
		require.NoError(t, err)
		_ = resp2.Body.Close()
		tr2 := waitTrace(t, sink, trace2, [2]string{"audit", "process parley.audit.conversation"}, [2]string{"router", "chat fake-model"})
		require.Equal(t, "true", tr2.one(t, "router", "chat fake-model", "").Attributes["parley.cache_hit"])
		require.Zero(t, tr2.count("router", "send parley.provider.traced"))
	})

	t.Run("native grpc", func(t *testing.T) {
		traceID := randomHex(t, 16)
		setTraceparent := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("traceparent", "00-"+traceID+"-"+randomHex(t, 8)+"-01")
				return next(ctx, req)
			}
		})
		client := conversationv1connect.NewConversationServiceClient(h2cClient(), router, connect.WithGRPC(), connect.WithInterceptors(setTraceparent))
		res, err := client.Converse(t.Context(), &conversationv1.ConverseRequest{
			Component: "traced",
			Messages:  []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: "native " + secret}},
			CacheMode: conversationv1.CacheMode_CACHE_MODE_BYPASS,
		})
		require.NoError(t, err)
		tr := waitTrace(t, sink, traceID,
			[2]string{"audit", "process parley.audit.conversation"},
			[2]string{"router", "parley.conversation.v1.ConversationService/Converse"},
			[2]string{"provider-worker", "process parley.provider.traced"})
		for _, service := range []string{"router", "provider-worker", "audit"} {
			require.NotZero(t, tr.countService(service), "spans of %s in the trace", service)
		}
		requireAuditTraceID(t, router, res.GetRequestId(), traceID)
	})

	t.Run("native stream", func(t *testing.T) {
		// A streamed conversation leaves the same tree as a unary one: the dispatch's
		// producer span, the worker's process, chat and provider HTTP spans under it.
		traceID, parentID := randomHex(t, 16), randomHex(t, 8)
		ctx, call := connect.NewClientContext(t.Context())
		call.RequestHeader().Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
		client := conversationv1connect.NewConversationServiceClient(h2cClient(), router, connect.WithGRPC())
		stream, err := client.ConverseStream(ctx, &conversationv1.ConverseStreamRequest{Request: &conversationv1.ConverseRequest{
			Component: "traced",
			Messages:  []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: "native stream " + secret}},
			CacheMode: conversationv1.CacheMode_CACHE_MODE_BYPASS,
		}})
		require.NoError(t, err)
		got, msgs := readStream(stream)
		require.NoError(t, stream.Err())
		require.NotEmpty(t, got)
		requestID := msgs[len(msgs)-1].GetRequestId()

		// The router's server and chat spans end with the stream, and its exporter may send
		// them after the audit service's span arrives: wait for each span asserted below.
		tr := waitTrace(t, sink, traceID,
			[2]string{"audit", "process parley.audit.conversation"},
			[2]string{"router", "parley.conversation.v1.ConversationService/ConverseStream"},
			[2]string{"router", "chat fake-model"},
			[2]string{"router", "send parley.provider.traced"},
			[2]string{"router", "send parley.audit.conversation"},
			[2]string{"provider-worker", "process parley.provider.traced"},
			[2]string{"provider-worker", "chat fake-model"},
			[2]string{"provider-worker", "POST"})
		t.Logf("the streamed conversation's trace:\n%s", tr)
		server := tr.one(t, "router", "parley.conversation.v1.ConversationService/ConverseStream", parentID)
		chat := tr.one(t, "router", "chat fake-model", server.SpanID)
		send := tr.one(t, "router", "send parley.provider.traced", chat.SpanID)
		require.Empty(t, send.Attributes["error.type"])
		process := tr.one(t, "provider-worker", "process parley.provider.traced", send.SpanID)
		workerChat := tr.one(t, "provider-worker", "chat fake-model", process.SpanID)
		httpCall := tr.one(t, "provider-worker", "POST", workerChat.SpanID)
		require.Equal(t, "200", httpCall.Attributes["http.response.status_code"])
		publish := tr.one(t, "router", "send parley.audit.conversation", chat.SpanID)
		tr.one(t, "audit", "process parley.audit.conversation", publish.SpanID)
		for _, s := range []otlpsink.Span{chat, workerChat} {
			a := s.Attributes
			require.Equal(t, "chat", a["gen_ai.operation.name"], s.Service)
			require.NotContains(t, []string{"", "0"}, a["gen_ai.usage.output_tokens"], s.Service)
			require.Equal(t, "[stop]", a["gen_ai.response.finish_reasons"], s.Service)
		}
		require.Equal(t, requestID, chat.Attributes["parley.request_id"])
		requireAuditTraceID(t, router, requestID, traceID)
	})

	t.Run("dapr grpc", func(t *testing.T) {
		// As a Dapr SDK calls daprd: grpc-go on Dapr's gRPC port, traceparent in the metadata.
		traceID := randomHex(t, 16)
		conn := dial(t, own.RouterGRPCAddr())
		ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", "00-"+traceID+"-"+randomHex(t, 8)+"-01")
		res := &runtimev1.ConversationResponseAlpha2{}
		err := conn.Invoke(ctx, "/dapr.proto.runtime.v1.Dapr/ConverseAlpha2", &runtimev1.ConversationRequestAlpha2{
			Name: "traced",
			Inputs: []*runtimev1.ConversationInputAlpha2{{Messages: []*runtimev1.ConversationMessage{{
				MessageTypes: &runtimev1.ConversationMessage_OfUser{OfUser: &runtimev1.ConversationMessageOfUser{
					Content: []*runtimev1.ConversationMessageContent{{Text: "dapr grpc " + secret}},
				}},
			}}}},
		}, res)
		require.NoError(t, err)
		tr := waitTrace(t, sink, traceID,
			[2]string{"audit", "process parley.audit.conversation"},
			[2]string{"router", "dapr.proto.runtime.v1.Dapr/ConverseAlpha2"},
			[2]string{"router", "chat fake-model"},
			[2]string{"provider-worker", "process parley.provider.traced"})
		server := tr.one(t, "router", "dapr.proto.runtime.v1.Dapr/ConverseAlpha2", "")
		tr.one(t, "router", "chat fake-model", server.SpanID)
		require.NotZero(t, tr.countService("provider-worker"))
	})

	// No span anywhere holds prompt or answer text.
	for _, s := range sink.Spans() {
		texts := []string{s.Name, s.StatusMessage}
		for k, v := range s.Attributes {
			texts = append(texts, k, v)
		}
		for _, e := range s.Events {
			texts = append(texts, e.Name)
			for k, v := range e.Attributes {
				texts = append(texts, k, v)
			}
		}
		for _, text := range texts {
			require.NotContains(t, text, secret, "span %s of %s", s.Name, s.Service)
			require.NotContains(t, text, "dave@example.org", "span %s of %s", s.Name, s.Service)
		}
	}
}

// traceSpans are the spans of one trace.
type traceSpans []otlpsink.Span

// waitTrace waits until trace id has a span of each (service, name) of want and returns
// its spans: every service exports its spans on its own schedule, so a span that ended
// first may arrive last.
func waitTrace(t *testing.T, sink *otlpsink.Sink, id string, want ...[2]string) traceSpans {
	t.Helper()
	return waitTraceFor(t, sink, id, func(tr traceSpans) bool { return tr.has(want) })
}

// waitTraceFor waits until trace id's spans satisfy ready and returns them.
func waitTraceFor(t *testing.T, sink *otlpsink.Sink, id string, ready func(traceSpans) bool) traceSpans {
	t.Helper()
	var tr traceSpans
	require.Eventually(t, func() bool {
		tr = sink.Trace(id)
		return ready(tr)
	}, 60*time.Second, 50*time.Millisecond, "trace %s never got all its spans; it has:\n%s", id, &tr)
	return tr
}

// has reports whether tr has a span of each (service, name) of want.
func (tr traceSpans) has(want [][2]string) bool {
	for _, w := range want {
		if tr.count(w[0], w[1]) == 0 {
			return false
		}
	}
	return true
}

// one returns the single span of service named name whose parent is parent (any parent
// when parent is "").
func (tr traceSpans) one(t *testing.T, service, name, parent string) otlpsink.Span {
	t.Helper()
	var found []otlpsink.Span
	for _, s := range tr.all(service, name) {
		if parent == "" || s.ParentSpanID == parent {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "spans of %s named %q with parent %q in:\n%s", service, name, parent, tr)
	return found[0]
}

func (tr traceSpans) all(service, name string) []otlpsink.Span {
	var out []otlpsink.Span
	for _, s := range tr {
		if s.Service == service && s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func (tr traceSpans) count(service, name string) int { return len(tr.all(service, name)) }

func (tr traceSpans) countService(service string) int {
	n := 0
	for _, s := range tr {
		if s.Service == service {
			n++
		}
	}
	return n
}

func (tr traceSpans) String() string {
	var b strings.Builder
	otlpsink.Render(&b, tr)
	return b.String()
}

// requireAuditTraceID waits for the audit row of requestID and checks its trace id.
func requireAuditTraceID(t *testing.T, router, requestID, traceID string) {
	t.Helper()
	got := auditRow(t, auditv1connect.NewAuditServiceClient(http.DefaultClient, router), requestID)
	require.Equal(t, traceID, got.GetTraceId())
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}
