package integration_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/integration/fakeprovider"
)

// resiliencyPolicies is a Dapr Resiliency document next to the component files
// (RESILIENCY_DIR defaults to COMPONENTS_DIR): quick constant retries for rs-retry, a
// breaker that opens after two consecutive failures, and stays open for a minute, for
// rs-breaker.
const resiliencyPolicies = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: worker-resiliency-test
spec:
  policies:
    retries:
      quickRetry:
        policy: constant
        duration: 10ms
        maxRetries: 3
    circuitBreakers:
      tripAfterTwo:
        maxRequests: 1
        timeout: 60s
        trip: consecutiveFailures >= 2
  targets:
    components:
      rs-retry:
        outbound:
          retry: quickRetry
      rs-breaker:
        outbound:
          circuitBreaker: tripAfterTwo
`

// TestResiliencyThroughMetrics runs Dapr Resiliency policies in a real worker against
// fake providers that fail on a script, and reads the outcome where an operator would: the
// client's answer, the worker's /metrics, the audit log and the provider's call count.
//
//   - rs-retry: the provider answers 429 (Retry-After: 0) twice, then 200. The retry
//     policy hides both failures: one 200 to the client, attempts 3 in its audit row,
//     parley_worker_attempts_total error 2 and ok 1, the breaker metric 0 (none).
//   - rs-breaker: the provider always answers 503; the breaker trips on the second
//     consecutive failure, so the third call fails without reaching the provider, with
//     Dapr's ERR_CONVERSATION_INVOKE "circuit breaker is open";
//     parley_worker_circuit_breaker_state is 2 (open); the audit log holds three errors.
func TestResiliencyThroughMetrics(t *testing.T) {
	need(t)
	type call struct {
		status int
		// contains is a substring of the answer; notContains must not appear in it.
		contains, notContains string
	}
	tests := []struct {
		name      string
		component string
		script    func(n int64) int
		calls     []call
		// wantHits is the number of calls the provider saw.
		wantHits int64
		// wantAttempts maps outcome labels of parley_worker_attempts_total to values.
		wantAttempts map[string]float64
		wantBreaker  float64
		// wantAuditAttempts lists the audit rows' attempts (provider calls) of the
		// successful calls; the other calls must have error rows.
		wantAuditAttempts []int32
	}{
		{
			name:      "retries hide two 429s",
			component: "rs-retry",
			script: func(n int64) int {
				if n <= 2 {
					return http.StatusTooManyRequests
				}
				return 0
			},
			calls:             []call{{status: http.StatusOK, contains: `"content":"lorem ipsum dolor sit"`}},
			wantHits:          3,
			wantAttempts:      map[string]float64{"ok": 1, "error": 2, "timeout": 0, "permanent": 0, "circuit_open": 0},
			wantBreaker:       0,
			wantAuditAttempts: []int32{3},
		},
		{
			name:      "breaker opens after two 503s",
			component: "rs-breaker",
			script:    func(int64) int { return http.StatusServiceUnavailable },
			calls: []call{
				{status: http.StatusInternalServerError, contains: `"errorCode":"ERR_CONVERSATION_INVOKE"`, notContains: "circuit breaker"},
				{status: http.StatusInternalServerError, contains: `"errorCode":"ERR_CONVERSATION_INVOKE"`, notContains: "circuit breaker"},
				{status: http.StatusInternalServerError, contains: "failed conversing with component rs-breaker: circuit breaker is open"},
			},
			wantHits:     2,
			wantAttempts: map[string]float64{"ok": 0, "error": 2, "circuit_open": 1, "too_many_requests": 0},
			wantBreaker:  2,
		},
	}

	fakes := make([]*scriptedFake, len(tests))
	files := map[string]string{"resiliency.yaml": resiliencyPolicies}
	for i, tc := range tests {
		fakes[i] = newScriptedFake(t, fakeprovider.Options{Tokens: 4}, tc.script)
		files[tc.component+".yaml"] = fakes[i].component(tc.component)
	}
	own := startOwnStack(t, files, map[string]string{"WORKER_ENDPOINT_ALLOWLIST": "127.0.0.1"})
	router, worker := own.URL("router"), own.URL("provider-worker")
	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, router)

	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := fakes[i]
			var ids []string
			for j, c := range tc.calls {
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				r := converseAlpha2(ctx, http.DefaultClient, router, tc.component, "resiliency test")
				cancel()
				require.NoError(t, r.err, "call %d", j)
				require.Equal(t, c.status, r.status, "call %d: %s", j, r.body)
				require.Contains(t, r.body, c.contains, "call %d", j)
				if c.notContains != "" {
					require.NotContains(t, r.body, c.notContains, "call %d", j)
				}
				require.True(t, json.Valid([]byte(r.body)), r.body)
				if r.status == http.StatusOK {
					ids = append(ids, r.header.Get("Parley-Request-Id"))
				}
			}
			require.Equal(t, tc.wantHits, fake.hits.Load(), "calls the provider saw")

			label := `component="` + tc.component + `"`
			for outcome, want := range tc.wantAttempts {
				require.InDelta(t, want, scrapeMetric(t, worker, "parley_worker_attempts_total", label, `outcome="`+outcome+`"`), 0,
					"parley_worker_attempts_total{%s,outcome=%q}", label, outcome)
			}
			require.InDelta(t, tc.wantBreaker, scrapeMetric(t, worker, "parley_worker_circuit_breaker_state", label), 0)

			// Dapr's error answers carry no request id: find the rows by component.
			var rows []*auditv1.Conversation
			require.Eventually(t, func() bool {
				res, err := audit.ListConversations(context.Background(), &auditv1.ListConversationsRequest{Component: tc.component})
				if err != nil {
					return false
				}
				rows = res.GetConversations()
				return len(rows) >= len(tc.calls)
			}, 20*time.Second, 50*time.Millisecond, "the audit log never held %d rows of %s", len(tc.calls), tc.component)
			require.Len(t, rows, len(tc.calls))
			var okAttempts []int32
			failed := 0
			for _, row := range rows {
				switch row.GetStatus() {
				case auditv1.Status_STATUS_OK:
					require.Contains(t, ids, row.GetRequestId())
					okAttempts = append(okAttempts, row.GetAttempts())
				case auditv1.Status_STATUS_ERROR:
					failed++
				default:
					t.Fatalf("audit row %s has status %s", row.GetRequestId(), row.GetStatus())
				}
			}
			require.ElementsMatch(t, tc.wantAuditAttempts, okAttempts, "audit attempts of the successful calls")
			require.Equal(t, len(tc.calls)-len(tc.wantAuditAttempts), failed, "failed calls in the audit log")
		})
	}
}
