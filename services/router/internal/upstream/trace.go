package upstream

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// startSend starts a producer span for a NATS publish to subject, "send <subject>" with
// the messaging attributes, when tracer is set (tracing on); otherwise it returns ctx and
// a nil span, doing nothing.
func startSend(ctx context.Context, tracer trace.Tracer, subject string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if tracer == nil {
		return ctx, nil
	}
	attrs = append(attrs,
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.operation.type", "send"),
		attribute.String("messaging.destination.name", subject),
	)
	return tracer.Start(ctx, "send "+subject, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
}

// endSend ends a span of startSend (nil: nothing to do), marking it failed with errType
// when that is not empty.
func endSend(span trace.Span, errType string) {
	if span == nil {
		return
	}
	if errType != "" {
		span.SetAttributes(attribute.String("error.type", errType))
		span.SetStatus(codes.Error, errType)
	}
	span.End()
}
