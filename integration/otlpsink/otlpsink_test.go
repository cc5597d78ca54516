package otlpsink_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/parleyhq/parley/integration/otlpsink"
)

// export sends spans made by build to sink through the OTLP/HTTP exporter the services
// use, as service, with compression or not.
func export(t *testing.T, sink *otlpsink.Sink, service string, gzip bool, build func(trace.Tracer)) {
	t.Helper()
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(sink.Endpoint() + "/v1/traces")}
	if gzip {
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	}
	exp, err := otlptracehttp.New(t.Context(), opts...)
	require.NoError(t, err)
	// One export at Shutdown for everything build made: a trace's spans arrive together,
	// however long the machine takes between two of them.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))))
	build(tp.Tracer("test"))
	require.NoError(t, tp.Shutdown(t.Context()))
}

func TestSinkReceivesAndRenders(t *testing.T) {
	t.Parallel()
	sink, err := otlpsink.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sink.Close(context.Background()) })

	var root, child trace.SpanContext
	export(t, sink, "router", false, func(tr trace.Tracer) {
		ctx, r := tr.Start(t.Context(), "POST /v1.0-alpha2/conversation/{name}/converse")
		_, c := tr.Start(ctx, "chat gpt-4o", trace.WithAttributes(
			attribute.Int("gen_ai.usage.input_tokens", 12), attribute.Int("gen_ai.usage.output_tokens", 40),
			attribute.StringSlice("gen_ai.response.finish_reasons", []string{"stop"})))
		root, child = r.SpanContext(), c.SpanContext()
		c.End()
		r.End()
	})
	export(t, sink, "audit", true, func(tr trace.Tracer) {
		ctx := trace.ContextWithRemoteSpanContext(t.Context(), child)
		_, s := tr.Start(ctx, "process parley.audit.conversation", trace.WithLinks(trace.Link{SpanContext: child}))
		s.End()
	})

	spans := sink.Trace(root.TraceID().String())
	require.Len(t, spans, 3)
	require.Equal(t, 3, sink.Received())
	byName := map[string]otlpsink.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	chat := byName["chat gpt-4o"]
	require.Equal(t, "router", chat.Service)
	require.Equal(t, root.SpanID().String(), chat.ParentSpanID)
	require.Equal(t, "12", chat.Attributes["gen_ai.usage.input_tokens"])
	require.Equal(t, "[stop]", chat.Attributes["gen_ai.response.finish_reasons"])
	write := byName["process parley.audit.conversation"]
	require.Equal(t, "audit", write.Service)
	require.Equal(t, child.SpanID().String(), write.ParentSpanID)
	require.Equal(t, []otlpsink.Link{{TraceID: child.TraceID().String(), SpanID: child.SpanID().String()}}, write.Links)

	var out bytes.Buffer
	otlpsink.Render(&out, spans)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 5, out.String())
	require.Contains(t, lines[0], "trace "+root.TraceID().String())
	require.Contains(t, lines[0], "3 spans")
	require.Regexp(t, `router +POST /v1.0-alpha2`, lines[2])
	require.Regexp(t, `router +  chat gpt-4o  tokens 12/40  \[stop\]`, lines[3])
	require.Regexp(t, `audit +    process parley.audit.conversation  link `+child.SpanID().String(), lines[4])
}

func TestSinkRefusesGarbage(t *testing.T) {
	t.Parallel()
	sink, err := otlpsink.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sink.Close(context.Background()) })
	for _, tt := range []struct{ name, encoding, body string }{
		{name: "not protobuf", body: "\xff\xff\xff"},
		{name: "bad gzip", encoding: "gzip", body: "not gzip"},
		{name: "unknown encoding", encoding: "br", body: ""},
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, sink.Endpoint()+"/v1/traces", strings.NewReader(tt.body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-protobuf")
		if tt.encoding != "" {
			req.Header.Set("Content-Encoding", tt.encoding)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, tt.name)
	}
	require.Empty(t, sink.Spans())
	require.Zero(t, sink.Received())
}

func TestSinkDiscard(t *testing.T) {
	t.Parallel()
	sink, err := otlpsink.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sink.Close(context.Background()) })
	sink.Discard()
	export(t, sink, "router", false, func(tr trace.Tracer) {
		_, s := tr.Start(t.Context(), "one")
		s.End()
	})
	require.Equal(t, 1, sink.Received())
	require.Empty(t, sink.Spans())
}

// FuzzTraces: no request body makes the receiver panic, and a body it accepts yields
// spans whose ids are hex.
func FuzzTraces(f *testing.F) {
	req := &collectortrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8), Name: "chat",
			Attributes: []*commonpb.KeyValue{{Key: "k", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{
				ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{{Value: &commonpb.AnyValue_IntValue{IntValue: 3}}}},
			}}}},
		}}}},
	}}}
	b, err := proto.Marshal(req)
	require.NoError(f, err)
	f.Add(b, false)
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102","name":"x"}]}]}]}`), true)
	f.Add([]byte{0xff, 0x01}, false)
	sink, err := otlpsink.Start("127.0.0.1:0")
	require.NoError(f, err)
	f.Cleanup(func() { _ = sink.Close(context.Background()) })
	hexID := regexp.MustCompile(`^[0-9a-f]*$`)
	f.Fuzz(func(t *testing.T, body []byte, jsonBody bool) {
		r := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(body))
		if jsonBody {
			r.Header.Set("Content-Type", "application/json")
		}
		before := len(sink.Spans())
		w := httptest.NewRecorder()
		sink.ServeHTTP(w, r)
		for _, s := range sink.Spans()[before:] {
			require.Regexp(t, hexID, s.TraceID)
			require.Regexp(t, hexID, s.SpanID)
		}
	})
}

// lockedBuffer is a bytes.Buffer safe for Print's goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSinkPrint: Print writes each trace once it went quiet, then forgets its spans.
func TestSinkPrint(t *testing.T) {
	t.Parallel()
	sink, err := otlpsink.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sink.Close(context.Background()) })
	var out lockedBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); sink.Print(ctx, &out, 20*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })

	var ids []string
	for _, name := range []string{"first", "second"} {
		export(t, sink, "router", false, func(tr trace.Tracer) {
			ctx, root := tr.Start(t.Context(), name)
			_, child := tr.Start(ctx, name+" child")
			child.End()
			root.End()
			ids = append(ids, root.SpanContext().TraceID().String())
		})
	}
	require.Eventually(t, func() bool {
		s := out.String()
		return strings.Contains(s, "trace "+ids[0]) && strings.Contains(s, "trace "+ids[1])
	}, 10*time.Second, 10*time.Millisecond)
	require.Empty(t, sink.Spans(), "printed spans are forgotten")
	require.Equal(t, 4, sink.Received())
	s := out.String()
	require.Equal(t, 1, strings.Count(s, "trace "+ids[0]), "each trace printed once:\n%s", s)
	require.Regexp(t, `router +  second child`, s)
}
