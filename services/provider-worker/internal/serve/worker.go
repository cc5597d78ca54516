package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/resiliency"
)

// SubjectPrefix is the prefix of the per-component work subjects; the queue group has the
// same name as the subject.
const SubjectPrefix = "parley.provider."

// DefaultAdmissionWait is how long a request waits for a free slot when Options leaves
// AdmissionWait zero.
const DefaultAdmissionWait = 100 * time.Millisecond

// pendingBytes caps the bytes the NATS client buffers per subscription, as its default does.
const pendingBytes = 64 << 20

// Provider answers one conversation request. It must be safe for concurrent use and return
// once ctx is done. The worker takes ownership of the returned response: it sets worker_id
// and provider_latency on it.
type Provider interface {
	Converse(ctx context.Context, req *providerv1.Request) (*providerv1.Response, error)
}

// coder is implemented by provider errors that say which code the router should see.
type coder interface {
	ErrorCode() providerv1.ErrorCode
}

// Options tunes a Worker.
type Options struct {
	// WorkerID names the worker in every reply.
	WorkerID string
	// Concurrency is the most calls the worker runs at once, over all components.
	Concurrency int
	// HeartbeatInterval is the time between two Heartbeat replies while a call runs.
	HeartbeatInterval time.Duration
	// AdmissionWait is how long a request waits for a free slot before it is answered
	// UNAVAILABLE; zero means DefaultAdmissionWait.
	AdmissionWait time.Duration
	// PendingMsgs caps the messages the NATS client buffers per subscription; zero means
	// 4×Concurrency, at least 256.
	PendingMsgs int
	// Propagator reads the caller's trace context from message headers; nil means W3C
	// trace context.
	Propagator propagation.TextMapPropagator
	// TracerProvider creates the worker's spans; nil means none.
	TracerProvider trace.TracerProvider
	// Logger receives one record per failed request; nil discards them.
	Logger *slog.Logger
	// Registerer receives the worker's metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Resiliency holds each component's timeout, retry and circuit breaker policies; nil
	// means one attempt per request, bounded only by the request's deadline.
	Resiliency *resiliency.Set
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

// Worker subscribes to the work subjects of its components and answers their requests. It
// starts once and stops once.
type Worker struct {
	nc        *nats.Conn
	opts      Options
	routes    []*route
	tracer    trace.Tracer
	logger    *slog.Logger
	heartbeat []byte

	slots     chan struct{} // one token per running call
	waiting   atomic.Int64  // requests waiting for a slot
	active    tracker       // goroutines handling or waiting, awaited by Stop
	abort     chan struct{} // closed when Stop gives up waiting
	abortOnce sync.Once

	mu      sync.Mutex
	subs    []*nats.Subscription
	started bool
	stopped bool
}

// route is one served component with its policy and its metrics bound to its label.
type route struct {
	name     string
	subject  string
	provider Provider
	policy   *resiliency.Policy
	requests map[outcome]prometheus.Counter
	attempts map[attemptOutcome]prometheus.Counter
	duration prometheus.Observer
	inflight prometheus.Gauge
	rejected prometheus.Counter
}

// New returns a worker serving providers, keyed by component name, over nc. It subscribes
// only when started.
func New(nc *nats.Conn, providers map[string]Provider, opts Options) (*Worker, error) {
	var errs []error
	if opts.WorkerID == "" {
		errs = append(errs, errors.New("worker id is empty"))
	}
	if opts.Concurrency <= 0 {
		errs = append(errs, fmt.Errorf("concurrency must be positive, got %d", opts.Concurrency))
	}
	if opts.HeartbeatInterval <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat interval must be positive, got %s", opts.HeartbeatInterval))
	}
	if opts.AdmissionWait < 0 || opts.PendingMsgs < 0 {
		errs = append(errs, errors.New("admission wait and pending messages must not be negative"))
	}
	if len(providers) == 0 {
		errs = append(errs, errors.New("no components to serve"))
	}
	for name, p := range providers {
		if name == "" || strings.ContainsAny(name, "*> \t\r\n") {
			errs = append(errs, fmt.Errorf("component name %q is not a valid subject token", name))
		}
		if p == nil {
			errs = append(errs, fmt.Errorf("component %q has no provider", name))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("new worker: %w", errors.Join(errs...))
	}
	if opts.AdmissionWait == 0 {
		opts.AdmissionWait = DefaultAdmissionWait
	}
	if opts.PendingMsgs == 0 {
		opts.PendingMsgs = max(256, 4*opts.Concurrency)
	}
	if opts.Propagator == nil {
		opts.Propagator = propagation.TraceContext{}
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = noop.NewTracerProvider()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}

	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	heartbeat, err := proto.Marshal(&providerv1.Reply{Kind: &providerv1.Reply_Heartbeat{
		Heartbeat: &providerv1.Heartbeat{WorkerId: opts.WorkerID},
	}})
	if err != nil {
		return nil, fmt.Errorf("encode heartbeat: %w", err)
	}
	w := &Worker{
		nc:        nc,
		opts:      opts,
		tracer:    opts.TracerProvider.Tracer("github.com/parleyhq/parley/services/provider-worker/internal/serve"),
		logger:    opts.Logger,
		heartbeat: heartbeat,
		slots:     make(chan struct{}, opts.Concurrency),
		abort:     make(chan struct{}),
	}
	names := make([]string, 0, len(providers))
	for name := range providers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		w.routes = append(w.routes, m.route(name, providers[name], opts.Resiliency.ForComponent(name)))
	}
	if err := opts.Registerer.Register(newBreakerStates(w.routes)); err != nil {
		return nil, fmt.Errorf("register worker metrics: %w", err)
	}
	return w, nil
}

// Components lists the served component names, sorted.
func (w *Worker) Components() []string {
	names := make([]string, len(w.routes))
	for i, rt := range w.routes {
		names[i] = rt.name
	}
	return names
}

// Start joins the queue group of every component and waits until the server has
// registered the subscriptions, so a request published after Start returns is served.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.stopped {
		return errors.New("start worker: a worker starts only once")
	}
	w.started = true
	for _, rt := range w.routes {
		sub, err := w.nc.QueueSubscribe(rt.subject, rt.subject, w.receive(rt))
		if err == nil {
			err = sub.SetPendingLimits(w.opts.PendingMsgs, pendingBytes)
			w.subs = append(w.subs, sub)
		}
		if err != nil {
			return errors.Join(fmt.Errorf("subscribe %s: %w", rt.subject, err), w.unsubscribeLocked())
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	if err := w.nc.FlushWithContext(ctx); err != nil {
		return errors.Join(fmt.Errorf("flush subscriptions: %w", err), w.unsubscribeLocked())
	}
	w.logger.InfoContext(ctx, "worker subscribed",
		"components", w.Components(), "worker_id", w.opts.WorkerID, "concurrency", w.opts.Concurrency)
	for _, rt := range w.routes {
		if !rt.policy.Empty() {
			w.logger.InfoContext(ctx, "resiliency policy", "policy", rt.policy)
		}
	}
	return nil
}

func (w *Worker) unsubscribeLocked() error {
	var errs []error
	for _, sub := range w.subs {
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("unsubscribe %s: %w", sub.Subject, err))
		}
	}
	w.subs = nil
	return errors.Join(errs...)
}

// Stop drains the subscriptions, so no new request arrives and buffered ones are still
// answered, then waits until every running call has replied or ctx ends. Calls still
// running then are cancelled and answered UNAVAILABLE.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	subs := w.subs
	w.subs = nil
	w.stopped = true
	w.mu.Unlock()

	var errs []error
	closed := make([]<-chan nats.SubStatus, 0, len(subs))
	for _, sub := range subs {
		ch := sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			if !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
				errs = append(errs, fmt.Errorf("drain %s: %w", sub.Subject, err))
			}
			continue
		}
		closed = append(closed, ch)
	}
wait:
	for _, ch := range closed {
		select {
		case <-ch:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("drain subscriptions: %w", ctx.Err()))
			break wait
		}
	}
	if n, err := w.active.wait(ctx); err != nil {
		errs = append(errs, fmt.Errorf("wait for %d running calls: %w", n, err))
	}
	// Whatever still runs is past the stop budget: cancel it so that it answers now.
	w.abortOnce.Do(func() { close(w.abort) })
	if len(errs) > 0 {
		return fmt.Errorf("stop worker: %w", errors.Join(errs...))
	}
	w.logger.InfoContext(ctx, "worker stopped", "worker_id", w.opts.WorkerID)
	return nil
}

// Ready reports whether every subscription is active.
func (w *Worker) Ready(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.stopped:
		return errors.New("worker is stopping")
	case !w.started || len(w.subs) == 0:
		return errors.New("not subscribed")
	}
	for _, sub := range w.subs {
		if !sub.IsValid() {
			return fmt.Errorf("subscription %s is closed", sub.Subject)
		}
	}
	return nil
}

// receive returns the message callback of rt. It never blocks: it hands the message to a
// goroutine that holds a slot or waits for one, or it rejects the message.
func (w *Worker) receive(rt *route) nats.MsgHandler {
	return func(m *nats.Msg) {
		received := time.Now()
		// A NATS message is the root of its request: nothing upstream of the worker carries
		// a Go context, only the trace headers.
		ctx := w.opts.Propagator.Extract(context.Background(), bus.HeaderCarrier(m.Header))
		if m.Reply == "" {
			rt.requests[outcomeInvalidArgument].Inc()
			w.logger.WarnContext(ctx, "request without reply subject", "component", rt.name)
			return
		}
		select {
		case w.slots <- struct{}{}:
			w.active.add()
			go func() {
				defer w.active.done()
				w.handle(ctx, rt, m, received)
			}()
			return
		default:
		}
		if w.waiting.Add(1) > int64(cap(w.slots)) {
			w.waiting.Add(-1)
			w.reject(ctx, rt, m)
			return
		}
		w.active.add()
		go func() {
			defer w.active.done()
			w.admit(ctx, rt, m, received)
		}()
	}
}

// admit waits up to AdmissionWait for a slot, then handles or rejects m.
func (w *Worker) admit(ctx context.Context, rt *route, m *nats.Msg, received time.Time) {
	timer := time.NewTimer(w.opts.AdmissionWait)
	defer timer.Stop()
	select {
	case w.slots <- struct{}{}:
		w.waiting.Add(-1)
		w.handle(ctx, rt, m, received)
	case <-timer.C:
		w.waiting.Add(-1)
		w.reject(ctx, rt, m)
	case <-w.abort:
		w.waiting.Add(-1)
		w.reject(ctx, rt, m)
	}
}

func (w *Worker) reject(ctx context.Context, rt *route, m *nats.Msg) {
	rt.rejected.Inc()
	rt.requests[outcomeRejected].Inc()
	w.replyError(ctx, rt, m.Reply, providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "worker saturated")
}

// handle serves m while holding a slot, which it releases.
func (w *Worker) handle(ctx context.Context, rt *route, m *nats.Msg, received time.Time) {
	defer func() { <-w.slots }()
	rt.inflight.Inc()
	defer rt.inflight.Dec()
	out := w.process(ctx, rt, m, received)
	rt.requests[out].Inc()
	rt.duration.Observe(time.Since(received).Seconds())
}

// exchange is one request being served, for replies and logs.
type exchange struct {
	rt        *route
	reply     string
	requestID string
	received  time.Time
	span      trace.Span
	attempts  int // provider calls made, once known
}

func (w *Worker) process(ctx context.Context, rt *route, m *nats.Msg, received time.Time) outcome {
	ctx, span := w.tracer.Start(ctx, "process "+rt.subject,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", rt.subject),
			attribute.String("parley.component", rt.name),
			attribute.String("parley.worker_id", w.opts.WorkerID),
		))
	defer span.End()
	x := &exchange{rt: rt, reply: m.Reply, received: received, span: span}

	var req providerv1.Request
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return w.fail(ctx, x, providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, fmt.Errorf("decode provider request: %w", err))
	}
	x.requestID = req.GetRequestId()
	span.SetAttributes(attribute.String("parley.request_id", x.requestID))
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
	results := make(chan result, 1)
	// The goroutine is owned by this call: every path below waits for its result. Retries
	// happen inside it, so heartbeats go on while the policy waits between attempts.
	go func() { results <- w.call(callCtx, x, &req) }()
	ticker := time.NewTicker(w.opts.HeartbeatInterval)
	defer ticker.Stop()
	abort := w.abort
	for {
		select {
		case res := <-results:
			return w.finish(ctx, callCtx, x, res)
		case <-ticker.C:
			w.publish(ctx, x.reply, w.heartbeat)
		case <-callCtx.Done():
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

// panicError is a recovered provider panic. Its message, sent to the router, says only that
// the provider panicked; the details go to the log.
type panicError struct {
	value string
	stack []byte
}

func (e *panicError) Error() string { return "provider panicked" }

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
		resp, err := rt.provider.Converse(actx, req)
		switch {
		case err == nil && resp == nil:
			err = final{errNoResponse}
		case err != nil && blamesRequest(err):
			err = resiliency.Permanent(err)
		}
		out := attemptOutcomeOf(ctx, actx, err)
		rt.attempts[out].Inc()
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
		if callCtx.Err() != nil {
			code, err := contextError(callCtx)
			return w.fail(ctx, x, code, err)
		}
		return w.fail(ctx, x, providerErrorCode(res.err), res.err)
	}
	if res.resp == nil {
		return w.fail(ctx, x, providerv1.ErrorCode_ERROR_CODE_INTERNAL, errNoResponse)
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

// tracker counts the goroutines that serve requests, so Stop can wait for them. Unlike a
// sync.WaitGroup it may be waited on while counts still rise.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to zero
}

func (t *tracker) add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
	t.mu.Unlock()
}

// wait returns when the count is zero, or with the count left when ctx ends.
func (t *tracker) wait(ctx context.Context) (int, error) {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return 0, nil
	}
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return 0, nil
	case <-ctx.Done():
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.n, ctx.Err()
	}
}
