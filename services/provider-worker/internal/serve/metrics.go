package serve

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/resiliency"
)

// outcome is the value of the outcome label of parley_worker_requests_total.
type outcome string

// Outcomes: one per reply code, plus rejected for requests answered "worker saturated"
// without being started and cancelled for streams the router cancelled (no reply).
const (
	outcomeOK               outcome = "ok"
	outcomeInvalidArgument  outcome = "invalid_argument"
	outcomeNotFound         outcome = "not_found"
	outcomeUnavailable      outcome = "unavailable"
	outcomeDeadlineExceeded outcome = "deadline_exceeded"
	outcomeInternal         outcome = "internal"
	outcomeRejected         outcome = "rejected"
	outcomeCancelled        outcome = "cancelled"
)

func outcomeOf(code providerv1.ErrorCode) outcome {
	switch code {
	case providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
		return outcomeInvalidArgument
	case providerv1.ErrorCode_ERROR_CODE_NOT_FOUND:
		return outcomeNotFound
	case providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE:
		return outcomeUnavailable
	case providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED:
		return outcomeDeadlineExceeded
	default:
		return outcomeInternal
	}
}

// attemptOutcome is the value of the outcome label of parley_worker_attempts_total.
type attemptOutcome string

// Attempt outcomes: how each provider call under the resiliency policy ended, plus the calls
// the circuit breaker refused.
const (
	attemptOK              attemptOutcome = "ok"
	attemptError           attemptOutcome = "error"
	attemptTimeout         attemptOutcome = "timeout"
	attemptPermanent       attemptOutcome = "permanent"
	attemptCircuitOpen     attemptOutcome = "circuit_open"
	attemptTooManyRequests attemptOutcome = "too_many_requests"
)

// attemptOutcomeOf classifies one provider call: ctx is the request's context, actx the
// attempt's, which the policy's timeout may end first.
func attemptOutcomeOf(ctx, actx context.Context, err error) attemptOutcome {
	switch {
	case err == nil:
		return attemptOK
	case ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded):
		return attemptTimeout
	case !resiliency.IsRetryable(err):
		return attemptPermanent
	default:
		return attemptError
	}
}

type metrics struct {
	tokens        *prometheus.CounterVec
	providerErrs  *prometheus.CounterVec
	queueWait     *prometheus.HistogramVec
	tokenUsage    *prometheus.HistogramVec
	operationTime *prometheus.HistogramVec
	requests      *prometheus.CounterVec
	attempts      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	inflight      *prometheus.GaugeVec
	rejected      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_worker_requests_total",
			Help: "Provider requests answered by this worker, by component and outcome.",
		}, []string{"component", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "parley_worker_request_duration_seconds",
			Help: "Time from receipt of a started request to its final reply, by component.",
			// LLM calls take from milliseconds (echo, cache-like providers) to minutes.
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"component"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parley_worker_inflight",
			Help: "Provider calls running on this worker, by component.",
		}, []string{"component"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_worker_rejected_total",
			Help: "Requests answered UNAVAILABLE \"worker saturated\" because no slot freed in time, by component.",
		}, []string{"component"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_worker_attempts_total",
			Help: "Provider calls made under the component's resiliency policy, by component and outcome " +
				"(ok, error, timeout, permanent), and calls its circuit breaker refused (circuit_open, too_many_requests).",
		}, []string{"component", "outcome"}),
	}
	m.queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "parley_worker_queue_wait_seconds",
		Help:    "Time a request waited in this worker for a free slot before its provider call started, by component.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"component"})
	m.providerErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_worker_provider_errors_total",
		Help: "Failed provider calls (attempts), by component and kind (rate_limited, quota, auth, billing, not_found, bad_request, server_error, timeout, unavailable, empty_response, internal, other).",
	}, []string{"component", "kind"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_worker_tokens_total",
		Help: "Tokens the provider reported for successful calls, by component and type (input, output).",
	}, []string{"component", "type"})
	genAI := []string{"gen_ai_operation_name", "gen_ai_system", "gen_ai_request_model"}
	m.tokenUsage = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "gen_ai_client_token_usage",
		Help: "Tokens used per provider call (OpenTelemetry gen_ai.client.token.usage), by operation, provider, requested model and token type (input, output).",
		// The semantic conventions' explicit bucket boundaries.
		Buckets: []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864},
	}, append(slices.Clone(genAI), "gen_ai_token_type"))
	m.operationTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gen_ai_client_operation_duration_seconds",
		Help:    "Duration of each provider call (OpenTelemetry gen_ai.client.operation.duration), by operation, provider and requested model.",
		Buckets: []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92},
	}, genAI)
	var errs []error
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inflight, m.rejected, m.attempts, m.queueWait, m.tokenUsage, m.operationTime, m.providerErrs, m.tokens} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("register worker metrics: %w", errors.Join(errs...))
	}
	return m, nil
}

// route binds the metrics of component name, so that every series exists from the start.
func (m *metrics) route(name string, p Provider, policy *resiliency.Policy) *route {
	rt := &route{
		name:           name,
		subject:        SubjectPrefix + name,
		provider:       p,
		policy:         policy,
		requests:       make(map[outcome]prometheus.Counter),
		attempts:       make(map[attemptOutcome]prometheus.Counter),
		duration:       m.duration.WithLabelValues(name),
		inflight:       m.inflight.WithLabelValues(name),
		rejected:       m.rejected.WithLabelValues(name),
		queueWait:      m.queueWait.WithLabelValues(name),
		errors:         make(map[string]prometheus.Counter, len(errorKinds)),
		tokensInTotal:  m.tokens.WithLabelValues(name, "input"),
		tokensOutTotal: m.tokens.WithLabelValues(name, "output"),
	}
	for _, k := range errorKinds {
		rt.errors[k] = m.providerErrs.WithLabelValues(name, k)
	}
	for _, o := range []outcome{
		outcomeOK, outcomeInvalidArgument, outcomeNotFound, outcomeUnavailable,
		outcomeDeadlineExceeded, outcomeInternal, outcomeRejected, outcomeCancelled,
	} {
		rt.requests[o] = m.requests.WithLabelValues(name, string(o))
	}
	for _, o := range []attemptOutcome{
		attemptOK, attemptError, attemptTimeout, attemptPermanent, attemptCircuitOpen, attemptTooManyRequests,
	} {
		rt.attempts[o] = m.attempts.WithLabelValues(name, string(o))
	}
	return rt
}

// breakerStates reports parley_worker_circuit_breaker_state, read from each component's
// breaker at scrape time, so that an open breaker whose timeout has passed shows half-open.
type breakerStates struct {
	desc   *prometheus.Desc
	routes []*route
}

func newBreakerStates(routes []*route) *breakerStates {
	return &breakerStates{
		desc: prometheus.NewDesc("parley_worker_circuit_breaker_state",
			"State of the component's circuit breaker: 0 closed, 1 half-open, 2 open; 0 without a circuit breaker.",
			[]string{"component"}, nil),
		routes: routes,
	}
}

// Describe implements prometheus.Collector.
func (b *breakerStates) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

// Collect implements prometheus.Collector.
func (b *breakerStates) Collect(ch chan<- prometheus.Metric) {
	for _, rt := range b.routes {
		m, err := prometheus.NewConstMetric(b.desc, prometheus.GaugeValue, float64(rt.policy.State()), rt.name)
		if err != nil {
			m = prometheus.NewInvalidMetric(b.desc, err)
		}
		ch <- m
	}
}

// backlog reports, at scrape time, the requests this worker holds but has not started:
// those the NATS client buffered for each component's subscription
// (parley_worker_nats_pending_messages) and those waiting for a free slot
// (parley_worker_waiting_requests).
type backlog struct {
	w                *Worker
	pending, waiting *prometheus.Desc
}

func newBacklog(w *Worker) *backlog {
	return &backlog{
		w: w,
		pending: prometheus.NewDesc("parley_worker_nats_pending_messages",
			"Requests the NATS client has buffered for the component's subscription, not yet handed to the worker.",
			[]string{"component"}, nil),
		waiting: prometheus.NewDesc("parley_worker_waiting_requests",
			"Requests waiting in this worker for a free slot.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (b *backlog) Describe(ch chan<- *prometheus.Desc) { ch <- b.pending; ch <- b.waiting }

// Collect implements prometheus.Collector.
func (b *backlog) Collect(ch chan<- prometheus.Metric) {
	b.w.mu.Lock()
	subs := b.w.subs
	b.w.mu.Unlock()
	for i, rt := range b.w.routes {
		n := 0
		if i < len(subs) {
			n, _, _ = subs[i].Pending() // an error means a closed subscription: nothing pending
		}
		ch <- prometheus.MustNewConstMetric(b.pending, prometheus.GaugeValue, float64(max(n, 0)), rt.name)
	}
	ch <- prometheus.MustNewConstMetric(b.waiting, prometheus.GaugeValue, float64(b.w.waiting.Load()))
}
