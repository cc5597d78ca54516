package serve

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/resiliency"
	"github.com/parleyhq/parley/libs/telemetry"
)

// exchange is one request being served, for replies and logs.
type exchange struct {
	rt        *route
	reply     string
	requestID string
	received  time.Time
	span      trace.Span
	attempts  int     // provider calls made, once known
	stream    *stream // flow control of a streamed request; nil for a unary one
}

func (w *Worker) process(ctx context.Context, rt *route, m *nats.Msg, received time.Time) outcome {
	// Without tracing the span is the caller's, carried in ctx and not recording: setting
	// its status or attributes does nothing.
	span := trace.SpanFromContext(ctx)
	if w.tracing {
		ctx, span = w.tracer.Start(ctx, "process "+rt.subject,
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.system", "nats"),
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.destination.name", rt.subject),
				attribute.String("parley.component", rt.name),
				attribute.String("parley.worker_id", w.opts.WorkerID),
			))
		defer span.End()
	}
	x := &exchange{rt: rt, reply: m.Reply, received: received, span: span}

	var req providerv1.Request
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return w.fail(ctx, x, providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, fmt.Errorf("decode provider request: %w", err))
	}
	x.requestID = req.GetRequestId()
	if w.tracing {
		span.SetAttributes(attribute.String("parley.request_id", x.requestID))
	}
	if c := req.GetComponent(); c != "" && c != rt.name {
		return w.fail(ctx, x, providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
			fmt.Errorf("request for component %q arrived on the subject of %q", c, rt.name))
	}
	if dl := req.GetDeadline(); dl != nil {
		if err := dl.CheckValid(); err != nil {
			return w.fail(ctx, x, providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, fmt.Errorf("deadline: %w", err))
		}
		deadline := dl.AsTime()
		if !time.Now().Before(deadline) {
			return w.fail(ctx, x, providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED,
				errors.New("deadline passed before the call started"))
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}

	callCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if req.GetStream() {
		x.stream = w.openStream(x.reply, req.GetStreamWindow(), cancel)
		defer w.closeStream(x.stream)
	}
	results := make(chan result, 1)
	// The goroutine is owned by this call: every path below waits for its result. Retries
	// happen inside it, so heartbeats go on while the policy waits between attempts.
	go func() { results <- w.call(callCtx, x, &req) }()
	// The first heartbeat claims the request at once: from it on, the router presumes this
	// worker dead after a few missed heartbeats rather than after its idle timeout.
	w.beat(ctx, x)
	ticker := time.NewTicker(w.opts.HeartbeatInterval)
	defer ticker.Stop()
	abort := w.abort
	for {
		select {
		case res := <-results:
			return w.finish(ctx, callCtx, x, res)
		case <-ticker.C:
			w.beat(ctx, x)
		case <-callCtx.Done():
			if errors.Is(context.Cause(callCtx), errCancelled) {
				<-results
				return w.cancelled(ctx, x)
			}
			// Answer now, as nobody reads a late answer, but keep the slot until the
			// provider returns so that Concurrency stays the true number of running calls.
			code, err := contextError(callCtx)
			out := w.fail(ctx, x, code, err)
			<-results
			return out
		case <-abort:
			abort = nil
			cancel(errStopping)
		}
	}
}

// result is the outcome of one request's provider calls.
type result struct {
	resp     *providerv1.Response
	err      error
	latency  time.Duration
	attempts int
}

// call runs the provider under the component's resiliency policy and recovers a panic,
// which ends the retries. Errors that blame the request (INVALID_ARGUMENT, NOT_FOUND) are
// neither retried nor held against the component; empty answers, a provider bug, are not
// retried.
func (w *Worker) call(ctx context.Context, x *exchange, req *providerv1.Request) (res result) {
	rt := x.rt
	start := time.Now()
	defer func() {
		res.latency = time.Since(start)
		if v := recover(); v != nil {
			rt.attempts[attemptError].Inc()
			res = result{err: &panicError{value: panicValue(v), stack: debug.Stack()}, latency: time.Since(start)}
		}
	}()
	res.attempts, res.err = rt.policy.Run(ctx, func(actx context.Context) error {
		var span trace.Span
		attemptStart := time.Now()
		if w.tracing {
			actx, span = w.tracer.Start(actx, rt.chatName, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(rt.chatAttrs...))
			defer span.End()
		}
		var resp *providerv1.Response
		var err error
		if x.stream != nil {
			resp, err = x.stream.converseStream(actx, rt.provider, req)
		} else {
			resp, err = rt.provider.Converse(actx, req)
		}
		switch {
		case err == nil && resp == nil:
			err = final{errNoResponse}
		case err != nil && blamesRequest(err):
			err = resiliency.Permanent(err)
		case err != nil && x.stream != nil && x.stream.started.Load():
			// Chunks already went out: another attempt would send them again.
			err = final{err}
		}
		out := attemptOutcomeOf(ctx, actx, err)
		rt.attempts[out].Inc()
		rt.operationTime.Observe(time.Since(attemptStart).Seconds())
		if err != nil {
			if k := errorKind(ctx, actx, err); k != "" {
				rt.errors[k].Inc()
			}
		}
		if err == nil && resp != nil {
			if u := resp.GetUsage(); u != nil {
				rt.tokensIn.Observe(float64(u.GetPromptTokens()))
				rt.tokensOut.Observe(float64(u.GetCompletionTokens()))
				rt.tokensInTotal.Add(float64(u.GetPromptTokens()))
				rt.tokensOutTotal.Add(float64(u.GetCompletionTokens()))
			}
		}
		if span != nil {
			endChat(span, resp, err, out)
		}
		if err != nil {
			w.logger.DebugContext(ctx, "attempt failed", "component", rt.name, "request_id", x.requestID,
				"outcome", string(out), "err", err)
			return err
		}
		res.resp = resp
		return nil
	})
	switch {
	case errors.Is(res.err, resiliency.ErrOpenState):
		rt.attempts[attemptCircuitOpen].Inc()
	case errors.Is(res.err, resiliency.ErrTooManyRequests):
		rt.attempts[attemptTooManyRequests].Inc()
	}
	return res
}

// endChat puts an attempt's outcome on its span: the GenAI response attributes of an
// answer (model, token counts, finish reasons; never its text) or the attempt's outcome
// as error.type.
func endChat(span trace.Span, resp *providerv1.Response, err error, out attemptOutcome) {
	if err != nil || resp == nil {
		span.SetAttributes(attribute.String("error.type", string(out)))
		span.SetStatus(codes.Error, string(out))
		return
	}
	u := resp.GetUsage()
	var reasons []string
	if cs := resp.GetChoices(); len(cs) > 0 {
		reasons = make([]string, len(cs))
		for i, c := range cs {
			reasons[i] = c.GetFinishReason()
		}
	}
	span.SetAttributes(telemetry.GenAIResponseAttrs(resp.GetModel(), u.GetPromptTokens(), u.GetCompletionTokens(), reasons)...)
}
