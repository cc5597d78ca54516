package ingest_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/bus"
)

// TestIngestTracesWrites: each written event gets a span under the publish span its
// headers name, linked to it; an event published without trace context gets none.
func TestIngestTracesWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	cfg := testConfig()
	cfg.Tracer, cfg.Propagator = tp.Tracer("test"), propagation.TraceContext{}
	e.start(t, cfg)

	ctx, publish := tp.Tracer("router").Start(t.Context(), "send "+auditevent.Subject, trace.WithSpanKind(trace.SpanKindProducer))
	traced, untraced := event(t, "acme", 1, 0), event(t, "acme", 2, 0)
	h := nats.Header{jetstream.MsgIDHeader: []string{traced.GetRequestId()}}
	propagation.TraceContext{}.Inject(ctx, bus.HeaderCarrier(h))
	_, err := e.js.PublishMsg(t.Context(), &nats.Msg{Subject: auditevent.Subject, Data: encode(t, traced), Header: h})
	require.NoError(t, err)
	publish.End()
	e.publish(t, encode(t, untraced), untraced.GetRequestId())

	require.Eventually(t, func() bool { total, _ := e.rows(t); return total == 2 }, waitFor, 10*time.Millisecond)
	var writes []sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		writes = writes[:0]
		for _, s := range rec.Ended() {
			if s.Name() == "process "+auditevent.Subject {
				writes = append(writes, s)
			}
		}
		return len(writes) > 0
	}, waitFor, 10*time.Millisecond)
	require.Len(t, writes, 1, "only the traced event")
	w := writes[0]
	require.Equal(t, trace.SpanKindConsumer, w.SpanKind())
	require.Equal(t, publish.SpanContext().TraceID(), w.SpanContext().TraceID())
	require.Equal(t, publish.SpanContext().SpanID(), w.Parent().SpanID())
	require.Len(t, w.Links(), 1)
	require.Equal(t, publish.SpanContext().SpanID(), w.Links()[0].SpanContext.SpanID())
	require.False(t, w.EndTime().Before(w.StartTime()))
}
