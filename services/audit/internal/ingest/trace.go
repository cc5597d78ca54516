package ingest

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/bus"
)

// traceWritten records, for every event of a committed batch, a consumer span "process
// parley.audit.conversation" from the batch's start to its commit: a child of the
// router's publish span, read from the message headers, and linked to it, as OpenTelemetry's
// messaging conventions ask of a consumer. So the audit write belongs to the
// conversation's trace. Nothing is done without a tracer (tracing off) or for an event
// published without trace context.
func (in *Ingester) traceWritten(b batch, start, end time.Time) {
	if in.cfg.Tracer == nil {
		return
	}
	prop := in.cfg.Propagator
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	batchSize := attribute.Int("messaging.batch.message_count", len(b.msgs))
	for i, m := range b.msgs {
		h := m.Headers()
		if h == nil {
			continue
		}
		ctx := prop.Extract(context.Background(), bus.HeaderCarrier(h))
		pub := trace.SpanContextFromContext(ctx)
		if !pub.IsValid() {
			continue
		}
		_, span := in.cfg.Tracer.Start(ctx, "process "+auditevent.Subject,
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithTimestamp(start),
			trace.WithLinks(trace.Link{SpanContext: pub}),
			trace.WithAttributes(
				attribute.String("messaging.system", "nats"),
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.destination.name", auditevent.Subject),
				attribute.String("messaging.consumer.group.name", in.cfg.Consumer),
				attribute.String("parley.request_id", b.events[i].GetRequestId()),
				batchSize,
			))
		span.End(trace.WithTimestamp(end))
	}
}
