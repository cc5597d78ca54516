package conversation

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/libs/telemetry"
)

// startSpan starts the conversation's span, "chat <model>" with the GenAI request
// attributes, under the API's server span. Without a tracer (tracing off) it returns ctx
// unchanged and a nil span: no span work at all.
func (s *Service) startSpan(ctx context.Context, comp Component) (context.Context, trace.Span) {
	if s.opts.Tracer == nil {
		return ctx, nil
	}
	name := telemetry.OperationChat
	if comp.Model != "" {
		name += " " + comp.Model
	}
	attrs := append(telemetry.GenAIRequestAttrs(comp.Type, comp.Model), attribute.String("parley.component", comp.Name))
	return s.opts.Tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
}

// endSpan records the outcome on span (nil: tracing off) and ends it: the request id,
// the cache outcome, the GenAI response attributes (model, token counts, finish reasons;
// never text), or the failure's kind.
func endSpan(span trace.Span, ev *auditv1.ConversationEvent, res *Result, err error) {
	if span == nil {
		return
	}
	defer span.End()
	span.SetAttributes(attribute.String("parley.request_id", ev.GetRequestId()), attribute.Bool("parley.cache_hit", ev.GetCacheHit()))
	if err != nil {
		kind := KindOf(err).String()
		span.SetAttributes(attribute.String("error.type", kind))
		span.SetStatus(codes.Error, kind)
		return
	}
	resp := res.Response
	reasons := make([]string, len(resp.GetChoices()))
	for i, c := range resp.GetChoices() {
		reasons[i] = c.GetFinishReason()
	}
	u := resp.GetUsage()
	span.SetAttributes(telemetry.GenAIResponseAttrs(resp.GetModel(), u.GetPromptTokens(), u.GetCompletionTokens(), reasons)...)
}

// traceID is the trace id of ctx's span, for the audit record: the conversation's span
// when tracing is on, else the caller's traceparent passed through; "" without either.
func traceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}
