package integration_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	cachev1 "github.com/parleyhq/parley/gen/pb/parley/cache/v1"
	"github.com/parleyhq/parley/gen/pb/parley/cache/v1/cachev1connect"
)

// The cache tests add a second replica of router, cache and provider-worker to the
// shared stack: router-2 talks to cache-2 (router to cache), both caches share the
// bucket on the one NATS, and provider-worker-2 alone serves the cache-* components of
// testdata/cache-components, so its request count is theirs. router-2 also knows the
// shared echo component, served by the shared worker.
const (
	router2 = "router-2"
	cache2  = "cache-2"
	worker2 = "provider-worker-2"
)

var (
	extrasOnce sync.Once
	extrasErr  error
)

// needExtras starts the second replicas once; the stack's Stop stops them.
func needExtras(t testing.TB) {
	t.Helper()
	if st == nil {
		t.Skip("end-to-end test: needs the stack (not started under -short)")
	}
	extrasOnce.Do(func() {
		dir, err := filepath.Abs(filepath.Join("testdata", "cache-components"))
		if err != nil {
			extrasErr = err
			return
		}
		ctx := t.Context()
		if extrasErr = st.StartInstance(ctx, "cache", cache2, nil); extrasErr != nil {
			return
		}
		if extrasErr = st.StartInstance(ctx, "provider-worker", worker2, map[string]string{
			"COMPONENTS_DIR":    dir,
			"WORKER_COMPONENTS": "cache-flight,cache-purge,cache-ttl,cache-outage,cache-bench",
		}); extrasErr != nil {
			return
		}
		extrasErr = st.StartInstance(ctx, "router", router2, map[string]string{
			"COMPONENTS_DIR":   dir,
			"ROUTER_CACHE_URL": st.URL(cache2),
		})
	})
	require.NoError(t, extrasErr)
}

// converse posts a Dapr alpha2 request for component with text to the router at base.
func converse(t *testing.T, base, component, body string) httpResult {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		base+"/v1.0-alpha2/conversation/"+component+"/converse", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return httpResult{status: res.StatusCode, header: res.Header, body: string(b)}
}

func userText(text string) string {
	return fmt.Sprintf(`{"inputs":[{"messages":[{"ofUser":{"content":[{"text":%q}]}}]}]}`, text)
}

// metricSum adds up the samples of metric name at base/metrics whose labels contain
// every one of labels (each `key="value"`).
func metricSum(t *testing.T, base, name string, labels ...string) float64 {
	t.Helper()
	res := get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, res.status)
	sum := 0.0
	sc := bufio.NewScanner(strings.NewReader(res.body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		require.NoError(t, err, line)
		sum += v
	}
	return sum
}

// TestCacheSharedBetweenRouters: an answer cached through one router is a hit through
// the other, whose cache replica reads it from the shared bucket. The second request
// also reorders every JSON object: the key does not depend on field or map order.
func TestCacheSharedBetweenRouters(t *testing.T) {
	needExtras(t)
	t.Parallel()
	const first = `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"%s"}]}}]}],"temperature":0.3,
		"metadata":{"m1":"a","m2":"b","m3":"c"},"responseFormat":{"type":"json_object","schema":{"p":1,"q":[1,2]}},
		"tools":[{"function":{"name":"f","description":"d","parameters":{"type":"object","properties":{"x":{"type":"string"},"y":{"type":"integer"}},"required":["x"]}}}]}`
	const reordered = `{"tools":[{"function":{"parameters":{"required":["x"],"properties":{"y":{"type":"integer"},"x":{"type":"string"}},"type":"object"},"description":"d","name":"f"}}],
		"responseFormat":{"schema":{"q":[1,2],"p":1},"type":"json_object"},"metadata":{"m3":"c","m2":"b","m1":"a"},
		"temperature":0.3,"inputs":[{"messages":[{"ofUser":{"content":[{"text":"%s"}]}}]}]}`
	tests := []struct{ name, first, second string }{
		{"router to router-2", "router", router2},
		{"router-2 to router", router2, "router"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := nonce(t)
			a := converse(t, st.URL(tt.first), "echo", fmt.Sprintf(first, n))
			require.Equal(t, http.StatusOK, a.status, a.body)
			require.Equal(t, "miss", a.header.Get("Parley-Cache"))
			b := converse(t, st.URL(tt.second), "echo", fmt.Sprintf(reordered, n))
			require.Equal(t, http.StatusOK, b.status, b.body)
			require.Equal(t, "hit", b.header.Get("Parley-Cache"))
			require.JSONEq(t, a.body, b.body)
		})
	}
}

// TestCacheSingleFlight: 100 identical requests at once reach the provider once; the
// others wait for that answer.
func TestCacheSingleFlight(t *testing.T) {
	needExtras(t)
	t.Parallel()
	const n = 100

	// burst sends n identical requests at once, request i to routers[i%len(routers)],
	// and returns how many were misses.
	burst := func(t *testing.T, component, body string, routers ...string) int {
		t.Helper()
		results := make([]httpResult, n)
		var start, wg sync.WaitGroup
		start.Add(1)
		for i := range n {
			wg.Go(func() {
				start.Wait()
				results[i] = converse(t, st.URL(routers[i%len(routers)]), component, body)
			})
		}
		start.Done()
		wg.Wait()
		misses := 0
		for i, r := range results {
			require.Equal(t, http.StatusOK, r.status, "request %d: %s", i, r.body)
			require.JSONEq(t, results[0].body, r.body, "request %d", i)
			if r.header.Get("Parley-Cache") == "miss" {
				misses++
			}
		}
		return misses
	}

	t.Run("one router, counted at the worker", func(t *testing.T) {
		t.Parallel()
		// cache-flight has a worker of its own: its request count is this test's.
		before := metricSum(t, st.URL(worker2), "parley_worker_requests_total", `component="cache-flight"`)
		waitedBefore := metricSum(t, st.URL(cache2), "parley_cache_waits_total", `result="value"`)
		misses := burst(t, "cache-flight", userText("single flight "+nonce(t)), router2)
		after := metricSum(t, st.URL(worker2), "parley_worker_requests_total", `component="cache-flight"`)
		require.InDelta(t, 1, after-before, 0, "provider calls")
		require.Equal(t, 1, misses)
		t.Logf("%d of %d requests waited for the lease holder's answer; the rest were plain hits",
			int(metricSum(t, st.URL(cache2), "parley_cache_waits_total", `result="value"`)-waitedBefore), n-1)
	})

	t.Run("two routers, counted in the audit log", func(t *testing.T) {
		t.Parallel()
		id := nonce(t)
		body := fmt.Sprintf(`{"contextId":%q,"inputs":[{"messages":[{"ofUser":{"content":[{"text":"single flight %s"}]}}]}]}`, id, id)
		misses := burst(t, "echo", body, "router", router2)
		require.Equal(t, 1, misses)

		// Every request is in the log, and only one asked the provider.
		audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, st.URL("router"))
		var rows []*auditv1.Conversation
		require.Eventually(t, func() bool {
			list, err := audit.ListConversations(t.Context(), &auditv1.ListConversationsRequest{ContextId: id, PageSize: 2 * n})
			if err != nil {
				return false
			}
			rows = list.GetConversations()
			return len(rows) == n
		}, auditWait, 100*time.Millisecond)
		asked := 0
		for _, r := range rows {
			if !r.GetCacheHit() {
				asked++
				require.NotEmpty(t, r.GetWorkerId())
			}
		}
		require.Equal(t, 1, asked)
	})
}

// TestCacheTTLExpiry: an entry lives as long as its component's TTL (cacheTTL: 1s).
func TestCacheTTLExpiry(t *testing.T) {
	needExtras(t)
	t.Parallel()
	body := userText("ttl " + nonce(t))
	require.Equal(t, "miss", converse(t, st.URL(router2), "cache-ttl", body).header.Get("Parley-Cache"))
	require.Eventually(t, func() bool {
		return converse(t, st.URL(router2), "cache-ttl", body).header.Get("Parley-Cache") == "miss"
	}, 30*time.Second, 100*time.Millisecond, "the entry never expired")
}

// TestCachePurge: the admin call drops a component's entries, from the bucket, from
// every cache replica's memory and from every router's near cache; a purge through one
// cache replica also empties the other's memory. The subtests run one after the other: the
// first waits for cache-2's count of memory purges to move, and the second's purge through
// cache-2 moves it too.
func TestCachePurge(t *testing.T) {
	needExtras(t)
	t.Parallel()

	t.Run("component, out of the router's near cache", func(t *testing.T) {
		body := userText("purge " + nonce(t))
		require.Equal(t, "miss", converse(t, st.URL(router2), "cache-purge", body).header.Get("Parley-Cache"))
		// The answer is stored after the reply; then router-2 answers from its memory.
		nearHits := func() float64 {
			return metricSum(t, st.URL(router2), "parley_router_near_cache_lookups_total", `result="hit"`)
		}
		require.Eventually(t, func() bool {
			before := nearHits()
			return converse(t, st.URL(router2), "cache-purge", body).header.Get("Parley-Cache") == "hit" && nearHits() > before
		}, 30*time.Second, 20*time.Millisecond, "router-2 never answered from its near cache")
		// Purged through the other cache replica, the one router-2 does not call: the
		// notice reaches every router.
		purged := func() float64 {
			return metricSum(t, st.URL(router2), "parley_router_near_cache_evictions_total", `cause="purge"`)
		}
		before := purged()
		// cache-2 holds the answer in its memory too (router-2 stored it there); it drops
		// it when the purge notice in the bucket reaches it, apart from router-2's notice.
		replicaPurges := func() float64 {
			return metricSum(t, st.URL(cache2), "parley_cache_purged_total", `layer="l1"`)
		}
		replicaBefore := replicaPurges()
		client := cachev1connect.NewCacheServiceClient(clientAs(t, "admin"), st.URL("cache"))
		res, err := client.Purge(t.Context(), &cachev1.PurgeRequest{Component: "cache-purge"})
		require.NoError(t, err)
		require.GreaterOrEqual(t, res.GetPurged(), uint64(1))
		require.Eventually(t, func() bool { return purged() > before }, 30*time.Second, 20*time.Millisecond,
			"router-2 never dropped the purged answer from its near cache")
		require.Eventually(t, func() bool { return replicaPurges() > replicaBefore }, 30*time.Second, 20*time.Millisecond,
			"cache-2 never dropped the purged answer from its memory")
		require.Equal(t, "miss", converse(t, st.URL(router2), "cache-purge", body).header.Get("Parley-Cache"))
	})

	t.Run("tenant, across cache replicas", func(t *testing.T) {
		// Entries are a router's to write and look up, purges an operator's.
		one := cachev1connect.NewCacheServiceClient(clientAs(t, "router"), st.URL("cache"))
		two := cachev1connect.NewCacheServiceClient(clientAs(t, "router"), st.URL(cache2))
		admin := cachev1connect.NewCacheServiceClient(clientAs(t, "admin"), st.URL(cache2))
		tenant := "purge-" + nonce(t)
		key := strings.Repeat("ab", 32)
		_, err := one.Put(t.Context(), &cachev1.PutRequest{Tenant: tenant, Component: "c", Key: key, Value: []byte("v"), Ttl: durationpb.New(time.Hour)})
		require.NoError(t, err)
		for _, c := range []cachev1connect.CacheServiceClient{one, two, one, two} { // both replicas now hold it in memory
			res, err := c.Lookup(t.Context(), &cachev1.LookupRequest{Tenant: tenant, Component: "c", Key: key})
			require.NoError(t, err)
			require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_HIT, res.GetOutcome())
		}
		res, err := admin.Purge(t.Context(), &cachev1.PurgeRequest{Tenant: tenant})
		require.NoError(t, err)
		require.EqualValues(t, 1, res.GetPurged())
		require.EqualValues(t, 1, res.GetPurgedLocal())
		// The first replica drops it from memory when the purge notice reaches it: until
		// then it still answers from memory, after that from the bucket, which no longer
		// holds it. (Asked here rather than read from a counter that other tests' purges
		// through that replica move too.)
		require.Eventually(t, func() bool {
			got, err := one.Get(t.Context(), &cachev1.GetRequest{Tenant: tenant, Component: "c", Key: key})
			require.NoError(t, err)
			return !got.GetFound()
		}, 30*time.Second, 20*time.Millisecond, "the other replica never dropped the purged entry from memory")
	})
}

// TestCacheOutageAndRestart runs before the parallel tests (it is not parallel): with
// its cache replica down, router-2 still answers what its near cache holds, and the rest
// from the provider, counting the failure; the restarted replica, its memory empty,
// serves from the bucket an entry router-2 never held.
func TestCacheOutageAndRestart(t *testing.T) {
	needExtras(t)
	body := userText("outage " + nonce(t))
	require.Equal(t, "miss", converse(t, st.URL(router2), "cache-outage", body).header.Get("Parley-Cache"))
	require.Eventually(t, func() bool {
		return converse(t, st.URL(router2), "cache-outage", body).header.Get("Parley-Cache") == "hit"
	}, 30*time.Second, 20*time.Millisecond)

	stopCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, st.StopService(stopCtx, cache2))
	res := converse(t, st.URL(router2), "cache-outage", body)
	require.Equal(t, http.StatusOK, res.status, res.body)
	require.Equal(t, "hit", res.header.Get("Parley-Cache"), "the near cache answers through the outage")
	before := metricSum(t, st.URL(router2), "parley_router_cache_errors_total", `op="lookup"`)
	res = converse(t, st.URL(router2), "cache-outage", userText("outage, new "+nonce(t)))
	require.Equal(t, http.StatusOK, res.status, res.body)
	require.Equal(t, "miss", res.header.Get("Parley-Cache"))
	require.Greater(t, metricSum(t, st.URL(router2), "parley_router_cache_errors_total", `op="lookup"`), before)

	require.NoError(t, st.StartService(t.Context(), cache2))
	require.NoError(t, st.WaitReady(t.Context(), cache2, time.Minute))
	// Router-2 dials the replica again after a backoff of up to 2 s (libs/rpcclient); until
	// then its calls fail at once and it goes on without the cache. Wait until a request
	// of its own reaches the cache without an error.
	cacheErrors := func() float64 { return metricSum(t, st.URL(router2), "parley_router_cache_errors_total") }
	require.Eventually(t, func() bool {
		errs := cacheErrors()
		res := converse(t, st.URL(router2), "echo", userText("outage, probe "+nonce(t)))
		return res.status == http.StatusOK && cacheErrors() == errs
	}, 30*time.Second, 100*time.Millisecond, "router-2 never reached the restarted replica")
	// Stored through the other router and cache replica: in the bucket, not in router-2.
	// The router stores the answer after its reply, and until then holds the key's
	// lease: a lookup in that window waits for the value instead of reading the bucket.
	// So the test waits for the other replica's put before asking router-2.
	shared := userText("outage, shared " + nonce(t))
	puts := metricSum(t, st.URL("cache"), "parley_cache_puts_total")
	require.Equal(t, "miss", converse(t, st.URL("router"), "echo", shared).header.Get("Parley-Cache"))
	require.Eventually(t, func() bool {
		return metricSum(t, st.URL("cache"), "parley_cache_puts_total") > puts
	}, 30*time.Second, 20*time.Millisecond, "the router never stored the answer")
	l2 := metricSum(t, st.URL(cache2), "parley_cache_hits_total", `layer="l2"`)
	res = converse(t, st.URL(router2), "echo", shared)
	require.Equal(t, http.StatusOK, res.status, res.body)
	require.Equal(t, "hit", res.header.Get("Parley-Cache"), "entries outlive the cache service")
	require.Greater(t, metricSum(t, st.URL(cache2), "parley_cache_hits_total", `layer="l2"`), l2,
		"the restarted replica read the entry from the bucket")
}
