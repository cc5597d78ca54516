package conversation

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/libs/telemetry"
)

// seriesKey names the metric series of one API and component.
type seriesKey struct {
	api              auditv1.Api
	name, typ, model string
}

// convSeries are the metric series a conversation of one API and component lands in,
// resolved once: observing one is then an atomic add, with no label hashing, no lookup
// under the vector's lock and no label string built per request.
type convSeries struct {
	conversations   [2][3]prometheus.Counter // [ok, error][off, miss, hit]
	duration        prometheus.Observer
	requestDuration prometheus.Observer
	daprCount       [2]prometheus.Counter  // [success=false, success=true]
	daprLatency     [2]prometheus.Observer // as daprCount
}

// cacheStates and the indexes below are convSeries.conversations' label values.
var cacheStates = [3]string{"off", "miss", "hit"}

const (
	cacheOff = iota
	cacheMiss
	cacheHitIdx
)

// seriesCache holds the resolved series of every API and component seen. It grows with
// the configured components, as the metric vectors themselves do.
type seriesCache struct {
	m sync.Map // seriesKey -> *convSeries
}

// get returns the series of api and comp, resolving them on first use.
func (c *seriesCache) get(m *serviceMetrics, api auditv1.Api, comp Component) *convSeries {
	k := seriesKey{api: api, name: comp.Name, typ: comp.Type, model: comp.Model}
	if s, ok := c.m.Load(k); ok {
		return s.(*convSeries) //nolint:forcetypeassert // only *convSeries are stored
	}
	apiName := strings.ToLower(strings.TrimPrefix(api.String(), "API_"))
	s := &convSeries{
		duration:        m.duration.WithLabelValues(apiName, comp.Name),
		requestDuration: m.genAI.requestDuration.WithLabelValues(telemetry.OperationChat, telemetry.GenAISystemOf(comp.Type), comp.Model),
	}
	for i, status := range [2]string{"ok", "error"} {
		for j, cache := range cacheStates {
			s.conversations[i][j] = m.conversations.WithLabelValues(apiName, comp.Name, status, cache)
		}
	}
	for i, success := range [2]string{"false", "true"} {
		s.daprCount[i] = m.genAI.daprCount.WithLabelValues(m.genAI.appID, comp.Name, m.genAI.namespace, success)
		s.daprLatency[i] = m.genAI.daprLatency.WithLabelValues(m.genAI.appID, comp.Name, m.genAI.namespace, success)
	}
	actual, _ := c.m.LoadOrStore(k, s)
	return actual.(*convSeries) //nolint:forcetypeassert // only *convSeries are stored
}
