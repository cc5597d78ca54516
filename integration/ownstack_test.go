package integration_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/integration/fakeprovider"
	"github.com/parleyhq/parley/integration/stack"
)

// The worker and resiliency tests and benchmarks start a constellation of their own
// (ownStack): their router and worker settings differ from the shared stack's, and they
// kill processes. It reuses the shared stack's binaries, so nothing is built twice, and
// its PostgreSQL server with a fresh database.

// scriptedFake is an OpenAI-compatible provider on a loopback port: fakeprovider's
// answers, preceded by failures that script chooses, and a count of chat calls.
type scriptedFake struct {
	srv  *httptest.Server
	hits atomic.Int64
	// script returns the status of the n-th chat call (from 1); 0 lets the fake answer.
	script func(n int64) int
}

// newScriptedFake serves fakeprovider with opts behind script (nil: never fail) until the
// test ends. Scripted failures carry an OpenAI error body and Retry-After: 0.
func newScriptedFake(t testing.TB, opts fakeprovider.Options, script func(n int64) int) *scriptedFake {
	t.Helper()
	f := &scriptedFake{script: script}
	fake := fakeprovider.New(opts)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/chat/completions") {
			fake.ServeHTTP(w, r)
			return
		}
		n := f.hits.Add(1)
		if f.script != nil {
			if status := f.script(n); status != 0 {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(status)
				_, _ = fmt.Fprintf(w, `{"error":{"message":"scripted failure","type":"server_error","code":"scripted_%d"}}`, status)
				return
			}
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// component is a conversation.openai component file for this fake, without a cache TTL.
func (f *scriptedFake) component(name string) string {
	return stack.OpenAIComponent(name, f.srv.URL, "test-key", "fake-model")
}

// startOwnStack writes files into a fresh components directory and starts a
// constellation on free ports with env for every service, and with the options that each
// of configure changes; the test's end stops it, and a failed test logs the tail of its
// services' output.
func startOwnStack(t testing.TB, files map[string]string, env map[string]string, configure ...func(*stack.Options)) *stack.Stack {
	t.Helper()
	if st == nil {
		t.Skip("end-to-end test: needs the stack (not started under -short)")
	}
	data := t.TempDir()
	components := filepath.Join(data, "components")
	require.NoError(t, os.Mkdir(components, 0o755))
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(components, name), []byte(content), 0o600))
	}
	logPath := filepath.Join(data, "services.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	ports, err := stack.FreePorts()
	require.NoError(t, err)
	pgURL := os.Getenv("PG_TEST_DSN")
	if pgURL == "" {
		pgURL = st.DatabaseURL // the server the shared stack found or started
	}
	full := map[string]string{
		// Race-built services sleep a second at exit by default; a race still fails them.
		"GORACE": strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0"),
		// Race-built services on two shared cores can delay a heartbeat by more than the
		// production tolerance (4 × 200 ms); a presumed-dead worker that was only slow
		// would make the provider call twice and attempts counts uncertain. The tests that
		// exercise dead-worker detection set 4 themselves.
		"ROUTER_WORKER_HEARTBEAT_MISSES": "10",
	}
	for k, v := range env {
		full[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := stack.Options{
		DataDir:       data,
		BinDir:        filepath.Dir(st.Binary("router")),
		TLSDir:        st.TLSDir(),
		ComponentsDir: components,
		Ports:         ports,
		Postgres:      stack.PostgresOptions{URL: pgURL, FreshDatabase: true},
		Env:           full,
		Log:           logFile,
	}
	for _, c := range configure {
		c(&opts)
	}
	own, err := stack.Start(ctx, opts)
	t.Cleanup(func() {
		if own != nil {
			stopCtx, stopCancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer stopCancel()
			if err := own.Stop(stopCtx); err != nil {
				t.Errorf("stop own stack: %v", err)
			}
		}
		_ = logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				const tail = 30000
				if len(b) > tail {
					b = b[len(b)-tail:]
				}
				t.Logf("---- own stack's service logs (tail) ----\n%s", b)
			}
		}
	})
	require.NoError(t, err, "start own stack")
	return own
}

// startInstances starts extra instances of service, named by names, in parallel, each
// with env on top of the stack's.
func startInstances(t testing.TB, s *stack.Stack, service string, env map[string]string, names ...string) {
	t.Helper()
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { errs[i] = s.StartInstance(context.Background(), service, name, env) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
}

// convExchange is one HTTP request and its answer, or the error that prevented an answer.
type convExchange struct {
	status int
	header http.Header
	body   string
	err    error
}

// converseAlpha2 posts a Dapr alpha2 request with one user text to component through the
// router at base; safe to call from any goroutine.
func converseAlpha2(ctx context.Context, client *http.Client, base, component, text string) convExchange {
	body := fmt.Sprintf(`{"inputs":[{"messages":[{"ofUser":{"content":[{"text":%q}]}}]}]}`, text)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		base+"/v1.0-alpha2/conversation/"+component+"/converse", strings.NewReader(body))
	if err != nil {
		return convExchange{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return convExchange{err: err}
	}
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	return convExchange{status: res.StatusCode, header: res.Header, body: string(b), err: err}
}

// scrapeMetric sums the samples of metric name at base/metrics whose labels include every one
// of labels (each `key="value"`).
func scrapeMetric(t testing.TB, base, name string, labels ...string) float64 {
	t.Helper()
	v, err := scrapeMetricErr(base, name, labels...)
	require.NoError(t, err)
	return v
}

func scrapeMetricErr(base, name string, labels ...string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	res, err := scrapeClient().Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s/metrics: %s", base, res.Status)
	}
	sum := 0.0
	sc := bufio.NewScanner(res.Body)
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
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}
