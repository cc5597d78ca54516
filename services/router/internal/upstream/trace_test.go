package upstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/router/internal/upstream"
)

// TestDispatchSpans: a unary and a streamed dispatch each record one producer span
// "send parley.provider.<component>" under the caller's span, and the worker receives it
// as the parent in the request's traceparent, so the worker's spans sit under it.
func TestDispatchSpans(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	prop := propagation.TraceContext{}
	d, err := upstream.NewDispatcher(natstest.Connect(t, srv), prop,
		upstream.DispatcherConfig{IdleTimeout: time.Minute, Attempts: 1, Tracer: tp.Tracer("router")}, prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	worker := natstest.Connect(t, srv)

	// Each worker hands the span context the request carried to the test.
	received := make(chan trace.SpanContext, 2)
	carried := func(m *nats.Msg) {
		received <- trace.SpanContextFromContext(prop.Extract(context.Background(), bus.HeaderCarrier(m.Header)))
	}
	_, err = worker.QueueSubscribe(upstream.SubjectPrefix+"unary", "q", func(m *nats.Msg) {
		carried(m)
		reply(t, worker, m.Reply, &providerv1.Reply{Kind: &providerv1.Reply_Response{Response: &providerv1.Response{
			Choices: []*providerv1.Choice{{Content: "done", FinishReason: "stop"}},
		}}})
	})
	require.NoError(t, err)
	sw := &streamWorker{n: 3}
	_, err = worker.QueueSubscribe(upstream.SubjectPrefix+"streamed", "q", func(m *nats.Msg) {
		carried(m)
		sw.serve(t, worker, m)
	})
	require.NoError(t, err)
	require.NoError(t, worker.Flush())

	for _, tt := range []struct {
		component string
		dispatch  func(ctx context.Context, req *providerv1.Request) error
	}{
		{"unary", func(ctx context.Context, req *providerv1.Request) error {
			_, err := d.Dispatch(ctx, req)
			return err
		}},
		{"streamed", func(ctx context.Context, req *providerv1.Request) error {
			_, err := d.DispatchStream(ctx, req, func(*providerv1.Chunk) error { sw.taken.Add(1); return nil })
			return err
		}},
	} {
		t.Run(tt.component, func(t *testing.T) {
			ctx, parent := tp.Tracer("test").Start(t.Context(), "conversation")
			require.NoError(t, tt.dispatch(ctx, &providerv1.Request{Component: tt.component}))
			parent.End()
			got := <-received

			name := "send " + upstream.SubjectPrefix + tt.component
			var sends []sdktrace.ReadOnlySpan
			for _, s := range recorder.Ended() {
				if s.Name() == name {
					sends = append(sends, s)
				}
			}
			require.Len(t, sends, 1, "one producer span per dispatch")
			send := sends[0]
			require.Equal(t, trace.SpanKindProducer, send.SpanKind())
			require.Equal(t, parent.SpanContext().SpanID(), send.Parent().SpanID())
			require.Equal(t, parent.SpanContext().TraceID(), send.SpanContext().TraceID())
			require.Equal(t, send.SpanContext().SpanID(), got.SpanID(), "the worker's parent is the producer span")
			require.Equal(t, send.SpanContext().TraceID(), got.TraceID())
			attrs := map[string]string{}
			for _, kv := range send.Attributes() {
				attrs[string(kv.Key)] = kv.Value.String()
			}
			require.Equal(t, "nats", attrs["messaging.system"])
			require.Equal(t, upstream.SubjectPrefix+tt.component, attrs["messaging.destination.name"])
			require.Empty(t, attrs["error.type"])
		})
	}
}
