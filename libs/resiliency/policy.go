package resiliency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Names are the named policies a component's Policy is made of; empty means none.
type Names struct {
	Timeout        string
	Retry          string
	CircuitBreaker string
}

// Policy runs a component's calls under its timeout, retry and circuit breaker policies. It
// is safe for concurrent use; its circuit breaker is shared by every call of the component.
// A nil Policy runs each call once, without a timeout.
type Policy struct {
	component string
	names     Names
	timeout   time.Duration
	retry     *Retry
	breaker   *breaker
	clock     clock
	rand      func() float64
	hooks     hooks
}

// hooks are the caller's error classifiers, set with WithRetryable and WithRetryAfter.
type hooks struct {
	retryable  func(error) bool
	retryAfter func(error) (time.Duration, bool)
}

// retry reports whether err allows another attempt.
func (h hooks) retry(err error) bool {
	if !IsRetryable(err) {
		return false
	}
	return h.retryable == nil || h.retryable(err)
}

// hint returns err's Retry-After hint, from the error itself or from the caller's hook.
func (h hooks) hint(err error) (time.Duration, bool) {
	if d, ok := RetryAfter(err); ok {
		return d, true
	}
	if h.retryAfter == nil {
		return 0, false
	}
	d, ok := h.retryAfter(err)
	return max(d, 0), ok
}

// Component returns the name of the component the policy is for.
func (p *Policy) Component() string {
	if p == nil {
		return ""
	}
	return p.component
}

// Names returns the named policies in force.
func (p *Policy) Names() Names {
	if p == nil {
		return Names{}
	}
	return p.names
}

// Timeout returns the per-attempt timeout; zero means none.
func (p *Policy) Timeout() time.Duration {
	if p == nil {
		return 0
	}
	return p.timeout
}

// Empty reports whether the policy has no timeout, retry or circuit breaker, so Run makes
// exactly one attempt.
func (p *Policy) Empty() bool {
	return p == nil || p.timeout == 0 && p.retry == nil && p.breaker == nil
}

// State returns the state of the component's circuit breaker; StateClosed when it has none.
func (p *Policy) State() State {
	if p == nil || p.breaker == nil {
		return StateClosed
	}
	return p.breaker.State()
}

// LogValue implements slog.LogValuer: the component and the names of its policies.
func (p *Policy) LogValue() slog.Value {
	n := p.Names()
	return slog.GroupValue(
		slog.String("component", p.Component()),
		slog.String("timeout", n.Timeout),
		slog.String("retry", n.Retry),
		slog.String("circuit_breaker", n.CircuitBreaker),
	)
}

// Run calls fn until it succeeds or the policy gives up, and returns how many times it called
// fn with the last error.
//
//   - Each attempt runs under a context derived from ctx that ends after the policy's
//     timeout; an attempt cut short that way fails with a *TimeoutError. fn must return once
//     its context is done: Run waits for it, so that attempts never overlap.
//   - A failed attempt is retried when the error is retryable (IsRetryable, and the
//     WithRetryable hook when set), the retry policy allows another retry, and the next
//     attempt can start before ctx's deadline. The wait is the error's Retry-After hint when
//     it has one (RetryAfter, else the WithRetryAfter hook), else the policy's backoff. With
//     no retry policy there is one attempt.
//   - The circuit breaker, when there is one, admits each attempt. A refused attempt ends Run
//     with ErrOpenState or ErrTooManyRequests without calling fn; it is not retried. Failed
//     attempts count against the breaker unless the error is Permanent, or ctx was cancelled:
//     those say nothing about the component's health.
//
// When ctx ends while Run waits between attempts, Run returns the last attempt's error.
func (p *Policy) Run(ctx context.Context, fn func(ctx context.Context) error) (attempts int, err error) {
	if p.Empty() {
		return 1, fn(ctx)
	}
	var (
		b     *backoff
		start = p.clock.Now()
	)
	for retries := int64(0); ; retries++ {
		called, err := p.attempt(ctx, fn)
		if called {
			attempts++
		}
		if err == nil || p.retry == nil || !p.hooks.retry(err) || ctx.Err() != nil {
			return attempts, err
		}
		if p.retry.MaxRetries >= 0 && retries >= p.retry.MaxRetries {
			return attempts, err
		}
		wait, hinted := p.hooks.hint(err)
		if !hinted {
			if b == nil {
				b = newBackoff(p.retry, p.rand)
			}
			var more bool
			if wait, more = b.next(p.clock.Now().Sub(start)); !more {
				return attempts, err
			}
		}
		if deadline, ok := ctx.Deadline(); ok && !p.clock.Now().Add(wait).Before(deadline) {
			return attempts, err // the next attempt could not start in time
		}
		if p.clock.Sleep(ctx, wait) != nil {
			return attempts, err
		}
	}
}

// attempt makes one attempt. called is false when the breaker refused it.
func (p *Policy) attempt(ctx context.Context, fn func(context.Context) error) (called bool, err error) {
	returned := false
	if p.breaker != nil {
		var gen uint64
		if gen, err = p.breaker.before(); err != nil {
			return false, err
		}
		defer func() {
			v := verdictFailure // fn panicked; the panic goes on to the caller
			if returned {
				v = verdictOf(ctx, err)
			}
			p.breaker.after(gen, v)
		}()
	}
	actx := ctx
	if p.timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	err = fn(actx)
	returned = true
	if err != nil && p.timeout > 0 && ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
		err = &TimeoutError{Timeout: p.timeout, Err: err}
	}
	return true, err
}

// verdictOf says how an attempt that returned err counts for the circuit breaker.
func verdictOf(ctx context.Context, err error) verdict {
	var perm *permanentError
	switch {
	case err == nil:
		return verdictSuccess
	case errors.As(err, &perm), errors.Is(ctx.Err(), context.Canceled):
		return verdictExcluded
	default:
		return verdictFailure
	}
}

// TimeoutError is the failure of an attempt that the policy's timeout cut short. It matches
// context.DeadlineExceeded with errors.Is.
type TimeoutError struct {
	// Timeout is the per-attempt timeout.
	Timeout time.Duration
	// Err is what the attempt returned.
	Err error
}

// Error implements error.
func (e *TimeoutError) Error() string {
	return fmt.Sprintf("attempt timed out after %s: %v", e.Timeout, e.Err)
}

// Unwrap returns what the attempt returned.
func (e *TimeoutError) Unwrap() error { return e.Err }

// Is reports whether target is context.DeadlineExceeded.
func (e *TimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Permanent marks err as not worth retrying: the request itself is at fault (bad parameters,
// unknown model), so another attempt would fail the same way. Permanent errors do not count
// against the circuit breaker either. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsRetryable reports whether a failed attempt's error allows another attempt: it is false
// for nil, Permanent errors, circuit breaker refusals and errors whose chain holds a method
// Retryable() bool that returns false. Unlike Permanent errors, errors that are merely not
// retryable still count against the circuit breaker: an exhausted quota or a rejected key
// is the component's failure, not the request's.
func IsRetryable(err error) bool {
	var perm *permanentError
	var r interface{ Retryable() bool }
	switch {
	case err == nil, errors.As(err, &perm), errors.Is(err, ErrOpenState), errors.Is(err, ErrTooManyRequests):
		return false
	case errors.As(err, &r):
		return r.Retryable()
	default:
		return true
	}
}

// RetryAfter returns the wait err asks for before the next attempt: the hint of the first
// error in its chain with a method RetryAfter() (time.Duration, bool), such as one made by
// RetryAfterHint from a provider's Retry-After header. Negative hints count as zero.
func RetryAfter(err error) (time.Duration, bool) {
	var h interface {
		RetryAfter() (time.Duration, bool)
	}
	if !errors.As(err, &h) {
		return 0, false
	}
	d, ok := h.RetryAfter()
	return max(d, 0), ok
}

// RetryAfterHint attaches a Retry-After hint to err: Run waits d, instead of the backoff,
// before the next attempt, or gives up when that would pass the deadline.
// RetryAfterHint(nil, d) is nil.
func RetryAfterHint(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, wait: d}
}

type retryAfterError struct {
	err  error
	wait time.Duration
}

func (e *retryAfterError) Error() string                     { return e.err.Error() }
func (e *retryAfterError) Unwrap() error                     { return e.err }
func (e *retryAfterError) RetryAfter() (time.Duration, bool) { return e.wait, true }

// clock is time as Run and the breaker see it; tests replace it.
type clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends, whichever is first, and returns ctx.Err() in the latter
	// case.
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// randFloat is the jitter source of real policies.
func randFloat() float64 { return rand.Float64() }
