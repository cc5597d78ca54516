package serve_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/libs/resiliency"
	"github.com/parleyhq/parley/services/provider-worker/internal/serve"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/echo"
)

// flaky fails its first failures calls with the error fail returns, then echoes. With hold
// set, a failing call first waits until its context ends. It counts its calls.
type flaky struct {
	calls    atomic.Int64
	failures int64
	fail     func() error
	hold     bool
}

func (p *flaky) Converse(ctx context.Context, req *providerv1.Request) (*providerv1.Response, error) {
	if p.calls.Add(1) > p.failures {
		return echo.New().Converse(ctx, req)
	}
	if p.hold {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, p.fail()
}

func unavailable() error {
	return &provider.Error{Code: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, Err: errors.New("upstream overloaded")}
}

// loadPolicies loads one Resiliency document whose spec is spec.
func loadPolicies(t *testing.T, spec string, opts ...resiliency.Option) *resiliency.Set {
	t.Helper()
	dir := t.TempDir()
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: test\nspec:\n" + spec
	require.NoError(t, os.WriteFile(filepath.Join(dir, "resiliency.yaml"), []byte(doc), 0o600))
	set, err := resiliency.Load(dir, opts...)
	require.NoError(t, err)
	return set
}

func TestRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	set := loadPolicies(t, `  policies:
    retries:
      three: {policy: constant, duration: 60ms, maxRetries: 3}
  targets:
    components:
      llm: {outbound: {retry: three}}
`)
	p := &flaky{failures: 2, fail: unavailable}
	w := startWorker(t, srv, map[string]serve.Provider{"llm": p}, serve.Options{
		Resiliency: set, HeartbeatInterval: 10 * time.Millisecond,
	})
	nc := natstest.Connect(t, srv)

	a := call(t, nc, "llm", encode(t, request("llm", "third time lucky")), nil)
	resp := requireResponse(t, a, "third time lucky")
	require.Equal(t, int32(3), resp.GetAttempts())
	require.Equal(t, int64(3), p.calls.Load())
	// Two 60ms waits at one heartbeat per 10ms: the router hears from the worker meanwhile.
	require.GreaterOrEqual(t, a.heartbeats, 2)

	labels := func(outcome string) map[string]string {
		return map[string]string{"component": "llm", "outcome": outcome}
	}
	require.Eventually(t, func() bool {
		return w.metric(t, "parley_worker_requests_total", labels("ok")) == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 0.0, w.metric(t, "parley_worker_requests_total", labels("unavailable")), "one answer only")
	require.Equal(t, 2.0, w.metric(t, "parley_worker_attempts_total", labels("error")))
	require.Equal(t, 1.0, w.metric(t, "parley_worker_attempts_total", labels("ok")))
}

func TestCircuitBreakerFailsFast(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	set := loadPolicies(t, `  policies:
    circuitBreakers:
      cb: {trip: consecutiveFailures >= 2, timeout: 1h}
  targets:
    components:
      llm: {outbound: {circuitBreaker: cb}}
`)
	p := &flaky{failures: 1 << 30, fail: unavailable}
	w := startWorker(t, srv, map[string]serve.Provider{"llm": p, "other": echo.New()}, serve.Options{Resiliency: set})
	nc := natstest.Connect(t, srv)
	state := func(component string) float64 {
		return w.metric(t, "parley_worker_circuit_breaker_state", map[string]string{"component": component})
	}

	for range 2 {
		requireError(t, call(t, nc, "llm", encode(t, request("llm", "hi")), nil),
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "upstream overloaded")
	}
	require.Equal(t, 2.0, state("llm"), "open")
	requireError(t, call(t, nc, "llm", encode(t, request("llm", "hi")), nil),
		providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "circuit breaker is open")
	require.Equal(t, int64(2), p.calls.Load(), "the open breaker does not call the provider")
	require.Equal(t, 1.0, w.metric(t, "parley_worker_attempts_total", map[string]string{"component": "llm", "outcome": "circuit_open"}))

	// Other components have their own breaker, or none.
	requireResponse(t, call(t, nc, "other", encode(t, request("other", "fine")), nil), "fine")
	require.Equal(t, 0.0, state("other"))
}

func TestPerAttemptTimeoutCutsASlowProvider(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	set := loadPolicies(t, `  policies:
    timeouts:
      short: 30ms
    retries:
      once: {duration: 0, maxRetries: 1}
  targets:
    components:
      llm: {outbound: {timeout: short, retry: once}}
`)
	p := &flaky{failures: 1 << 30, hold: true}
	w := startWorker(t, srv, map[string]serve.Provider{"llm": p}, serve.Options{Resiliency: set})
	nc := natstest.Connect(t, srv)

	// The request's own deadline is a minute away: only the policy's timeout ends the calls.
	requireError(t, call(t, nc, "llm", encode(t, request("llm", "slow")), nil),
		providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED, "attempt timed out after 30ms")
	require.Equal(t, int64(2), p.calls.Load())
	require.Eventually(t, func() bool {
		return w.metric(t, "parley_worker_attempts_total", map[string]string{"component": "llm", "outcome": "timeout"}) == 2
	}, 5*time.Second, 10*time.Millisecond)
}

// retryPolicies retries every component up to 3 times, 10ms apart, but the "patient"
// targets wait an hour, more than any request's deadline allows.
const retryPolicies = `  policies:
    retries:
      patient: {duration: 1h}
      DefaultRetryPolicy: {duration: 10ms, maxRetries: 3}
  targets:
    components:
      patient-1: {outbound: {retry: patient}}
      patient-2: {outbound: {retry: patient}}
`

func codeError(code providerv1.ErrorCode) func() error {
	return func() error { return &provider.Error{Code: code, Err: errors.New("provider says " + code.String())} }
}

func TestRetryGivesUp(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	set := loadPolicies(t, retryPolicies)
	tests := []struct {
		name      string
		component string // one per subtest: each has its own worker
		fail      func() error
		wantCode  providerv1.ErrorCode
		wantCalls int64
		wantPerm  float64 // attempts counted permanent
	}{
		{"invalid argument is permanent", "a", codeError(providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT),
			providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, 1, 1},
		{"not found is permanent", "b", codeError(providerv1.ErrorCode_ERROR_CODE_NOT_FOUND),
			providerv1.ErrorCode_ERROR_CODE_NOT_FOUND, 1, 1},
		{"unavailable is retried until maxRetries", "c", codeError(providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE),
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 4, 0},
		{"a plain error is retried until maxRetries", "d", func() error { return errors.New("connection reset") },
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 4, 0},
		{"no wait fits before the deadline", "patient-1", unavailable,
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := &flaky{failures: 1 << 30, fail: tt.fail}
			w := startWorker(t, srv, map[string]serve.Provider{tt.component: p}, serve.Options{Resiliency: set})
			requireError(t, call(t, nc, tt.component, encode(t, request(tt.component, "hi")), nil), tt.wantCode, "")
			require.Equal(t, tt.wantCalls, p.calls.Load())
			require.Equal(t, tt.wantPerm, w.metric(t, "parley_worker_attempts_total",
				map[string]string{"component": tt.component, "outcome": "permanent"}))
		})
	}
}

func TestRetrySucceeds(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	set := loadPolicies(t, retryPolicies)
	tests := []struct {
		name         string
		component    string // one per subtest: each has its own worker
		fail         func() error
		wantAttempts int32
	}{
		{"after a plain error", "e", func() error { return errors.New("connection reset") }, 2},
		{"Retry-After replaces the backoff", "patient-2",
			func() error { return resiliency.RetryAfterHint(unavailable(), 10*time.Millisecond) }, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := &flaky{failures: 1, fail: tt.fail}
			startWorker(t, srv, map[string]serve.Provider{tt.component: p}, serve.Options{Resiliency: set})
			resp := requireResponse(t, call(t, nc, tt.component, encode(t, request(tt.component, "hi")), nil), "hi")
			require.Equal(t, tt.wantAttempts, resp.GetAttempts())
			require.Equal(t, int64(tt.wantAttempts), p.calls.Load())
		})
	}
}

func TestNoPolicyMeansOneAttempt(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	p := &flaky{failures: 1, fail: unavailable}
	w := startWorker(t, srv, map[string]serve.Provider{"llm": p}, serve.Options{})
	nc := natstest.Connect(t, srv)

	requireError(t, call(t, nc, "llm", encode(t, request("llm", "hi")), nil), providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "upstream overloaded")
	require.Equal(t, int32(1), requireResponse(t, call(t, nc, "llm", encode(t, request("llm", "hi")), nil), "hi").GetAttempts())
	require.Equal(t, int64(2), p.calls.Load())
	require.Equal(t, 0.0, w.metric(t, "parley_worker_circuit_breaker_state", map[string]string{"component": "llm"}))
}

// TestProviderErrors runs the errors of the HTTP providers through the policy the way the
// app wires it: their Retryable method decides, their Retry-After field is read by
// provider.RetryAfterOf.
func TestProviderErrors(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	// An hour between attempts: only a Retry-After hint makes a retry fit the deadline. One
	// counted failure opens a breaker.
	set := loadPolicies(t, `  policies:
    retries:
      r: {duration: 1h, maxRetries: 3}
    circuitBreakers:
      cb: {trip: consecutiveFailures >= 1, timeout: 1h}
  targets:
    components:
      hinted: {outbound: {retry: r}}
      unhinted: {outbound: {retry: r, circuitBreaker: cb}}
      internal: {outbound: {retry: r, circuitBreaker: cb}}
      invalid: {outbound: {retry: r, circuitBreaker: cb}}
      empty: {outbound: {retry: r, circuitBreaker: cb}}
`, resiliency.WithRetryAfter(provider.RetryAfterOf))
	tests := []struct {
		name      string
		component string // one per subtest: each has its own worker
		fail      func() error
		wantCalls int64
		wantCode  providerv1.ErrorCode
		wantState float64 // circuit breaker state after the call
	}{
		{"rate limited with a hint: retried after it", "hinted",
			func() error { return provider.Unavailable(errors.New("429 rate limited"), 10*time.Millisecond) }, 4,
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 0},
		{"unavailable without a hint: no retry fits", "unhinted",
			func() error { return provider.Unavailable(errors.New("503"), 0) }, 1,
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 2},
		{"internal (a rejected key) is not retried but trips the breaker", "internal",
			func() error { return provider.Internal(errors.New("401 invalid key")) }, 1,
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 2},
		{"invalid argument neither retried nor counted", "invalid",
			func() error { return provider.InvalidArgument(errors.New("400 context too long")) }, 1,
			providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, 0},
		{"an empty answer (a provider bug) is not retried but counted", "empty",
			func() error { return nil }, 1,
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := &flaky{failures: 1 << 30, fail: tt.fail}
			w := startWorker(t, srv, map[string]serve.Provider{tt.component: p}, serve.Options{Resiliency: set})
			requireError(t, call(t, nc, tt.component, encode(t, request(tt.component, "hi")), nil), tt.wantCode, "")
			require.Equal(t, tt.wantCalls, p.calls.Load())
			require.Equal(t, tt.wantState, w.metric(t, "parley_worker_circuit_breaker_state", map[string]string{"component": tt.component}))
		})
	}
}
