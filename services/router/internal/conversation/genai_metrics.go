package conversation

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleyhq/parley/libs/telemetry"
	"github.com/parleyhq/parley/services/router/internal/crossing"
)

// genAIDurationBuckets are the explicit bucket boundaries OpenTelemetry's GenAI semantic
// conventions give gen_ai.server.request.duration, in seconds.
var genAIDurationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}

// genAITimeToFirstTokenBuckets and genAITimePerOutputTokenBuckets are the bucket
// boundaries the conventions give gen_ai.server.time_to_first_token and
// gen_ai.server.time_per_output_token, in seconds.
var (
	genAITimeToFirstTokenBuckets   = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0}
	genAITimePerOutputTokenBuckets = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5}
)

// daprLatencyBuckets are daprd's default latency distribution, in milliseconds.
var daprLatencyBuckets = []float64{1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300, 400,
	500, 650, 800, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000}

// stageBuckets spread from 50µs to 10s: most stages take a fraction of a millisecond.
var stageBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}

// Stages of the gateway's own time, the label values of parley_router_stage_duration_seconds.
var stages = []crossing.Kind{crossing.Scrub, crossing.CacheLookup, crossing.CacheWait, crossing.Dispatch, crossing.AuditPublish}

// genAIMetrics are the conversation metrics named by OpenTelemetry's GenAI semantic
// conventions and by daprd, so dashboards built for either chart Parley, and the
// gateway's time per stage.
type genAIMetrics struct {
	appID, namespace string
	requestDuration  *prometheus.HistogramVec
	timeToFirstToken *prometheus.HistogramVec
	timePerOutput    *prometheus.HistogramVec
	daprCount        *prometheus.CounterVec
	daprLatency      *prometheus.HistogramVec
	stage            map[crossing.Kind]prometheus.Observer
}

// genAILabels are the labels of the GenAI server metrics, bounded by the configured
// components.
var genAILabels = []string{"gen_ai_operation_name", "gen_ai_system", "gen_ai_request_model"}

func newGenAIMetrics(reg prometheus.Registerer, appID, namespace string) (*genAIMetrics, error) {
	m := &genAIMetrics{
		appID: appID, namespace: namespace,
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gen_ai_server_request_duration_seconds",
			Help:    "GenAI server request duration (OpenTelemetry gen_ai.server.request.duration): time from request to answer inside the router, by operation, provider and requested model.",
			Buckets: genAIDurationBuckets,
		}, genAILabels),
		timeToFirstToken: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gen_ai_server_time_to_first_token_seconds",
			Help:    "GenAI time to first token (OpenTelemetry gen_ai.server.time_to_first_token): time from request to the first delta sent, for streamed conversations that succeeded, by operation, provider and requested model.",
			Buckets: genAITimeToFirstTokenBuckets,
		}, genAILabels),
		timePerOutput: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gen_ai_server_time_per_output_token_seconds",
			Help:    "GenAI time per output token (OpenTelemetry gen_ai.server.time_per_output_token): (request duration - time to first token) / (output tokens - 1), for streamed provider answers that succeeded with more than one output token.",
			Buckets: genAITimePerOutputTokenBuckets,
		}, genAILabels),
		daprCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dapr_component_conversation_count",
			Help: "The number of operations performed on the conversation component (as daprd).",
		}, []string{"app_id", "component", "namespace", "success"}),
		daprLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dapr_component_conversation_latencies",
			Help:    "The latency of the response from the conversation component, in milliseconds (as daprd).",
			Buckets: daprLatencyBuckets,
		}, []string{"app_id", "component", "namespace", "success"}),
	}
	stage := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "parley_router_stage_duration_seconds",
		Help:    "The gateway's own time per conversation, by stage: scrub, cache_lookup, cache_wait, dispatch (less the provider's time), audit_publish.",
		Buckets: stageBuckets,
	}, []string{"stage"})
	for _, c := range []prometheus.Collector{m.requestDuration, m.timeToFirstToken, m.timePerOutput, m.daprCount, m.daprLatency, stage} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metric: %w", err)
		}
	}
	m.stage = make(map[crossing.Kind]prometheus.Observer, len(stages))
	for _, k := range stages {
		m.stage[k] = stage.WithLabelValues(string(k))
	}
	return m, nil
}

// observe records one conversation (its series resolved) that took elapsed, of which providerTime at
// the provider, with the time its crossings took.
func (m *genAIMetrics) observe(series *convSeries, ok bool, elapsed, providerTime time.Duration, crossed crossing.Summary) {
	series.requestDuration.Observe(elapsed.Seconds())
	success := 0
	if ok {
		success = 1
	}
	series.daprCount[success].Inc()
	series.daprLatency[success].Observe(float64(elapsed) / float64(time.Millisecond))
	for k, d := range crossed.Time {
		if k == crossing.Dispatch {
			d = max(d-providerTime, 0)
		}
		if o := m.stage[k]; o != nil {
			o.Observe(d.Seconds())
		}
	}
}

// observeStream records the streaming metrics of a streamed conversation of comp that
// succeeded in elapsed, its first delta sent after ttft: the time to first token, and,
// for an answer a provider generated (not a cache hit, whose replay has no pace of its
// own) with more than one output token, the time per output token after the first.
func (m *genAIMetrics) observeStream(comp Component, elapsed, ttft time.Duration, cacheHit bool, outputTokens uint64) {
	system := telemetry.GenAISystemOf(comp.Type)
	m.timeToFirstToken.WithLabelValues(telemetry.OperationChat, system, comp.Model).Observe(ttft.Seconds())
	if cacheHit || outputTokens < 2 {
		return
	}
	perToken := max(elapsed-ttft, 0).Seconds() / float64(outputTokens-1)
	m.timePerOutput.WithLabelValues(telemetry.OperationChat, system, comp.Model).Observe(perToken)
}
