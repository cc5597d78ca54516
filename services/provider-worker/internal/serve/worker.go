package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/libs/resiliency"
	"github.com/parleyhq/parley/libs/telemetry"
)

// SubjectPrefix is the prefix of the per-component work subjects; the queue group has the
// same name as the subject.
const SubjectPrefix = bus.ProviderSubjectPrefix

// DefaultAdmissionWait is how long a request waits for a free slot when Options leaves
// AdmissionWait zero.
const DefaultAdmissionWait = 100 * time.Millisecond

// Provider answers one conversation request. It must be safe for concurrent use and return
// once ctx is done. The worker takes ownership of the returned response: it sets worker_id
// and provider_latency on it.
type Provider interface {
	Converse(ctx context.Context, req *providerv1.Request) (*providerv1.Response, error)
}

// Options tunes a Worker.
type Options struct {
	// WorkerID names the worker in every reply.
	WorkerID string
	// Concurrency is the most calls the worker runs at once, over all components.
	Concurrency int
	// HeartbeatInterval is the time between two Heartbeat replies while a call runs.
	HeartbeatInterval time.Duration
	// PresenceInterval is the time between two presence announcements
	// (parley.workers.<component>); zero means DefaultPresenceInterval.
	PresenceInterval time.Duration
	// AdmissionWait is how long a request waits for a free slot before it is answered
	// UNAVAILABLE; zero means DefaultAdmissionWait.
	AdmissionWait time.Duration
	// PendingMsgs caps the messages the NATS client buffers per subscription; zero means
	// 4×Concurrency, at least 256.
	PendingMsgs int
	// Propagator reads the caller's trace context from message headers; nil means W3C
	// trace context.
	Propagator propagation.TextMapPropagator
	// TracerProvider creates the worker's spans; nil (or a no-op provider) means none,
	// and then no span work is done at all.
	TracerProvider trace.TracerProvider
	// GenAI names a component's provider (its type after "conversation.") and model for
	// the GenAI attributes of its spans; nil leaves them unnamed.
	GenAI func(component string) (provider, model string)
	// Logger receives one record per failed request; nil discards them.
	Logger *slog.Logger
	// Registerer receives the worker's metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Resiliency holds each component's timeout, retry and circuit breaker policies; nil
	// means one attempt per request, bounded only by the request's deadline.
	Resiliency *resiliency.Set
	// RetryAfter reads a provider error's Retry-After hint, which an UNAVAILABLE reply
	// passes on to the router (Error.retry_after); nil reads only hints attached with
	// resiliency.RetryAfterHint.
	RetryAfter func(error) (time.Duration, bool)
}

// Worker subscribes to the work subjects of its components and answers their requests. It
// starts once and stops once.
type Worker struct {
	nc        *nats.Conn
	opts      Options
	routes    []*route
	tracer    trace.Tracer
	tracing   bool
	logger    *slog.Logger
	heartbeat []byte
	// beatHeader carries HeartbeatInterval on every heartbeat; built once, only read.
	beatHeader nats.Header

	slots     chan struct{} // one token per running call
	waiting   atomic.Int64  // requests waiting for a slot
	active    tracker       // goroutines handling or waiting, awaited by Stop
	abort     chan struct{} // closed when Stop gives up waiting
	abortOnce sync.Once

	ctl streams // stream control: credits and cancels from routers

	mu       sync.Mutex
	presence *presence // announcements, from Start to Stop
	subs     []*nats.Subscription
	started  bool
	stopped  bool
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
	// chatName and chatAttrs name each provider call's span and give its GenAI request
	// attributes.
	chatName  string
	chatAttrs []attribute.KeyValue
	// queueWait, tokensIn, tokensOut and operationTime are the route's series of the
	// queue wait and the GenAI client metrics.
	queueWait, tokensIn, tokensOut, operationTime prometheus.Observer
	// errors counts failed provider calls by kind (errorKind).
	errors map[string]prometheus.Counter
	// tokensInTotal and tokensOutTotal count the tokens of successful calls.
	tokensInTotal, tokensOutTotal prometheus.Counter
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
	if opts.AdmissionWait < 0 || opts.PendingMsgs < 0 || opts.PresenceInterval < 0 {
		errs = append(errs, errors.New("admission wait, pending messages and presence interval must not be negative"))
	}
	if len(providers) == 0 {
		errs = append(errs, errors.New("no components to serve"))
	}
	for name, p := range providers {
		if err := component.CheckName(name); err != nil {
			errs = append(errs, fmt.Errorf("component name %q is not a valid subject token: %w", name, err))
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
	if opts.PresenceInterval == 0 {
		opts.PresenceInterval = DefaultPresenceInterval
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
	_, tracingOff := opts.TracerProvider.(noop.TracerProvider)
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
		nc:         nc,
		opts:       opts,
		tracer:     opts.TracerProvider.Tracer("github.com/parleyhq/parley/services/provider-worker/internal/serve"),
		tracing:    !tracingOff,
		logger:     opts.Logger,
		heartbeat:  heartbeat,
		beatHeader: nats.Header{bus.HeartbeatIntervalHeader: []string{opts.HeartbeatInterval.String()}},
		slots:      make(chan struct{}, opts.Concurrency),
		abort:      make(chan struct{}),
	}
	names := make([]string, 0, len(providers))
	for name := range providers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		rt := m.route(name, providers[name], opts.Resiliency.ForComponent(name))
		var system, model string
		if opts.GenAI != nil {
			system, model = opts.GenAI(name)
		}
		rt.chatName = strings.TrimSpace(telemetry.OperationChat + " " + model)
		rt.chatAttrs = append(telemetry.GenAIRequestAttrs(system, model), attribute.String("parley.component", name))
		sys := telemetry.GenAISystemOf(system)
		rt.tokensIn = m.tokenUsage.WithLabelValues(telemetry.OperationChat, sys, model, "input")
		rt.tokensOut = m.tokenUsage.WithLabelValues(telemetry.OperationChat, sys, model, "output")
		rt.operationTime = m.operationTime.WithLabelValues(telemetry.OperationChat, sys, model)
		w.routes = append(w.routes, rt)
	}
	for _, c := range []prometheus.Collector{newBreakerStates(w.routes), newBacklog(w)} {
		if err := opts.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("register worker metrics: %w", err)
		}
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
