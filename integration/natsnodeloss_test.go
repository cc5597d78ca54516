package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/integration/fakeprovider"
	"github.com/parleyhq/parley/integration/stack"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/bus"
)

// envNATSNodeLossLong selects the full-size node-loss scenario.
const envNATSNodeLossLong = "PARLEY_NATS_NODE_LOSS_LONG"

// nodeLossResult is one conversation of the node-loss load.
type nodeLossResult struct {
	convExchange
	start, end time.Time
}

// TestNATSNodeLoss is the acceptance test of NATS as a cluster (docs/reliability.md): the
// stack runs on three embedded NATS nodes, the audit stream and the cache bucket at three
// replicas. Under load (concurrent conversations, a quarter of them repeated prompts that
// the cache answers), the node the router is connected to is lost and later started again.
// Every request must end with one answer, the audit log must hold every conversation
// exactly once, and cache hits must resume once the node is back.
//
// The phases are counted in answered requests, never timed: the load runs until a number
// of answers arrived before the loss, during it, and after the node's return.
func TestNATSNodeLoss(t *testing.T) {
	need(t)
	const (
		component = "nodeloss"
		clients   = 8
		repeated  = 5 // distinct repeated prompts
	)
	perPhase := 40
	if os.Getenv(envNATSNodeLossLong) != "" {
		perPhase = 1000
	}
	fake := newScriptedFake(t, fakeprovider.Options{Latency: 20 * time.Millisecond, Tokens: 4}, nil)
	file := fake.component(component) + "  - name: responseCacheTTL\n    value: 10m\n"
	env := map[string]string{
		"WORKER_HEARTBEAT_INTERVAL":  "200ms",
		"ROUTER_WORKER_IDLE_TIMEOUT": "2s",
		"ROUTER_REQUEST_TIMEOUT":     "60s",
		// The audit stream (three replicas) elects a new leader after the loss, and the
		// router reconnects to another node. In one CI run beside two CPU hogs, with
		// race-built NATS nodes, a conversation ended in an internal error during the
		// loss: of the path's NATS waits only the audit publish ends that way
		// (AUDIT_MODE=required, its production bound 5 s). Each attempt still waits the
		// production 1 s, so lost acks are still sent again.
		"ROUTER_AUDIT_PUBLISH_TIMEOUT": "30s",
		"WORKER_ENDPOINT_ALLOWLIST":    "127.0.0.1",
		// Every cache hit is the bucket's: no near cache in the router, no L1 in the cache.
		"ROUTER_NEAR_CACHE_BYTES": "0",
		"CACHE_L1_MAX_BYTES":      "0",
	}
	own := startOwnStack(t, map[string]string{component + ".yaml": file}, env, func(o *stack.Options) { o.NATSNodes = 3 })
	startInstances(t, own, "provider-worker", nil, "provider-worker-2")
	router := own.URL("router")

	// The stream and the bucket the services created have three replicas.
	nc, err := own.ConnectNATS(stack.AdminUser)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for _, name := range []string{auditevent.Stream, "KV_parley_cache"} {
		s, err := bus.RetryAPI(t.Context(), bus.APIAttempt, func(ctx context.Context) (jetstream.Stream, error) {
			return js.Stream(ctx, name)
		})
		require.NoError(t, err, name)
		require.Equal(t, 3, s.CachedInfo().Config.Replicas, name)
	}

	var (
		mu       sync.Mutex
		results  []nodeLossResult
		answered atomic.Int64
		next     atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	client := &http.Client{}
	for range clients {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := next.Add(1)
				text := fmt.Sprintf("node loss request %d", i)
				if i%4 == 0 {
					text = fmt.Sprintf("node loss repeated %d", i/4%repeated)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				r := nodeLossResult{start: time.Now()}
				r.convExchange = converseAlpha2(ctx, client, router, component, text)
				r.end = time.Now()
				cancel()
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				answered.Add(1)
			}
		})
	}
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})
	waitAnswers := func(n int64, phase string) {
		t.Helper()
		require.Eventually(t, func() bool { return answered.Load() >= n }, 120*time.Second, 10*time.Millisecond,
			"%s: only %d of %d requests answered", phase, answered.Load(), n)
	}

	waitAnswers(int64(perPhase), "before the loss")
	lost := own.NATSNodeOf("router")
	require.GreaterOrEqual(t, lost, 0, "the router is connected to no node")
	var alsoLost []string
	for _, name := range []string{"audit", "cache", "provider-worker"} {
		if own.NATSNodeOf(name) == lost {
			alsoLost = append(alsoLost, name)
		}
	}
	lossAt := time.Now()
	require.NoError(t, own.StopNATSNode(lost))
	waitAnswers(answered.Load()+int64(perPhase), "while a node is down")
	require.Eventually(t, func() bool { n := own.NATSNodeOf("router"); return n >= 0 && n != lost }, 30*time.Second, 10*time.Millisecond,
		"the router did not reconnect to another node")

	require.NoError(t, own.StartNATSNode(lost))
	backAt := time.Now()
	waitAnswers(answered.Load()+int64(perPhase), "after the node came back")
	close(stop)
	wg.Wait()

	// Every request ended with one answer, and each answer is its own conversation.
	ids := map[string]bool{}
	var hitsAfter int
	var worst time.Duration
	for i, r := range results {
		require.NoError(t, r.err, "request %d", i)
		require.Equal(t, http.StatusOK, r.status, "request %d: %s", i, r.body)
		id := r.header.Get("Parley-Request-Id")
		require.NotEmpty(t, id)
		require.False(t, ids[id], "request id %s answered twice", id)
		ids[id] = true
		if r.start.After(backAt) && r.header.Get("Parley-Cache") == "hit" {
			hitsAfter++
		}
		worst = max(worst, r.end.Sub(r.start))
	}
	// Cache hits resumed: repeated prompts asked after the node's return were answered
	// from the bucket.
	require.Positive(t, hitsAfter, "no cache hit after the node came back")

	// The audit log holds every conversation exactly once.
	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, router)
	auditFrom := time.Now()
	var rows []*auditv1.Conversation
	var listErr error
	complete := assert.Eventually(t, func() bool {
		var page []*auditv1.Conversation
		token := ""
		for {
			res, err := audit.ListConversations(context.Background(), &auditv1.ListConversationsRequest{Component: component, PageSize: 1000, PageToken: token})
			if err != nil {
				listErr = err
				return false
			}
			page = append(page, res.GetConversations()...)
			if token = res.GetNextPageToken(); token == "" {
				rows = page
				return len(page) >= len(ids)
			}
		}
	}, 120*time.Second, 200*time.Millisecond, "the audit log never held the %d conversations", len(ids))
	if !complete {
		t.Logf("the audit log holds %d rows (last listing error: %v); audit wrote %.0f, lag %.0f, failed fetches %.0f", len(rows), listErr,
			scrapeMetric(t, own.URL("audit"), "parley_audit_rows_written_total"),
			scrapeMetric(t, own.URL("audit"), "parley_audit_ingest_lag"),
			scrapeMetric(t, own.URL("audit"), "parley_audit_fetch_failures_total"))
		if conn, err := pgx.Connect(context.Background(), own.DatabaseURL); err == nil {
			var total, distinct int
			err := conn.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT request_id) FROM conversations WHERE component = $1`, component).Scan(&total, &distinct)
			t.Logf("PostgreSQL: %d rows, %d distinct request ids (%v)", total, distinct, err)
			_ = conn.Close(context.Background())
		}
		if s, err := js.Stream(context.Background(), auditevent.Stream); err == nil {
			if info, err := s.Info(context.Background()); err == nil {
				t.Logf("stream: %d messages, first %d, last %d, cluster leader %s", info.State.Msgs, info.State.FirstSeq, info.State.LastSeq, info.Cluster.Leader)
			}
		}
		if c, err := js.Consumer(context.Background(), auditevent.Stream, "parley-audit"); err == nil {
			if info, err := c.Info(context.Background()); err == nil {
				t.Logf("consumer: pending %d, ack pending %d, redelivered %d, waiting %d, cluster %+v",
					info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting, info.Cluster)
			}
		}
		t.FailNow()
	}
	require.Len(t, rows, len(ids))
	auditWait := time.Since(auditFrom)
	retried := 0
	for _, row := range rows {
		require.True(t, ids[row.GetRequestId()], "audit row %s is not one of the answers (or is there twice)", row.GetRequestId())
		delete(ids, row.GetRequestId())
		if row.GetAttempts() > 1 {
			retried++
		}
	}

	metric := func(name string, labels ...string) float64 {
		return scrapeMetric(t, router, name, append([]string{`component="` + component + `"`}, labels...)...)
	}
	redispatches := metric("parley_router_redispatches_total")
	fetchFailures := scrapeMetric(t, own.URL("audit"), "parley_audit_fetch_failures_total")
	hits := metric("parley_router_conversations_total", `cache="hit"`)
	latencies := make([]time.Duration, len(results))
	for i, r := range results {
		latencies[i] = r.end.Sub(r.start)
	}
	slices.Sort(latencies)
	t.Logf("NATS node loss: %d requests on %d clients, node %d (the router's, and %v's) lost after %d answers and back %s later; "+
		"%d audit rows (%d with more than one attempt), %.0f re-dispatches, %.0f cache hits (%d after the return); "+
		"latency p50 %s, p99 %s, worst %s; the audit log complete %s after the last answer (%.0f failed fetches)",
		len(results), clients, lost, alsoLost, perPhase, backAt.Sub(lossAt).Round(time.Millisecond),
		len(rows), retried, redispatches, hits, hitsAfter,
		latencies[len(latencies)/2].Round(time.Millisecond), latencies[len(latencies)*99/100].Round(time.Millisecond), worst.Round(time.Millisecond),
		auditWait.Round(time.Millisecond), fetchFailures)
}
