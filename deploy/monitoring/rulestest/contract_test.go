package rulestest

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
)

// documented is a metric of the contract: its type and label names.
type documented struct {
	typ    string
	labels []string
}

// readContract reads the metric rows of docs/observability.md's "Metrics contract".
func readContract(t *testing.T) map[string]documented {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "..", "docs", "observability.md"))
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	row := regexp.MustCompile("^\\| `([a-z0-9_]+)` \\| (counter|gauge|histogram|summary) \\|([^|]*)\\|")
	label := regexp.MustCompile(`^([a-z_]+)`)
	contract := map[string]documented{}
	section := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			section = line == "## Metrics contract"
		}
		m := row.FindStringSubmatch(line)
		if !section || m == nil {
			continue
		}
		d := documented{typ: m[2]}
		for l := range strings.SplitSeq(m[3], ";") {
			if n := label.FindString(strings.TrimSpace(l)); n != "" {
				d.labels = append(d.labels, n)
			}
		}
		contract[m[1]] = d
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, contract)
	return contract
}

// targetLabels are added by Prometheus to every scraped series; histogram buckets have le.
var targetLabels = []string{"job", "instance"}

// checkExpr parses a PromQL expression and checks every series it selects against the
// contract: the metric (a histogram's _bucket, _sum and _count series count as the
// histogram) and the labels it matches on.
func checkExpr(t *testing.T, where, expr string, contract map[string]documented) []string {
	t.Helper()
	e, err := promqlParser.ParseExpr(expr)
	require.NoError(t, err, "%s: %s", where, expr)
	var names []string
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		d, ok := contract[name]
		suffix := ""
		if !ok {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if base, cut := strings.CutSuffix(name, s); cut && contract[base].typ == "histogram" {
					d, ok, suffix = contract[base], true, s
					name = base
				}
			}
		}
		require.True(t, ok, "%s: %s is not in docs/observability.md", where, vs.Name)
		names = append(names, name)
		allowed := slices.Concat(d.labels, targetLabels)
		if suffix == "_bucket" {
			allowed = append(allowed, "le")
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel {
				continue
			}
			require.Contains(t, allowed, m.Name, "%s: %s has no label %s in docs/observability.md", where, name, m.Name)
		}
		return nil
	})
	require.NotEmpty(t, names, "%s: %s selects no metric", where, expr)
	return names
}

// TestRulesUseTheContract: every metric and label the alert rules select is documented.
func TestRulesUseTheContract(t *testing.T) {
	t.Parallel()
	contract := readContract(t)
	for _, r := range loadRules(t) {
		checkExpr(t, r.Alert+r.Record, r.Expr, contract)
	}
}

// grafanaVariables are what Grafana substitutes in a query before sending it.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// TestDashboardUsesTheContract: every query of the dashboard parses and selects only
// documented metrics and labels, and the dashboard charts what operators need.
func TestDashboardUsesTheContract(t *testing.T) {
	t.Parallel()
	contract := readContract(t)
	b, err := os.ReadFile(filepath.Join("..", "parley-dashboard.json"))
	require.NoError(t, err)
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &dash))
	require.NotEmpty(t, dash.UID)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			for _, n := range checkExpr(t, "panel "+p.Title, grafanaVariables.Replace(tg.Expr), contract) {
				used[n] = true
			}
		}
	}
	// Traffic, latency, cache, PII, worker saturation and audit lag each have a panel.
	for _, m := range []string{
		"parley_router_conversations_total", "parley_router_conversation_duration_seconds",
		"parley_worker_request_duration_seconds", "parley_rpc_server_duration_seconds",
		"parley_cache_hits_total", "parley_scrubber_findings_total", "parley_worker_inflight",
		"parley_worker_rejected_total", "parley_audit_ingest_lag", "parley_audit_dead_letters_total",
	} {
		require.True(t, used[m], "the dashboard does not chart %s", m)
	}
}
