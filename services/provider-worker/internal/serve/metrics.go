package serve

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// outcome is the value of the outcome label of parley_worker_requests_total.
type outcome string

// Outcomes: one per reply code, plus rejected for requests answered "worker saturated"
// without being started.
const (
	outcomeOK               outcome = "ok"
	outcomeInvalidArgument  outcome = "invalid_argument"
	outcomeNotFound         outcome = "not_found"
	outcomeUnavailable      outcome = "unavailable"
	outcomeDeadlineExceeded outcome = "deadline_exceeded"
	outcomeInternal         outcome = "internal"
	outcomeRejected         outcome = "rejected"
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

type metrics struct {
	requests *prometheus.CounterVec
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
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inflight, m.rejected} {
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
func (m *metrics) route(name string, p Provider) *route {
	rt := &route{
		name:     name,
		subject:  SubjectPrefix + name,
		provider: p,
		requests: make(map[outcome]prometheus.Counter),
		duration: m.duration.WithLabelValues(name),
		inflight: m.inflight.WithLabelValues(name),
		rejected: m.rejected.WithLabelValues(name),
	}
	for _, o := range []outcome{
		outcomeOK, outcomeInvalidArgument, outcomeNotFound, outcomeUnavailable,
		outcomeDeadlineExceeded, outcomeInternal, outcomeRejected,
	} {
		rt.requests[o] = m.requests.WithLabelValues(name, string(o))
	}
	return rt
}
