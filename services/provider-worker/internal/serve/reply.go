package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/resiliency"
)

// coder is implemented by provider errors that say which code the router should see.
type coder interface {
	ErrorCode() providerv1.ErrorCode
}

// errStopping is the cancellation cause of calls still running when Stop gives up waiting.
var errStopping = errors.New("worker is stopping")

// errNoResponse is a provider's answer of neither a response nor an error.
var errNoResponse = errors.New("provider returned no response")

// final marks a provider failure that another attempt would repeat but that is the
// provider's fault, not the request's: it is not retried, yet counts against the circuit
// breaker (unlike resiliency.Permanent).
type final struct{ error }

func (f final) Unwrap() error { return f.error }

// Retryable implements the hook of resiliency.IsRetryable.
func (final) Retryable() bool { return false }

// panicError is a recovered provider panic. Its message, sent to the router, says only that
// the provider panicked; the details go to the log.
type panicError struct {
	value string
	stack []byte
}

func (e *panicError) Error() string { return "provider panicked" }

// blamesRequest reports whether a provider error says the request itself cannot succeed.
func blamesRequest(err error) bool {
	var c coder
	if !errors.As(err, &c) {
		return false
	}
	code := c.ErrorCode()
	return code == providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT || code == providerv1.ErrorCode_ERROR_CODE_NOT_FOUND
}

// panicValue describes a panic without risking request text in the log: runtime errors carry
// only their own message; for other values only the type is kept.
func panicValue(v any) string {
	if err, ok := v.(runtime.Error); ok {
		return err.Error()
	}
	return fmt.Sprintf("value of type %T", v)
}

func (w *Worker) finish(ctx, callCtx context.Context, x *exchange, res result) outcome {
	x.attempts = res.attempts
	if res.err != nil {
		if errors.Is(context.Cause(callCtx), errCancelled) {
			return w.cancelled(ctx, x)
		}
		if callCtx.Err() != nil {
			code, err := contextError(callCtx)
			return w.fail(ctx, x, code, err)
		}
		return w.fail(ctx, x, providerErrorCode(res.err), res.err)
	}
	if res.resp == nil {
		return w.fail(ctx, x, providerv1.ErrorCode_ERROR_CODE_INTERNAL, errNoResponse)
	}
	if x.stream != nil {
		stripContent(res.resp)
	}
	res.resp.WorkerId = w.opts.WorkerID
	res.resp.ProviderLatency = durationpb.New(res.latency)
	res.resp.Attempts = int32(min(res.attempts, math.MaxInt32))
	data, err := proto.Marshal(&providerv1.Reply{Kind: &providerv1.Reply_Response{Response: res.resp}})
	if err != nil {
		return w.fail(ctx, x, providerv1.ErrorCode_ERROR_CODE_INTERNAL, fmt.Errorf("encode response: %w", err))
	}
	if err := w.nc.Publish(x.reply, data); err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return w.fail(ctx, x, providerv1.ErrorCode_ERROR_CODE_INTERNAL,
				fmt.Errorf("response of %d bytes exceeds the NATS max payload of %d bytes", len(data), w.nc.MaxPayload()))
		}
		w.logger.ErrorContext(ctx, "reply failed", "component", x.rt.name, "request_id", x.requestID, "err", err)
		x.span.SetStatus(codes.Error, "reply failed")
		return outcomeInternal
	}
	w.logger.DebugContext(ctx, "request served", "component", x.rt.name, "request_id", x.requestID,
		"attempts", x.attempts, "duration_ms", time.Since(x.received).Milliseconds())
	return outcomeOK
}

// contextError describes why ctx, a call's context, ended.
func contextError(ctx context.Context) (providerv1.ErrorCode, error) {
	if errors.Is(context.Cause(ctx), errStopping) {
		return providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, errStopping
	}
	return providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED, errors.New("deadline exceeded while the provider was running")
}

// providerErrorCode classifies an error the provider, or the component's circuit breaker,
// returned while the request's context was live. A per-attempt timeout of the resiliency
// policy is DEADLINE_EXCEEDED unless the provider's own error has a code.
func providerErrorCode(err error) providerv1.ErrorCode {
	if errors.Is(err, resiliency.ErrOpenState) || errors.Is(err, resiliency.ErrTooManyRequests) {
		return providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE
	}
	var c coder
	if errors.As(err, &c) && c.ErrorCode() != providerv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
		return c.ErrorCode()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED
	}
	return providerv1.ErrorCode_ERROR_CODE_INTERNAL
}

// fail answers x with an Error reply and logs the failure once.
func (w *Worker) fail(ctx context.Context, x *exchange, code providerv1.ErrorCode, err error) outcome {
	out := outcomeOf(code)
	x.span.SetStatus(codes.Error, string(out))
	w.replyError(ctx, x.rt, x.reply, code, err.Error())
	level := slog.LevelWarn
	if code == providerv1.ErrorCode_ERROR_CODE_INTERNAL {
		level = slog.LevelError
	}
	attrs := []any{
		"component", x.rt.name, "request_id", x.requestID, "code", string(out), "err", err,
		"attempts", x.attempts, "duration_ms", time.Since(x.received).Milliseconds(),
	}
	var pe *panicError
	if errors.As(err, &pe) {
		attrs = append(attrs, "panic", pe.value, "stack", string(pe.stack))
	}
	w.logger.Log(ctx, level, "request failed", attrs...)
	return out
}

func (w *Worker) replyError(ctx context.Context, rt *route, reply string, code providerv1.ErrorCode, msg string) {
	data, err := proto.Marshal(&providerv1.Reply{Kind: &providerv1.Reply_Error{Error: &providerv1.Error{
		Code: code, Message: msg, WorkerId: w.opts.WorkerID,
	}}})
	if err != nil {
		// A message that is not valid UTF-8 cannot be encoded; say so without it.
		w.logger.ErrorContext(ctx, "encode error reply failed", "component", rt.name, "err", err)
		data, _ = proto.Marshal(&providerv1.Reply{Kind: &providerv1.Reply_Error{Error: &providerv1.Error{
			Code: code, Message: "error message is not valid UTF-8", WorkerId: w.opts.WorkerID,
		}}})
	}
	w.publish(ctx, reply, data)
}

func (w *Worker) publish(ctx context.Context, reply string, data []byte) {
	if err := w.nc.Publish(reply, data); err != nil {
		w.logger.WarnContext(ctx, "reply failed", "err", err)
	}
}

// cancelled ends a stream the router cancelled: nobody reads a reply, none is sent.
func (w *Worker) cancelled(ctx context.Context, x *exchange) outcome {
	w.logger.DebugContext(ctx, "stream cancelled by the router", "component", x.rt.name, "request_id", x.requestID,
		"duration_ms", time.Since(x.received).Milliseconds())
	return outcomeCancelled
}

// beat sends a heartbeat that announces the heartbeat interval; a streamed request's
// carries its control subject as reply subject.
func (w *Worker) beat(ctx context.Context, x *exchange) {
	m := &nats.Msg{Subject: x.reply, Data: w.heartbeat, Header: w.beatHeader}
	if x.stream != nil {
		m.Reply = x.stream.control
	}
	if err := w.nc.PublishMsg(m); err != nil {
		w.logger.WarnContext(ctx, "heartbeat failed", "err", err)
	}
}
