package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/integration/fakeprovider"
)

// envWorkerKillSoak selects the full-size dead-worker scenario.
const envWorkerKillSoak = "PARLEY_WORKER_KILL_SOAK"

// TestDeadWorkerNoticedFast is the acceptance test of dead-worker detection
// (docs/architecture.md, "Dead workers"): two workers hold every request of a burst on a
// 400 ms provider when one of them is killed with SIGKILL. The router must notice from the
// missed heartbeats (WORKER_HEARTBEAT_INTERVAL 200 ms × ROUTER_WORKER_HEARTBEAT_MISSES),
// not from its 5 s ROUTER_WORKER_IDLE_TIMEOUT, and re-dispatch each lost request once.
//
// The tolerance is 10 intervals (2 s) as in the rest of the suite, not the default 4: the
// surviving worker's heartbeats cross race-built services and an in-process NATS on
// shared, loaded cores, and a stall of 800 ms there would count one of its calls as lost.
// Timing is asserted through the mechanism the router reports, never a wall clock: every
// loss is counted under detection="heartbeat_missed" and none under "idle_timeout".
func TestDeadWorkerNoticedFast(t *testing.T) {
	need(t)
	const (
		component = "wk-dead"
		victim    = "provider-worker-2"
	)
	requests := 40
	if os.Getenv(envWorkerKillSoak) != "" {
		requests = 400
	}
	// The provider holds the first call of every request until the victim is dead, so that
	// both workers hold calls (and have claimed them) when the kill comes, however slowly
	// the burst arrives on a loaded machine; every call then takes 400 ms.
	release := make(chan struct{})
	var releaseOnce sync.Once
	open := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(open)
	fake := newScriptedFake(t, fakeprovider.Options{Latency: 400 * time.Millisecond, Tokens: 4}, func(n int64) int {
		if n <= int64(requests) {
			<-release
		}
		return 0
	})
	env := map[string]string{
		"WORKER_HEARTBEAT_INTERVAL":      "200ms",
		"ROUTER_WORKER_HEARTBEAT_MISSES": "10",
		"ROUTER_WORKER_IDLE_TIMEOUT":     "5s",
		"ROUTER_DISPATCH_ATTEMPTS":       "2",
		"ROUTER_REQUEST_TIMEOUT":         "30s",
		"WORKER_CONCURRENCY":             strconv.Itoa(requests),
		"WORKER_ENDPOINT_ALLOWLIST":      "127.0.0.1",
	}
	own := startOwnStack(t, map[string]string{component + ".yaml": fake.component(component)}, env)
	startInstances(t, own, "provider-worker", nil, victim)
	router := own.URL("router")

	results := make([]convExchange, requests)
	client := &http.Client{}
	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			results[i] = converseAlpha2(ctx, client, router, component, fmt.Sprintf("dead worker request %d", i))
		})
	}
	// Every request has reached the provider through a worker, so every one is claimed.
	require.Eventually(t, func() bool { return fake.hits.Load() >= int64(requests) }, 60*time.Second, 5*time.Millisecond,
		"the burst never reached the provider")
	// The autoscaling signal (docs/deploy.md, "Scaling workers"): the slots in use of the
	// two workers add up to the calls the provider holds.
	held, err := scrapeMetricErr(own.URL(victim), "parley_worker_inflight", `component="`+component+`"`)
	require.NoError(t, err)
	require.Positive(t, held, "%s holds no call: the queue group gave it nothing", victim)
	survivor := scrapeMetric(t, own.URL("provider-worker"), "parley_worker_inflight", `component="`+component+`"`)
	require.InDelta(t, requests, held+survivor, 0, "slots in use while the provider holds every call")
	require.NoError(t, own.Kill(victim))
	open()

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("requests still running after 90s: some hang")
	}
	ids := map[string]bool{}
	for i, r := range results {
		require.NoError(t, r.err, "request %d", i)
		require.Equal(t, http.StatusOK, r.status, "request %d: %s", i, r.body)
		id := r.header.Get("Parley-Request-Id")
		require.NotEmpty(t, id)
		require.False(t, ids[id], "request id %s answered twice", id)
		ids[id] = true
	}

	// Each call the victim held was lost, noticed by missed heartbeats and re-dispatched
	// once; as the victim had started it, the provider may have been called twice.
	metric := func(name string, labels ...string) float64 {
		return scrapeMetric(t, router, name, append([]string{`component="` + component + `"`}, labels...)...)
	}
	require.InDelta(t, held, metric("parley_router_workers_lost_total", `detection="heartbeat_missed"`), 0)
	require.InDelta(t, 0, metric("parley_router_workers_lost_total", `detection="idle_timeout"`), 0,
		"a lost worker waited for ROUTER_WORKER_IDLE_TIMEOUT")
	require.InDelta(t, held, metric("parley_router_redispatches_total"), 0)
	require.InDelta(t, held, metric("parley_router_duplicate_provider_calls_total"), 0)
	// The router's own measure of the silence before each decision (2 s by this test's
	// setting) is logged, not asserted: a loaded machine delays timers.
	require.InDelta(t, held, metric("parley_router_worker_loss_detection_seconds_count", `detection="heartbeat_missed"`), 0)
	withinBound := metric("parley_router_worker_loss_detection_seconds_bucket", `detection="heartbeat_missed"`, `le="2.5"`)
	require.InDelta(t, requests, metric("parley_router_conversations_total", `status="ok"`), 0)

	// The audit log holds each request once; the lost ones with two attempts.
	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, router)
	var rows []*auditv1.Conversation
	require.Eventually(t, func() bool {
		res, err := audit.ListConversations(context.Background(), &auditv1.ListConversationsRequest{Component: component, PageSize: int32(2 * requests)})
		if err != nil {
			return false
		}
		rows = res.GetConversations()
		return len(rows) >= requests
	}, 30*time.Second, 100*time.Millisecond, "the audit log never held %d rows", requests)
	require.Len(t, rows, requests)
	retried := 0
	for _, row := range rows {
		require.True(t, ids[row.GetRequestId()], "audit row %s is not one of the answers", row.GetRequestId())
		delete(ids, row.GetRequestId())
		require.Equal(t, auditv1.Status_STATUS_OK, row.GetStatus())
		switch row.GetAttempts() {
		case 1:
		case 2:
			retried++
		default:
			t.Fatalf("audit row %s has %d attempts", row.GetRequestId(), row.GetAttempts())
		}
	}
	require.InDelta(t, held, retried, 0, "audit rows with two attempts")
	// The provider saw every request once, and the victim's held calls a second time.
	require.Equal(t, int64(requests)+int64(held), fake.hits.Load())
	t.Logf("%d requests, %d held by the killed worker, all re-dispatched after missed heartbeats (%d of them within 2.5 s of the last heartbeat); provider calls %d",
		requests, int(held), int(withinBound), fake.hits.Load())
}
