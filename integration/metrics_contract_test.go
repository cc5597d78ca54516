package integration_test

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
)

// contractMetric is one row of a metrics table of docs/observability.md.
type contractMetric struct {
	name   string
	typ    dto.MetricType
	labels []string            // label names, sorted
	values map[string][]string // label name -> the only values it takes, when listed
	always bool                // series exist from start-up
}

// everyService is the heading of the table of metrics every service exports.
const everyService = "Every service"

// readContract parses the tables of the "Metrics contract" section of docs/observability.md,
// by heading (a service name or everyService).
func readContract(t *testing.T) map[string][]contractMetric {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "docs", "observability.md"))
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	types := map[string]dto.MetricType{
		"counter": dto.MetricType_COUNTER, "gauge": dto.MetricType_GAUGE,
		"histogram": dto.MetricType_HISTOGRAM, "summary": dto.MetricType_SUMMARY,
	}
	listed := regexp.MustCompile(`^([a-z_]+)(?: \(([^)]*)\))?$`)
	contract := map[string][]contractMetric{}
	section, heading := false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			section = line == "## Metrics contract"
			continue
		case strings.HasPrefix(line, "### "):
			heading = strings.TrimPrefix(line, "### ")
			continue
		}
		if !section || heading == "" || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		require.GreaterOrEqual(t, len(cells), 5, "contract row: %s", line)
		m := contractMetric{
			name:   strings.Trim(strings.TrimSpace(cells[0]), "`"),
			values: map[string][]string{},
			always: strings.TrimSpace(cells[3]) == "always",
		}
		typ, ok := types[strings.TrimSpace(cells[1])]
		require.True(t, ok, "contract row %s: unknown type %q", m.name, cells[1])
		m.typ = typ
		if ls := strings.TrimSpace(cells[2]); ls != "" {
			for l := range strings.SplitSeq(ls, ";") {
				g := listed.FindStringSubmatch(strings.TrimSpace(l))
				require.NotNil(t, g, "contract row %s: label %q", m.name, l)
				m.labels = append(m.labels, g[1])
				if g[2] != "" {
					m.values[g[1]] = strings.Split(g[2], ", ")
				}
			}
		}
		slices.Sort(m.labels)
		contract[heading] = append(contract[heading], m)
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, contract[everyService], "docs/observability.md: no %q table", everyService)
	return contract
}

// scrapeFamilies parses base's /metrics.
func scrapeFamilies(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/plain") // the text format, not protobuf
	res, err := scrapeClient().Do(req)
	require.NoError(t, err)
	defer func() { _ = res.Body.Close() }()
	require.Equal(t, http.StatusOK, res.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(res.Body)
	require.NoError(t, err)
	return fams
}

// Label values that would make a series per request: ids and free text.
var (
	uuidLike = regexp.MustCompile(`(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}`)
	longHex  = regexp.MustCompile(`(?i)[0-9a-f]{16,}`)
)

// maxLabelValues bounds the values one label of one metric takes in the suite's stack: the
// components, procedures and entity types are tens, never one per request.
const maxLabelValues = 64

// TestMetricsContract runs conversations on every API, one of them streamed, then scrapes every service: each
// metric of docs/observability.md exists (or, when it appears on an event, has not
// appeared yet) with its type and label names, each listed label value is one of the
// documented ones, no service exports an undocumented parley_ metric, and no label value
// is an id, free text or the request's own content.
func TestMetricsContract(t *testing.T) {
	need(t)
	t.Parallel()
	contract := readContract(t)

	// Conversations through the Dapr HTTP API (scrubbed, cached twice) and the native API,
	// each carrying a nonce that must never become a label value.
	n := nonce(t)
	res := post(t, "/v1.0-alpha1/conversation/echo/converse",
		`{"contextID":"ctx-`+n+`","inputs":[{"content":"mail carol@example.net `+n+`","scrubPII":true}]}`)
	require.Equal(t, http.StatusOK, res.status, res.body)
	for range 2 {
		res = post(t, "/v1.0-alpha2/conversation/echo/converse", userText("metrics "+n))
		require.Equal(t, http.StatusOK, res.status, res.body)
	}
	client := conversationv1connect.NewConversationServiceClient(h2cClient(), st.URL("router"), connect.WithGRPC())
	_, err := client.Converse(t.Context(), &conversationv1.ConverseRequest{
		Component: "echo-nocache",
		Messages:  []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: "native " + n}},
		ContextId: "native-" + n,
	})
	require.NoError(t, err)
	// A streamed conversation (echo streams word by word, and reports a token per word),
	// for the streaming GenAI metrics.
	stream, err := client.ConverseStream(t.Context(), &conversationv1.ConverseStreamRequest{Request: &conversationv1.ConverseRequest{
		Component: "echo-nocache",
		Messages:  []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: "native stream " + n}},
	}})
	require.NoError(t, err)
	got, _ := readStream(stream)
	require.NoError(t, stream.Err())
	require.Contains(t, got, "native stream")
	// The audit rows are written asynchronously: wait for them, so the audit histograms
	// have observations too.
	require.Eventually(t, func() bool {
		return metricSum(t, st.URL("audit"), "parley_audit_rows_written_total") > 0
	}, auditWait, 50*time.Millisecond)

	// Metrics the conversations above must have produced, on top of the "always" ones.
	produced := map[string][]string{
		"router": {
			"parley_router_conversations_total", "parley_router_conversation_duration_seconds",
			"parley_rpc_server_handled_total", "parley_rpc_server_duration_seconds",
			"gen_ai_server_request_duration_seconds", "dapr_component_conversation_count", "dapr_component_conversation_latencies",
			"gen_ai_server_time_to_first_token_seconds", "gen_ai_server_time_per_output_token_seconds",
		},
		"pii-scrubber":    {"parley_scrubber_findings_total", "parley_rpc_server_handled_total"},
		"cache":           {"parley_rpc_server_handled_total", "parley_rpc_server_duration_seconds"},
		"provider-worker": {},
		"audit":           {},
	}
	for service, want := range produced {
		t.Run(service, func(t *testing.T) {
			require.NotEmpty(t, contract[service], "docs/observability.md: no table for %s", service)
			documented := map[string]contractMetric{}
			for _, m := range append(slices.Clone(contract[everyService]), contract[service]...) {
				documented[m.name] = m
			}
			fams := scrapeFamilies(t, st.URL(service))
			for name, fam := range fams {
				if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
					continue
				}
				m, ok := documented[name]
				require.True(t, ok, "%s exports %s, which docs/observability.md does not list", service, name)
				require.Equal(t, m.typ, fam.GetType(), "%s: type of %s", service, name)
				checkLabels(t, service, m, fam, n)
			}
			for _, m := range documented {
				if m.always || slices.Contains(want, m.name) {
					require.Contains(t, fams, m.name, "%s does not export %s", service, m.name)
				}
			}
		})
	}
}

// checkLabels checks the label names and values of every series of fam against m.
func checkLabels(t *testing.T, service string, m contractMetric, fam *dto.MetricFamily, nonce string) {
	t.Helper()
	seen := map[string]map[string]bool{}
	for _, s := range fam.GetMetric() {
		var names []string
		for _, lp := range s.GetLabel() {
			name, value := lp.GetName(), lp.GetValue()
			names = append(names, name)
			if seen[name] == nil {
				seen[name] = map[string]bool{}
			}
			seen[name][value] = true
			require.NotContains(t, value, nonce, "%s %s{%s}: a request's content as a label value", service, m.name, name)
			require.False(t, uuidLike.MatchString(value) || longHex.MatchString(value),
				"%s %s{%s=%q}: an id as a label value", service, m.name, name, value)
			require.LessOrEqual(t, len(value), 80, "%s %s{%s=%q}: free text as a label value", service, m.name, name, value)
			require.NotContains(t, value, " ", "%s %s{%s=%q}: free text as a label value", service, m.name, name, value)
			if allowed, ok := m.values[name]; ok {
				require.Contains(t, allowed, value, "%s %s{%s}: value not in docs/observability.md", service, m.name, name)
			}
		}
		slices.Sort(names)
		require.Equal(t, m.labels, names, "%s: label names of %s", service, m.name)
	}
	for name, values := range seen {
		require.LessOrEqual(t, len(values), maxLabelValues, "%s %s{%s}: unbounded label", service, m.name, name)
	}
}
