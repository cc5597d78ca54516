package resiliency

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is a clock whose Sleep returns at once, advancing the time by the wait and
// recording it. Its time starts at the real time, so that real context deadlines compare
// with it.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) Slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

// policyFor loads a one-file resiliency directory and returns the policy of component
// "llm", running on clock c with jitter fixed at the middle of its range.
func policyFor(t *testing.T, c *fakeClock, doc string, opts ...Option) *Policy {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "resiliency.yaml"), []byte(doc), 0o600))
	s, err := Load(dir, opts...)
	require.NoError(t, err)
	s.clock = c
	s.rand = func() float64 { return 0.5 }
	return s.ForComponent("llm")
}

// resiliencyDoc is a Resiliency document whose "llm" target uses the given policies.
func resiliencyDoc(policies, outbound string) string {
	return "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: test\nspec:\n  policies:\n" +
		policies + "  targets:\n    components:\n      llm:\n        outbound:\n" + outbound
}

// failing returns fn that fails its first n calls with err, then succeeds; calls counts them.
func failing(n int, err error) (fn func(context.Context) error, calls *int) {
	calls = new(int)
	return func(context.Context) error {
		*calls++
		if *calls <= n {
			return err
		}
		return nil
	}, calls
}

var errUpstream = errors.New("upstream said no")

func TestRunRetries(t *testing.T) {
	t.Parallel()
	const policies = `    retries:
      three:
        policy: constant
        duration: 2s
        maxRetries: 3
      unlimited:
        policy: constant
        duration: 1s
      expo:
        policy: exponential
        maxInterval: 1s
        maxRetries: 5
`
	tests := []struct {
		name         string
		retry        string
		failures     int
		err          error
		wantAttempts int
		wantErr      error // nil: success
		wantSlept    []time.Duration
	}{
		{"success at once", "three", 0, errUpstream, 1, nil, nil},
		{"fails twice then succeeds", "three", 2, errUpstream, 3, nil, []time.Duration{2 * time.Second, 2 * time.Second}},
		{"gives up after maxRetries", "three", 10, errUpstream, 4, errUpstream, []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}},
		{"permanent error is not retried", "three", 10, Permanent(errUpstream), 1, errUpstream, nil},
		{"Retryable() false is not retried", "three", 10, notRetryable{}, 1, notRetryable{}, nil},
		{"unlimited retries until success", "unlimited", 7, errUpstream, 8, nil, repeat(time.Second, 7)},
		// Jitter fixed at 0.5 picks the middle of [i/2, 3i/2]: i, then i×1.5 up to the cap.
		{"exponential backoff", "expo", 10, errUpstream, 6, errUpstream, []time.Duration{
			500 * time.Millisecond, 750 * time.Millisecond, time.Second, time.Second, time.Second,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newFakeClock()
			p := policyFor(t, c, resiliencyDoc(policies, "          retry: "+tt.retry+"\n"))
			fn, calls := failing(tt.failures, tt.err)
			attempts, err := p.Run(t.Context(), fn)
			require.Equal(t, tt.wantAttempts, attempts)
			require.Equal(t, tt.wantAttempts, *calls)
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
			slept := c.Slept()
			for i := range slept { // the jitter's "+1" may add a nanosecond
				slept[i] = slept[i].Round(time.Millisecond)
			}
			require.Equal(t, tt.wantSlept, slept)
		})
	}
}

type notRetryable struct{}

func (notRetryable) Error() string   { return "quota exhausted" }
func (notRetryable) Retryable() bool { return false }

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestRunStopsBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	const policies = `    retries:
      slow:
        policy: constant
        duration: 10s
`
	tests := []struct {
		name         string
		deadline     time.Duration
		err          error
		wantAttempts int
		wantSlept    []time.Duration
	}{
		// Unlimited retries, but only three 10s waits fit in 35s.
		{"backoff bounded by the deadline", 35 * time.Second, errUpstream, 4, repeat(10*time.Second, 3)},
		{"Retry-After replaces the backoff", 35 * time.Second, RetryAfterHint(errUpstream, 3*time.Second), 12, repeat(3*time.Second, 11)},
		{"Retry-After past the deadline ends the retries", 35 * time.Second, RetryAfterHint(errUpstream, time.Minute), 1, nil},
		{"no wait fits", 5 * time.Second, errUpstream, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newFakeClock()
			p := policyFor(t, c, resiliencyDoc(policies, "          retry: slow\n"))
			// The deadline is real, the clock fake: Sleep advances the clock, not the time.
			ctx, cancel := context.WithDeadline(t.Context(), c.Now().Add(tt.deadline))
			defer cancel()
			fn, calls := failing(1000, tt.err)
			attempts, err := p.Run(ctx, fn)
			require.ErrorIs(t, err, errUpstream)
			require.Equal(t, tt.wantAttempts, attempts)
			require.Equal(t, tt.wantAttempts, *calls)
			require.Equal(t, tt.wantSlept, c.Slept())
		})
	}
}

func TestRunCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	p := policyFor(t, newFakeClock(), resiliencyDoc("    retries:\n      r:\n        duration: 1s\n", "          retry: r\n"))
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	attempts, err := p.Run(ctx, func(context.Context) error {
		calls++
		if calls == 2 {
			cancel()
		}
		return errUpstream
	})
	require.ErrorIs(t, err, errUpstream)
	require.Equal(t, 2, attempts)
}

func TestRunPerAttemptTimeout(t *testing.T) {
	t.Parallel()
	// Real time: the attempt's context really ends after 20ms.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(resiliencyDoc(
		"    timeouts:\n      short: 20ms\n    retries:\n      twice:\n        duration: 0\n        maxRetries: 1\n",
		"          timeout: short\n          retry: twice\n")), 0o600))
	s, err := Load(dir)
	require.NoError(t, err)
	p := s.ForComponent("llm")
	require.Equal(t, 20*time.Millisecond, p.Timeout())

	calls := 0
	attempts, err := p.Run(t.Context(), func(ctx context.Context) error {
		calls++
		_, ok := ctx.Deadline()
		require.True(t, ok, "the attempt has a deadline")
		<-ctx.Done()
		return ctx.Err()
	})
	require.Equal(t, 2, attempts)
	require.Equal(t, 2, calls)
	var te *TimeoutError
	require.ErrorAs(t, err, &te)
	require.Equal(t, 20*time.Millisecond, te.Timeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.EqualError(t, err, "attempt timed out after 20ms: context deadline exceeded")

	// A fast attempt is not touched by the timeout.
	attempts, err = p.Run(t.Context(), func(context.Context) error { return nil })
	require.NoError(t, err)
	require.Equal(t, 1, attempts)
}

func TestRunWithoutPolicy(t *testing.T) {
	t.Parallel()
	var nilSet *Set
	empty := newSet()
	tests := []struct {
		name string
		give *Policy
	}{
		{"nil policy", nil},
		{"nil set", nilSet.ForComponent("llm")},
		{"empty set", empty.ForComponent("llm")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.True(t, tt.give.Empty())
			require.Equal(t, StateClosed, tt.give.State())
			fn, calls := failing(5, errUpstream)
			attempts, err := tt.give.Run(t.Context(), fn)
			require.ErrorIs(t, err, errUpstream)
			require.Equal(t, 1, attempts)
			require.Equal(t, 1, *calls)
			var hasDeadline bool
			_, err = tt.give.Run(t.Context(), func(ctx context.Context) error { _, hasDeadline = ctx.Deadline(); return nil })
			require.NoError(t, err)
			require.False(t, hasDeadline, "no timeout without a policy")
		})
	}
}

func TestCircuitBreaker(t *testing.T) {
	t.Parallel()
	c := newFakeClock()
	var (
		mu          sync.Mutex
		transitions []string
	)
	onChange := func(component string, from, to State) {
		mu.Lock()
		defer mu.Unlock()
		transitions = append(transitions, component+": "+from.String()+" → "+to.String())
	}
	p := policyFor(t, c, resiliencyDoc(`    circuitBreakers:
      cb:
        maxRequests: 2
        timeout: 30s
        trip: consecutiveFailures >= 3
`, "          circuitBreaker: cb\n"), WithStateChange(onChange))
	fail := func(context.Context) error { return errUpstream }
	ok := func(context.Context) error { return nil }
	run := func(fn func(context.Context) error) (int, error) { return p.Run(t.Context(), fn) }

	// Closed: two failures, a success resets the run, three failures trip it.
	for _, fn := range []func(context.Context) error{fail, fail, ok, fail, fail} {
		_, _ = run(fn)
		require.Equal(t, StateClosed, p.State())
	}
	n, err := run(fail)
	require.Equal(t, 1, n)
	require.ErrorIs(t, err, errUpstream)
	require.Equal(t, StateOpen, p.State())

	// Open: fails fast without calling.
	called := false
	n, err = run(func(context.Context) error { called = true; return nil })
	require.ErrorIs(t, err, ErrOpenState)
	require.EqualError(t, err, "circuit breaker is open")
	require.Equal(t, 0, n)
	require.False(t, called)

	// After the timeout: half-open, two probes at most.
	c.Advance(30 * time.Second)
	require.Equal(t, StateHalfOpen, p.State())
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			_, _ = run(func(context.Context) error { started <- struct{}{}; <-release; return nil })
		})
	}
	<-started
	<-started
	_, err = run(ok)
	require.ErrorIs(t, err, ErrTooManyRequests)
	require.EqualError(t, err, "too many requests")
	close(release)
	wg.Wait()
	require.Equal(t, StateClosed, p.State(), "maxRequests successes close the breaker")

	// Trip again; a failed probe reopens it.
	for range 3 {
		_, _ = run(fail)
	}
	require.Equal(t, StateOpen, p.State())
	c.Advance(30 * time.Second)
	_, _ = run(fail)
	require.Equal(t, StateOpen, p.State())

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{
		"llm: closed → open", "llm: open → half-open", "llm: half-open → closed",
		"llm: closed → open", "llm: open → half-open", "llm: half-open → open",
	}, transitions)
}

func TestCircuitBreakerIgnoresRequestFaults(t *testing.T) {
	t.Parallel()
	p := policyFor(t, newFakeClock(), resiliencyDoc(`    circuitBreakers:
      cb:
        trip: consecutiveFailures > 1
`, "          circuitBreaker: cb\n"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for range 5 {
		_, err := p.Run(t.Context(), func(context.Context) error { return Permanent(errUpstream) })
		require.ErrorIs(t, err, errUpstream)
		_, err = p.Run(ctx, func(ctx context.Context) error { return ctx.Err() })
		require.ErrorIs(t, err, context.Canceled)
	}
	require.Equal(t, StateClosed, p.State(), "permanent errors and cancelled calls do not count")
	for range 2 {
		_, _ = p.Run(t.Context(), func(context.Context) error { return errUpstream })
	}
	require.Equal(t, StateOpen, p.State())
}

func TestCircuitBreakerPanicCountsAsFailure(t *testing.T) {
	t.Parallel()
	p := policyFor(t, newFakeClock(), resiliencyDoc(`    circuitBreakers:
      cb:
        trip: consecutiveFailures > 0
`, "          circuitBreaker: cb\n"))
	require.PanicsWithValue(t, "provider bug", func() {
		_, _ = p.Run(t.Context(), func(context.Context) error { panic("provider bug") })
	})
	require.Equal(t, StateOpen, p.State())
}

func TestCircuitBreakerInterval(t *testing.T) {
	t.Parallel()
	c := newFakeClock()
	p := policyFor(t, c, resiliencyDoc(`    circuitBreakers:
      cb:
        interval: 10s
        trip: totalFailures >= 3
`, "          circuitBreaker: cb\n"))
	fail := func(context.Context) error { return errUpstream }
	ok := func(context.Context) error { return nil }
	_, _ = p.Run(t.Context(), fail)
	_, _ = p.Run(t.Context(), ok)
	_, _ = p.Run(t.Context(), fail)
	c.Advance(10 * time.Second) // new generation: the counts start over
	_, _ = p.Run(t.Context(), fail)
	_, _ = p.Run(t.Context(), fail)
	require.Equal(t, StateClosed, p.State())
	_, _ = p.Run(t.Context(), fail)
	require.Equal(t, StateOpen, p.State())
}

func TestOpenBreakerEndsRetries(t *testing.T) {
	t.Parallel()
	c := newFakeClock()
	p := policyFor(t, c, resiliencyDoc(`    retries:
      many:
        duration: 1s
        maxRetries: 10
    circuitBreakers:
      cb:
        trip: consecutiveFailures >= 2
`, "          retry: many\n          circuitBreaker: cb\n"))
	fn, calls := failing(100, errUpstream)
	attempts, err := p.Run(t.Context(), fn)
	require.ErrorIs(t, err, ErrOpenState)
	require.Equal(t, 2, attempts)
	require.Equal(t, 2, *calls)
}

func TestBackoffMaxElapsed(t *testing.T) {
	t.Parallel()
	r := &Retry{Policy: BackoffExponential, InitialInterval: time.Second, MaxInterval: time.Minute, MaxRetries: -1}
	b := newBackoff(r, func() float64 { return 1 })
	var elapsed time.Duration
	waits := 0
	for {
		d, ok := b.next(elapsed)
		if !ok {
			break
		}
		require.LessOrEqual(t, d, 90*time.Second+time.Nanosecond, "at most 1.5×maxInterval")
		elapsed += d
		waits++
	}
	require.LessOrEqual(t, elapsed, retryMaxElapsed)
	require.Greater(t, waits, 10)
}

func TestStateString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give State
		want string
	}{
		{StateClosed, "closed"}, {StateHalfOpen, "half-open"}, {StateOpen, "open"}, {State(9), "unknown"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tt.give.String())
	}
}

// fieldHint carries a Retry-After hint in a field, as provider errors may; only the
// WithRetryAfter hook can read it.
type fieldHint struct{ wait time.Duration }

func (e *fieldHint) Error() string { return "rate limited" }

var errQuota = errors.New("quota exhausted")

func TestRunHooks(t *testing.T) {
	t.Parallel()
	retryable := func(err error) bool { return !errors.Is(err, errQuota) }
	retryAfter := func(err error) (time.Duration, bool) {
		var h *fieldHint
		if errors.As(err, &h) {
			return h.wait, true
		}
		return 0, false
	}
	tests := []struct {
		name         string
		err          error
		wantAttempts int
		wantSlept    []time.Duration
	}{
		{"hook allows", errUpstream, 3, []time.Duration{time.Second, time.Second}},
		{"hook refuses", errQuota, 1, nil},
		{"Permanent wins over the hook", Permanent(errUpstream), 1, nil},
		{"hint read by the hook", &fieldHint{wait: 7 * time.Second}, 3, []time.Duration{7 * time.Second, 7 * time.Second}},
		{"hint on the error wins", RetryAfterHint(&fieldHint{wait: 7 * time.Second}, 2*time.Second), 3, []time.Duration{2 * time.Second, 2 * time.Second}},
		{"negative hint is no wait", &fieldHint{wait: -time.Second}, 3, []time.Duration{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newFakeClock()
			p := policyFor(t, c, resiliencyDoc("    retries:\n      r: {duration: 1s, maxRetries: 2}\n", "          retry: r\n"),
				WithRetryable(retryable), WithRetryAfter(retryAfter))
			fn, calls := failing(100, tt.err)
			attempts, err := p.Run(t.Context(), fn)
			require.ErrorIs(t, err, tt.err)
			require.Equal(t, tt.wantAttempts, attempts)
			require.Equal(t, tt.wantAttempts, *calls)
			require.Equal(t, tt.wantSlept, c.Slept())
		})
	}
}
