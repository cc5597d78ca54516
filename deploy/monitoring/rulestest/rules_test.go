package rulestest

import (
	"context"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/stretchr/testify/require"
)

// evalInterval is how often Prometheus evaluates the rules (its default
// evaluation_interval); a rule with `for: d` fires once its expression has returned the
// series at every evaluation for d.
const evalInterval = time.Minute

// alertCase is a set of synthetic series (promqltest `load` syntax, starting at time 0)
// and the alerts expected to fire at time at: one label subset per firing alert.
type alertCase struct {
	name string
	load string
	at   time.Duration
	want []map[string]string
}

// cases holds every alert rule's cases. Each rule needs at least one case where it fires
// and one where it stays quiet.
var cases = map[string][]alertCase{
	"ParleyConversationErrors": {
		{name: "10% errors for 30m fire, 1% does not", load: `
load 1m
  parley_router_conversations_total{api="alpha2",component="echo",status="ok",cache="miss"} 0+90x30
  parley_router_conversations_total{api="alpha2",component="echo",status="error",cache="miss"} 0+10x30
  parley_router_conversations_total{api="alpha2",component="other",status="ok",cache="miss"} 0+99x30
  parley_router_conversations_total{api="alpha2",component="other",status="error",cache="miss"} 0+1x30
`, at: 30 * time.Minute, want: []map[string]string{{"component": "echo"}}},
		{name: "errors for the last 5m only are not yet 10m", load: `
load 1m
  parley_router_conversations_total{api="alpha2",component="echo",status="ok",cache="miss"} 0+90x30
  parley_router_conversations_total{api="alpha2",component="echo",status="error",cache="miss"} 0x25 10+10x5
`, at: 30 * time.Minute},
	},
	"ParleyProviderAuthFailures": {
		{name: "auth errors for 20m fire, rate limits do not", load: `
load 1m
  parley_worker_provider_errors_total{component="openai",kind="auth"} 0+3x30
  parley_worker_provider_errors_total{component="openai",kind="rate_limited"} 0+50x30
  parley_worker_provider_errors_total{component="claude",kind="rate_limited"} 0+50x30
  parley_worker_provider_errors_total{component="claude",kind="server_error"} 0+5x30
`, at: 30 * time.Minute, want: []map[string]string{{"component": "openai", "kind": "auth"}}},
		{name: "an old quota error is quiet", load: `
load 1m
  parley_worker_provider_errors_total{component="openai",kind="quota"} 0x5 1x25
`, at: 30 * time.Minute},
		{name: "2 minutes of auth errors are not yet 5", load: `
load 1m
  parley_worker_provider_errors_total{component="openai",kind="auth"} 0x28 1+1x2
`, at: 30 * time.Minute},
	},
	"ParleyRPCServerErrors": {
		{name: "unavailable fires, not_found does not", load: `
load 1m
  parley_rpc_server_handled_total{job="cache",procedure="/parley.cache.v1.CacheService/Lookup",code="ok"} 0+100x30
  parley_rpc_server_handled_total{job="cache",procedure="/parley.cache.v1.CacheService/Lookup",code="unavailable"} 0+20x30
  parley_rpc_server_handled_total{job="cache",procedure="/parley.cache.v1.CacheService/Get",code="ok"} 0+100x30
  parley_rpc_server_handled_total{job="cache",procedure="/parley.cache.v1.CacheService/Get",code="not_found"} 0+50x30
`, at: 30 * time.Minute, want: []map[string]string{{"job": "cache", "procedure": "/parley.cache.v1.CacheService/Lookup"}}},
		{name: "all ok", load: `
load 1m
  parley_rpc_server_handled_total{job="router",procedure="/parley.conversation.v1.ConversationService/Converse",code="ok"} 0+100x30
`, at: 30 * time.Minute},
	},
	"ParleyConversationLatencyHigh": {
		{name: "answers over 10s fire, answers under 1s do not", load: `
load 1m
  parley_router_conversation_duration_seconds_bucket{api="alpha2",component="slow",le="1"} 0x30
  parley_router_conversation_duration_seconds_bucket{api="alpha2",component="slow",le="10"} 0x30
  parley_router_conversation_duration_seconds_bucket{api="alpha2",component="slow",le="30"} 0+10x30
  parley_router_conversation_duration_seconds_bucket{api="alpha2",component="slow",le="+Inf"} 0+10x30
  parley_router_conversation_duration_seconds_bucket{api="alpha2",component="fast",le="1"} 0+10x30
  parley_router_conversation_duration_seconds_bucket{api="alpha2",component="fast",le="10"} 0+10x30
  parley_router_conversation_duration_seconds_bucket{api="alpha2",component="fast",le="30"} 0+10x30
  parley_router_conversation_duration_seconds_bucket{api="alpha2",component="fast",le="+Inf"} 0+10x30
`, at: 30 * time.Minute, want: []map[string]string{{"component": "slow"}}},
		{name: "slow for the last 5m only is not yet 10m", load: `
load 1m
  parley_router_conversation_duration_seconds_bucket{api="alpha2",component="slow",le="10"} 0x30
  parley_router_conversation_duration_seconds_bucket{api="alpha2",component="slow",le="30"} 0x25 10+10x5
  parley_router_conversation_duration_seconds_bucket{api="alpha2",component="slow",le="+Inf"} 0x25 10+10x5
`, at: 30 * time.Minute},
	},
	"ParleyAuditLagHigh": {
		{name: "20000 pending for 30m fire", load: `
load 1m
  parley_audit_ingest_lag{job="audit",instance="a1"} 20000x30
`, at: 30 * time.Minute, want: []map[string]string{{"job": "audit"}}},
		{name: "a burst of 5m does not", load: `
load 1m
  parley_audit_ingest_lag{job="audit",instance="a1"} 0x25 20000x5
`, at: 30 * time.Minute},
		{name: "a small steady lag does not", load: `
load 1m
  parley_audit_ingest_lag{job="audit",instance="a1"} 50x30
`, at: 30 * time.Minute},
	},
	"ParleyAuditDeadLetters": {
		{name: "a new dead letter fires, an old one does not", load: `
load 1m
  parley_audit_dead_letters_total{reason="decode"} 0x25 1x5
  parley_audit_dead_letters_total{reason="invalid"} 0x30
  parley_audit_dead_letters_total{reason="max_deliver"} 1x30
`, at: 30 * time.Minute, want: []map[string]string{{"reason": "decode"}}},
		{name: "none", load: `
load 1m
  parley_audit_dead_letters_total{reason="decode"} 0x30
`, at: 30 * time.Minute},
	},
	"ParleyAuditPublishFailures": {
		{name: "new failures fire", load: `
load 1m
  parley_router_audit_publish_failures_total{job="router",instance="r1"} 0x25 2x5
`, at: 30 * time.Minute, want: []map[string]string{{}}},
		{name: "failures an hour ago do not", load: `
load 1m
  parley_router_audit_publish_failures_total{job="router",instance="r1"} 3x30
`, at: 30 * time.Minute},
	},
	"ParleyCircuitOpen": {
		{name: "open fires, half-open does not", load: `
load 1m
  parley_worker_circuit_breaker_state{component="openai",instance="w1"} 0x25 2x5
  parley_worker_circuit_breaker_state{component="echo",instance="w1"} 1x30
`, at: 30 * time.Minute, want: []map[string]string{{"component": "openai"}}},
		{name: "opened this minute is not yet 1m", load: `
load 1m
  parley_worker_circuit_breaker_state{component="openai",instance="w1"} 0x29 2
`, at: 30 * time.Minute},
	},
	"ParleyWorkersSaturated": {
		{name: "rejections fire, none do not", load: `
load 1m
  parley_worker_rejected_total{component="openai",instance="w1"} 0+5x30
  parley_worker_rejected_total{component="echo",instance="w1"} 0x30
`, at: 30 * time.Minute, want: []map[string]string{{"component": "openai"}}},
		{name: "rejections that stopped 10m ago do not", load: `
load 1m
  parley_worker_rejected_total{component="openai",instance="w1"} 0+5x20 100x10
`, at: 30 * time.Minute},
	},
	// At 30m, time() is 1800.
	"ParleyCertificateExpiresSoon": {
		{name: "2 days and 1 hour left fire, 10 days do not", load: `
load 1m
  parley_tls_certificate_not_after_seconds{job="router",instance="r1"} 174600x30
  parley_tls_certificate_not_after_seconds{job="cache",instance="c1"} 5400x30
  parley_tls_certificate_not_after_seconds{job="audit",instance="a1"} 865800x30
`, at: 30 * time.Minute, want: []map[string]string{{"job": "router"}, {"job": "cache"}}},
		{name: "a renewal reloaded 5m ago ends it", load: `
load 1m
  parley_tls_certificate_not_after_seconds{job="router",instance="r1"} 174600x25 865800x5
`, at: 30 * time.Minute},
	},
	"ParleyCertificateExpiresToday": {
		{name: "1 hour left fires, 2 days do not", load: `
load 1m
  parley_tls_certificate_not_after_seconds{job="router",instance="r1"} 174600x30
  parley_tls_certificate_not_after_seconds{job="cache",instance="c1"} 5400x30
`, at: 30 * time.Minute, want: []map[string]string{{"job": "cache", "instance": "c1"}}},
		{name: "10 days left", load: `
load 1m
  parley_tls_certificate_not_after_seconds{job="router",instance="r1"} 865800x30
`, at: 30 * time.Minute},
	},
}

// promqlParser parses as the rule manager does.
var promqlParser = parser.NewParser(parser.Options{})

func loadRules(t *testing.T) []rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.ParseFile(filepath.Join("..", "alerts.yaml"), false, model.UTF8Validation, promqlParser, slog.New(slog.DiscardHandler))
	require.Empty(t, errs)
	var rules []rulefmt.Rule
	for _, g := range groups.Groups {
		rules = append(rules, g.Rules...)
	}
	require.NotEmpty(t, rules)
	return rules
}

// TestAlertRules evaluates every alert rule over its cases.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	rules := loadRules(t)
	var names []string
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		names = append(names, r.Alert)
		require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], "%s: severity", r.Alert)
		require.NotEmpty(t, r.Annotations["summary"], "%s: summary", r.Alert)
		require.NotEmpty(t, r.Annotations["description"], "%s: description", r.Alert)
		cs := cases[r.Alert]
		fires, quiet := false, false
		for _, c := range cs {
			fires = fires || len(c.want) > 0
			quiet = quiet || len(c.want) == 0
		}
		require.True(t, fires, "%s: no case where it fires", r.Alert)
		require.True(t, quiet, "%s: no case where it stays quiet", r.Alert)
		for _, c := range cs {
			t.Run(r.Alert+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				got := firing(t, r.Expr, time.Duration(r.For), c)
				require.Len(t, got, len(c.want), "firing: %v", got)
				for _, w := range c.want {
					require.True(t, slices.ContainsFunc(got, func(l labels.Labels) bool { return hasAll(l, w) }),
						"no alert with %v among %v", w, got)
				}
			})
		}
	}
	for name := range cases {
		require.Contains(t, names, name, "cases for an alert alerts.yaml does not have")
	}
}

// firing returns the label sets expr returns at every evaluation from c.at-forDur to c.at:
// the alerts firing at c.at.
func firing(t *testing.T, expr string, forDur time.Duration, c alertCase) []labels.Labels {
	t.Helper()
	storage := promqltest.LoadedStorage(t, c.load)
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1_000_000)
	var active map[string]labels.Labels
	for ts := c.at - forDur; ts <= c.at; ts += evalInterval {
		q, err := engine.NewInstantQuery(context.Background(), storage, nil, expr, time.Unix(0, 0).UTC().Add(ts))
		require.NoError(t, err)
		res := q.Exec(context.Background())
		require.NoError(t, res.Err)
		vec, err := res.Vector()
		require.NoError(t, err)
		now := map[string]labels.Labels{}
		for _, s := range vec {
			now[s.Metric.String()] = s.Metric
		}
		q.Close()
		if active == nil {
			active = now
			continue
		}
		for k := range active {
			if _, ok := now[k]; !ok {
				delete(active, k)
			}
		}
	}
	return slices.Collect(maps.Values(active))
}

func hasAll(l labels.Labels, want map[string]string) bool {
	for k, v := range want {
		if l.Get(k) != v {
			return false
		}
	}
	return true
}
