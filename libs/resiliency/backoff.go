package resiliency

import (
	"time"
)

// BackoffPolicy is how a retry policy spaces its attempts.
type BackoffPolicy string

// Backoff policies.
const (
	// BackoffConstant waits Duration between attempts.
	BackoffConstant BackoffPolicy = "constant"
	// BackoffExponential waits a randomised, growing interval: see Retry.
	BackoffExponential BackoffPolicy = "exponential"
)

// Defaults of a retry policy, as Dapr's (dapr/kit retry.DefaultConfig over
// cenkalti/backoff v4).
const (
	DefaultRetryDuration        = 5 * time.Second
	DefaultRetryInitialInterval = 500 * time.Millisecond
	DefaultRetryMaxInterval     = 60 * time.Second
	DefaultRetryMaxRetries      = -1
	// retryMaxElapsed ends exponential retries this long after the first attempt, as
	// cenkalti/backoff's default MaxElapsedTime does in Dapr. The caller's deadline is
	// usually much shorter.
	retryMaxElapsed = 15 * time.Minute
	// Exponential growth and jitter, fixed in Dapr.
	retryMultiplier    = 1.5
	retryRandomization = 0.5
)

// Retry is a named retry policy.
type Retry struct {
	// Name is the policy's name in spec.policies.retries.
	Name string
	// Policy is constant or exponential.
	Policy BackoffPolicy
	// Duration is the wait of the constant policy.
	Duration time.Duration
	// InitialInterval is the first interval of the exponential policy. Dapr fixes it at
	// 500ms; Parley reads the optional field initialInterval, which Dapr ignores.
	InitialInterval time.Duration
	// MaxInterval caps the interval of the exponential policy; the randomised wait may reach
	// 1.5 times it.
	MaxInterval time.Duration
	// MaxRetries is the most retries after the first attempt; -1 means no limit other than
	// the caller's deadline.
	MaxRetries int64
	// HTTPStatusCodes and GRPCStatusCodes are matching.httpStatusCodes and
	// matching.gRPCStatusCodes as written. They are validated but, as in Dapr's conversation
	// API, have no effect: provider errors carry no status code to match.
	HTTPStatusCodes, GRPCStatusCodes string
}

// backoff is the wait schedule of one Run.
type backoff struct {
	r        *Retry
	interval time.Duration // exponential: the current, unrandomised interval
	rand     func() float64
}

func newBackoff(r *Retry, rand func() float64) *backoff {
	return &backoff{r: r, interval: r.InitialInterval, rand: rand}
}

// next returns the wait before the next attempt, or false when the policy gives up because
// elapsed, the time since the first attempt, has run out.
func (b *backoff) next(elapsed time.Duration) (time.Duration, bool) {
	if b.r.Policy != BackoffExponential {
		return b.r.Duration, true
	}
	// cenkalti/backoff: a uniform pick in [interval×(1-f), interval×(1+f)], then growth by
	// the multiplier up to the cap.
	delta := retryRandomization * float64(b.interval)
	low := float64(b.interval) - delta
	wait := time.Duration(low + b.rand()*(2*delta+1))
	if float64(b.interval) >= float64(b.r.MaxInterval)/retryMultiplier {
		b.interval = b.r.MaxInterval
	} else {
		b.interval = time.Duration(float64(b.interval) * retryMultiplier)
	}
	if elapsed+wait > retryMaxElapsed {
		return 0, false
	}
	return wait, true
}
