package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/parleyhq/parley/libs/telemetry"
)

const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"

// newTelemetry returns tracing off (New without an endpoint), or on with spans recorded.
func newTelemetry(t *testing.T, on bool) (*telemetry.Telemetry, *tracetest.SpanRecorder) {
	t.Helper()
	tel, err := telemetry.New(t.Context(), "test", telemetry.Config{SampleRatio: 1})
	require.NoError(t, err)
	require.False(t, tel.Tracing)
	if !on {
		return tel, nil
	}
	rec := tracetest.NewSpanRecorder()
	tel.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tel.Tracing = true
	return tel, rec
}

// TestConnectPropagation: a caller's traceparent reaches the handler's context through the
// server interceptor, and the client interceptor sends the context's on; spans are
// recorded only with tracing on.
func TestConnectPropagation(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name        string
		tracing     bool
		traceparent string
	}{
		{name: "off, caller's traceparent", traceparent: "00-" + callerTrace + "-00f067aa0ba902b7-01"},
		{name: "off, none"},
		{name: "on, caller's traceparent", tracing: true, traceparent: "00-" + callerTrace + "-00f067aa0ba902b7-01"},
		{name: "on, none", tracing: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tel, rec := newTelemetry(t, tt.tracing)
			si, err := tel.ServerInterceptor()
			require.NoError(t, err)
			ci, err := tel.ClientInterceptor()
			require.NoError(t, err)

			var got trace.SpanContext
			var recording bool
			mux := http.NewServeMux()
			mux.Handle("/test.v1.T/Call", connect.NewUnaryHandler("/test.v1.T/Call",
				func(ctx context.Context, _ *connect.Request[emptypb.Empty]) (*connect.Response[emptypb.Empty], error) {
					got, recording = trace.SpanContextFromContext(ctx), trace.SpanFromContext(ctx).IsRecording()
					return connect.NewResponse(&emptypb.Empty{}), nil
				}, connect.WithInterceptors(si)))
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)

			// The caller's context holds the traceparent as a remote parent, as the router's
			// would after its own server interceptor.
			ctx := t.Context()
			if tt.traceparent != "" {
				ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": tt.traceparent})
			}
			client := connect.NewClient[emptypb.Empty, emptypb.Empty](srv.Client(), srv.URL+"/test.v1.T/Call", connect.WithInterceptors(ci))
			_, err = client.CallUnary(ctx, connect.NewRequest(&emptypb.Empty{}))
			require.NoError(t, err)

			if tt.traceparent != "" {
				require.Equal(t, callerTrace, got.TraceID().String())
			}
			require.Equal(t, tt.tracing, recording)
			if !tt.tracing {
				require.Equal(t, tt.traceparent != "", got.IsValid())
				return
			}
			require.Len(t, rec.Ended(), 2, "a client and a server span") // the server's may end after the reply
		})
	}
}

func TestHTTPHandler(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		tel, rec := newTelemetry(t, on)
		var got trace.SpanContext
		h := tel.HTTPHandler("POST", "/v1.0-alpha2/conversation/{name}/converse", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = trace.SpanContextFromContext(r.Context())
			w.WriteHeader(http.StatusTeapot)
		}))
		r := httptest.NewRequest(http.MethodPost, "/v1.0-alpha2/conversation/secret-name/converse?key=secret", nil)
		r.Header.Set("traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
		h.ServeHTTP(httptest.NewRecorder(), r)
		require.Equal(t, callerTrace, got.TraceID().String(), "tracing %v", on)
		if !on {
			require.Equal(t, "00f067aa0ba902b7", got.SpanID().String(), "no span of its own")
			continue
		}
		spans := rec.Ended()
		require.Len(t, spans, 1)
		s := spans[0]
		require.Equal(t, "POST /v1.0-alpha2/conversation/{name}/converse", s.Name())
		require.Equal(t, "00f067aa0ba902b7", s.Parent().SpanID().String())
		require.Equal(t, trace.SpanKindServer, s.SpanKind())
		requireNoText(t, s, "secret")
		require.Contains(t, s.Attributes(), attrInt("http.response.status_code", http.StatusTeapot))
	}
}

func TestHTTPTransport(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Empty(t, r.Header.Get("traceparent"), "no trace context to the provider")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	t.Cleanup(srv.Close)

	off, _ := newTelemetry(t, false)
	base := http.DefaultTransport
	require.Equal(t, base, off.HTTPTransport(base), "tracing off: the transport itself")

	on, rec := newTelemetry(t, true)
	ctx, parent := on.TracerProvider.Tracer("test").Start(t.Context(), "chat")
	client := &http.Client{Transport: on.HTTPTransport(base)}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions?key=secret", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := client.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	parent.End()

	var call sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "POST" {
			call = s
		}
	}
	require.NotNil(t, call)
	require.Equal(t, parent.SpanContext().SpanID(), call.Parent().SpanID())
	require.Equal(t, trace.SpanKindClient, call.SpanKind())
	require.Contains(t, call.Attributes(), attrInt("http.response.status_code", http.StatusTooManyRequests))
	requireNoText(t, call, "secret")
	requireNoText(t, call, "/v1/chat")
}

func TestGenAISystemOf(t *testing.T) {
	t.Parallel()
	for give, want := range map[string]string{
		"conversation.openai": "openai", "googleai": "gcp.gemini", "conversation.mistral": "mistral_ai",
		"aws.bedrock": "aws.bedrock", "conversation.Echo": "echo", "azure.openai": "azure.ai.openai",
	} {
		require.Equal(t, want, telemetry.GenAISystemOf(give), give)
	}
}

func attrInt(key string, v int) attribute.KeyValue { return attribute.Int(key, v) }

// requireNoText fails when any attribute, event or status of s holds text.
func requireNoText(t *testing.T, s sdktrace.ReadOnlySpan, text string) {
	t.Helper()
	require.NotContains(t, s.Name(), text)
	require.NotContains(t, s.Status().Description, text)
	for _, kv := range s.Attributes() {
		require.NotContains(t, kv.Value.String(), text, "attribute %s", kv.Key)
	}
	for _, e := range s.Events() {
		require.NotContains(t, e.Name, text)
		for _, kv := range e.Attributes {
			require.NotContains(t, kv.Value.String(), text, "event %s attribute %s", e.Name, kv.Key)
		}
	}
}
