package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/integration/fakeprovider"
)

// TestWorkerKilledMidRequest is the worker-crash acceptance test (reliability.md §6.4):
// three workers serve an OpenAI component whose provider (the fake) takes 500 ms per
// answer; 60 distinct Dapr alpha2 requests arrive over about a second and a half, and one
// worker is killed with SIGKILL while it holds provider calls. The router hears no more
// heartbeats from it, presumes it dead after about a second (here the idle timeout, as
// the suite's heartbeat tolerance is as long; TestDeadWorkerNoticedFast asserts the
// heartbeat-miss detection) and sends those requests to another worker. Every request ends with exactly one 200 answer before its
// deadline; the audit log holds each once, some with attempts > 1; and the provider was
// called at most once per dispatch (duplicate calls ≤ re-dispatches).
func TestWorkerKilledMidRequest(t *testing.T) {
	need(t)
	const (
		component = "wk-crash"
		requests  = 60
		victim    = "provider-worker-2"
	)
	fake := newScriptedFake(t, fakeprovider.Options{Latency: 500 * time.Millisecond, Tokens: 4}, nil)
	own := startOwnStack(t, map[string]string{component + ".yaml": fake.component(component)}, map[string]string{
		"WORKER_HEARTBEAT_INTERVAL":  "100ms",
		"ROUTER_WORKER_IDLE_TIMEOUT": "1s",
		"ROUTER_DISPATCH_ATTEMPTS":   "3",
		"ROUTER_REQUEST_TIMEOUT":     "20s",
		"WORKER_ENDPOINT_ALLOWLIST":  "127.0.0.1",
	})
	startInstances(t, own, "provider-worker", nil, "provider-worker-2", "provider-worker-3")
	router := own.URL("router")

	// Requests arrive one every 25 ms, so that calls are in flight on every worker when
	// the victim dies and later requests find only the survivors.
	results := make([]convExchange, requests)
	client := &http.Client{}
	var wg sync.WaitGroup
	arrivals := time.NewTicker(25 * time.Millisecond)
	defer arrivals.Stop()
	for i := range requests {
		<-arrivals.C
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			results[i] = converseAlpha2(ctx, client, router, component, fmt.Sprintf("crash test request %d", i))
		})
		if i == 20 {
			// The victim holds provider calls: kill it now.
			require.Eventually(t, func() bool {
				v, err := scrapeMetricErr(own.URL(victim), "parley_worker_inflight", `component="`+component+`"`)
				return err == nil && v > 0
			}, 10*time.Second, 5*time.Millisecond, "%s never held a call", victim)
			require.NoError(t, own.Kill(victim))
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("requests still running after 60s: some hang")
	}

	ids := map[string]bool{}
	for i, r := range results {
		require.NoError(t, r.err, "request %d", i)
		require.Equal(t, http.StatusOK, r.status, "request %d: %s", i, r.body)
		var answer struct {
			Outputs []struct {
				Choices []struct {
					Message struct{ Content string } `json:"message"`
				} `json:"choices"`
			} `json:"outputs"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.body), &answer), r.body)
		require.Len(t, answer.Outputs, 1, r.body)
		require.Len(t, answer.Outputs[0].Choices, 1, r.body)
		require.Equal(t, "lorem ipsum dolor sit", answer.Outputs[0].Choices[0].Message.Content)
		id := r.header.Get("Parley-Request-Id")
		require.NotEmpty(t, id)
		require.False(t, ids[id], "request id %s answered twice", id)
		ids[id] = true
	}

	// One conversation per request in the router's metrics, none failed.
	require.InDelta(t, requests, scrapeMetric(t, router, "parley_router_conversations_total", `component="`+component+`"`, `status="ok"`), 0)
	require.InDelta(t, 0, scrapeMetric(t, router, "parley_router_conversations_total", `component="`+component+`"`, `status="error"`), 0)

	// The audit log: each request exactly once, some dispatched more than once.
	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, router)
	var rows []*auditv1.Conversation
	require.Eventually(t, func() bool {
		res, err := audit.ListConversations(context.Background(), &auditv1.ListConversationsRequest{Component: component, PageSize: 2 * requests})
		if err != nil {
			return false
		}
		rows = res.GetConversations()
		return len(rows) >= requests
	}, 30*time.Second, 100*time.Millisecond, "the audit log never held %d rows", requests)
	require.Len(t, rows, requests)
	retried, dispatches := 0, 0
	for _, row := range rows {
		require.True(t, ids[row.GetRequestId()], "audit row %s is not one of the answers", row.GetRequestId())
		delete(ids, row.GetRequestId())
		require.Equal(t, auditv1.Status_STATUS_OK, row.GetStatus())
		require.GreaterOrEqual(t, row.GetAttempts(), int32(1))
		require.LessOrEqual(t, row.GetAttempts(), int32(3), "ROUTER_DISPATCH_ATTEMPTS is 3")
		if row.GetAttempts() > 1 {
			retried++
		}
		dispatches += int(row.GetAttempts())
	}
	require.Empty(t, ids, "answers without an audit row")
	require.Positive(t, retried, "no request was re-dispatched after the kill")
	// Without a resiliency policy each dispatch calls the provider at most once: the
	// provider saw every request, plus at most one call per re-dispatch.
	hits := int(fake.hits.Load())
	require.GreaterOrEqual(t, hits, requests)
	require.LessOrEqual(t, hits, dispatches)
	t.Logf("%d of %d requests re-dispatched (%d dispatches); the provider was called %d times", retried, requests, dispatches, hits)
}
