package serve

import (
	"context"
	"errors"
	"fmt"

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
	requests *prometheus.CounterVec
	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
	rejected *prometheus.CounterVec
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
	var errs []error
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inflight, m.rejected, m.attempts} {
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
		name:     name,
		subject:  SubjectPrefix + name,
		provider: p,
		policy:   policy,
		requests: make(map[outcome]prometheus.Counter),
		attempts: make(map[attemptOutcome]prometheus.Counter),
		duration: m.duration.WithLabelValues(name),
		inflight: m.inflight.WithLabelValues(name),
		rejected: m.rejected.WithLabelValues(name),
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
