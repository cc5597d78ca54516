package integration_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/integration/fakeprovider"
	"github.com/parleyhq/parley/integration/stack"
)

// crossingBudget is one row of the crossing-budget table in docs/architecture.md.
type crossingBudget struct {
	path string
	// steps are the router's crossings in the order it waits for them; a step of several
	// kinds (written "a + b") is made concurrently and counts once.
	steps [][]string
	// inside are the crossings made inside those steps: the cache's bucket round trips
	// (get, create, put, purge, watch) and the worker's provider call (provider).
	inside []string
	// after are the crossings made after the reply, which it does not wait for (written
	// after "after the reply:" in the same cell): the cache Put's bucket round trips.
	after []string
	// sequential is the documented total: len(steps) + len(inside).
	sequential int
}

// readCrossingBudget parses the table under the "Crossing budget" heading of
// docs/architecture.md: | path | request | router waits for | inside them | sequential | target |.
func readCrossingBudget(t *testing.T) map[string]crossingBudget {
	t.Helper()
	root, err := stack.RepoRoot()
	require.NoError(t, err)
	f, err := os.Open(filepath.Join(root, "docs", "architecture.md"))
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	list := func(cell string, sep string) []string {
		cell = strings.TrimSpace(strings.ReplaceAll(cell, "`", ""))
		if cell == "" || cell == "—" || cell == "-" {
			return nil
		}
		var out []string
		for item := range strings.SplitSeq(cell, sep) {
			out = append(out, strings.TrimSpace(item))
		}
		return out
	}
	budgets := map[string]crossingBudget{}
	inSection := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			inSection = strings.TrimSpace(line) == "## Crossing budget"
			continue
		}
		if !inSection || !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| path ") || strings.HasPrefix(line, "| ---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		require.Len(t, cells, 6, "crossing budget row %q", line)
		inside, after, _ := strings.Cut(cells[3], "after the reply:")
		inside = strings.TrimRight(strings.TrimSpace(inside), ";")
		b := crossingBudget{path: strings.TrimSpace(strings.ReplaceAll(cells[0], "`", "")), inside: list(inside, ","), after: list(after, ",")}
		for _, step := range list(cells[2], "→") {
			b.steps = append(b.steps, list(step, "+"))
		}
		b.sequential, err = strconv.Atoi(strings.TrimSpace(cells[4]))
		require.NoError(t, err, "sequential of %q", line)
		require.Equal(t, len(b.steps)+len(b.inside), b.sequential, "%s: the sequential column must be the steps plus the crossings inside them", b.path)
		budgets[b.path] = b
	}
	require.NoError(t, sc.Err())
	return budgets
}

// TestCrossingBudget counts, through the real processes with their default settings,
// the process crossings each path of a conversation waits for, and holds them to the
// budget table of docs/architecture.md: one more crossing on a path fails the test, and
// so does one fewer (then lower the budget, so it cannot creep back).
//
// It runs a constellation of its own, so that the router's and the cache's counters
// see only its requests, one at a time: the router's
// parley_router_sequential_crossings{path} (crossings it waited for one after another)
// and parley_router_crossings_total{kind}; the cache's
// parley_cache_bucket_round_trips_total{op} (its NATS round trips inside a cache call);
// and the fake provider's own count of calls.
func TestCrossingBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	budgets := readCrossingBudget(t)
	var failing atomic.Bool
	fake := newScriptedFake(t, fakeprovider.Options{}, func(int64) int {
		if failing.Load() {
			return http.StatusBadRequest
		}
		return 0
	})
	echo, err := os.ReadFile(filepath.Join("..", "deploy", "components", "echo.yaml"))
	require.NoError(t, err)
	own := startOwnStack(t, map[string]string{"echo.yaml": string(echo), "fake.yaml": fake.component("fake")},
		map[string]string{"WORKER_ENDPOINT_ALLOWLIST": "127.0.0.1"})
	router, cache := own.URL("router"), own.URL("cache")
	client := &http.Client{}
	alpha2 := func(component, text string, scrub bool) convExchange {
		body := fmt.Sprintf(`{"inputs":[{"messages":[{"ofUser":{"content":[{"text":%q}]}}],"scrubPii":%t}],"scrubPii":%t}`, text, scrub, scrub)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
			router+"/v1.0-alpha2/conversation/"+component+"/converse", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		require.NoError(t, err)
		defer func() { _ = res.Body.Close() }()
		var sb strings.Builder
		_, err = bufio.NewReader(res.Body).WriteTo(&sb)
		require.NoError(t, err)
		return convExchange{status: res.StatusCode, header: res.Header, body: sb.String()}
	}

	type counts struct {
		sequential, requests float64
		kinds                map[string]float64
		inside               map[string]float64
	}
	kinds := []string{"scrub", "cache_lookup", "cache_wait", "cache_put", "cache_release", "dispatch", "audit_publish"}
	ops := []string{"get", "create", "put", "purge", "watch"}
	snapshot := func(path string) counts {
		c := counts{
			sequential: scrapeMetric(t, router, "parley_router_sequential_crossings_sum", `path="`+path+`"`),
			requests:   scrapeMetric(t, router, "parley_router_sequential_crossings_count", `path="`+path+`"`),
			kinds:      map[string]float64{},
			inside:     map[string]float64{"provider": float64(fake.hits.Load())},
		}
		for _, k := range kinds {
			c.kinds[k] = scrapeMetric(t, router, "parley_router_crossings_total", `kind="`+k+`"`)
		}
		for _, op := range ops {
			c.inside[op] = scrapeMetric(t, cache, "parley_cache_bucket_round_trips_total", `op="`+op+`"`)
		}
		return c
	}

	run := nonce(t)
	const n = 3
	tests := []struct {
		path   string // the row of the budget table
		metric string // the router's path label
		// warm runs before counting; call makes request i.
		warm   func()
		call   func(i int) convExchange
		status int
	}{
		{"miss", "miss", nil, func(i int) convExchange { return alpha2("echo", fmt.Sprintf("miss %s %d", run, i), false) }, http.StatusOK},
		{"openai", "miss", nil, func(i int) convExchange {
			body := fmt.Sprintf(`{"model":"echo","messages":[{"role":"user","content":"openai %s %d"}]}`, run, i)
			res, err := client.Post(router+"/v1/chat/completions", "application/json", strings.NewReader(body))
			require.NoError(t, err)
			defer func() { _ = res.Body.Close() }()
			var sb strings.Builder
			_, err = bufio.NewReader(res.Body).WriteTo(&sb)
			require.NoError(t, err)
			return convExchange{status: res.StatusCode, header: res.Header, body: sb.String()}
		}, http.StatusOK},
		{"hit", "hit", func() {
			// The answer is stored after the first reply, then kept in the router's near
			// cache: warm until a hit comes from there.
			nearHits := func() float64 {
				return scrapeMetric(t, router, "parley_router_near_cache_lookups_total", `result="hit"`)
			}
			require.Eventually(t, func() bool {
				before := nearHits()
				return alpha2("echo", "hit "+run, false).header.Get("Parley-Cache") == "hit" && nearHits() > before
			}, time.Minute, 20*time.Millisecond)
		}, func(int) convExchange { return alpha2("echo", "hit "+run, false) }, http.StatusOK},
		{"scrubbed", "miss", nil, func(i int) convExchange {
			return alpha2("echo", fmt.Sprintf("scrubbed %s %d, mail me at user%d@example.com", run, i, i), true)
		}, http.StatusOK},
		{"provider", "off", nil, func(i int) convExchange { return alpha2("fake", fmt.Sprintf("provider %s %d", run, i), false) }, http.StatusOK},
		{"error", "error", func() { failing.Store(true) }, func(i int) convExchange { return alpha2("fake", fmt.Sprintf("error %s %d", run, i), false) }, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			budget, ok := budgets[tt.path]
			require.True(t, ok, "docs/architecture.md's crossing budget has no row %q", tt.path)
			if tt.warm != nil {
				tt.warm()
			}
			before := snapshot(tt.metric)
			for i := range n {
				r := tt.call(i)
				if tt.status == http.StatusOK {
					require.Equal(t, http.StatusOK, r.status, r.body)
				} else {
					require.GreaterOrEqual(t, r.status, 400, r.body)
				}
				if tt.path == "hit" {
					require.Equal(t, "hit", r.header.Get("Parley-Cache"), "the hit path must hit")
				}
			}
			wantKinds, wantInside := map[string]int{}, map[string]int{}
			for _, step := range budget.steps {
				for _, k := range step {
					wantKinds[k]++
				}
			}
			for _, k := range budget.inside {
				wantInside[k]++
			}
			wantAfter := map[string]int{}
			for _, k := range budget.after {
				wantAfter[k]++
			}
			// The work after the replies lands on its own: wait until the cache has seen
			// as many bucket round trips as the path makes in all, before and after.
			var after counts
			require.Eventually(t, func() bool {
				after = snapshot(tt.metric)
				total := 0
				for k, v := range after.inside {
					total += int(v - before.inside[k])
				}
				return total >= n*(len(budget.inside)+len(budget.after))
			}, time.Minute, 20*time.Millisecond, "%s: the cache's round trips after the replies", tt.path)

			require.Equal(t, float64(n), after.requests-before.requests, "requests counted on path %q", tt.metric)
			gotKinds := map[string]int{}
			for _, k := range kinds {
				if d := after.kinds[k] - before.kinds[k]; d != 0 {
					gotKinds[k] = int(d) / n
					require.Zero(t, int(d)%n, "%s: %v crossings of kind %s in %d requests", tt.path, d, k, n)
				}
			}
			gotInside := map[string]int{}
			for k, v := range after.inside {
				if d := v - before.inside[k]; d != 0 {
					gotInside[k] = int(d) / n
					require.Zero(t, int(d)%n, "%s: %v %s round trips in %d requests", tt.path, d, k, n)
				}
			}
			// What the replies did not wait for is not theirs to count.
			for k, v := range wantAfter {
				require.GreaterOrEqual(t, gotInside[k], v, "%s: %s after the reply", tt.path, k)
				if gotInside[k] -= v; gotInside[k] == 0 {
					delete(gotInside, k)
				}
			}
			gotSequential := (after.sequential - before.sequential) / n
			total := int(gotSequential) + sum(gotInside)
			msg := fmt.Sprintf("%s: router waited for %v crossings one after another (by kind %v), %v inside them; "+
				"budget %d (docs/architecture.md, Crossing budget: %v, inside %v)",
				tt.path, gotSequential, gotKinds, gotInside, budget.sequential, budget.steps, budget.inside)
			require.LessOrEqual(t, total, budget.sequential, "over the crossing budget: "+msg)
			require.Equal(t, budget.sequential, total, "under the crossing budget: lower it in docs/architecture.md so it stays there; "+msg)
			require.Equal(t, float64(len(budget.steps)), gotSequential, msg)
			require.Equal(t, wantKinds, gotKinds, msg)
			require.Equal(t, wantInside, gotInside, msg)
		})
	}
}

func sum(m map[string]int) int {
	total := 0
	for _, v := range m {
		total += v
	}
	return total
}
