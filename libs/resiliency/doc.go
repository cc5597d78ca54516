// Package resiliency applies Dapr Resiliency policies to conversation component calls.
//
// Load reads the Resiliency documents (apiVersion dapr.io/v1alpha1, kind Resiliency) of a
// directory, the same resources directory that holds the component files, and validates them
// strictly: every problem is an *Error naming the file, the document and the field. The
// result is a Set of named policies:
//
//   - timeouts: named durations, applied to each attempt;
//   - retries: constant (duration, default 5s) or exponential (initialInterval 500ms,
//     maxInterval default 60s, ×1.5 growth with ±50% jitter, as cenkalti/backoff in Dapr)
//     backoff, with maxRetries (default -1, no limit other than the caller's deadline);
//   - circuitBreakers: maxRequests (default 1), interval (default 0, never reset), timeout
//     (default 60s) and trip, a CEL condition over the breaker's counts (default
//     "consecutiveFailures > 5"), compiled by ParseTrip.
//
// (*Set).ForComponent returns a component's Policy: the policies named by its entry in
// spec.targets.components.<name>.outbound, or else Dapr's default policies for conversation
// components, looked up by name. (*Policy).Run calls a function under the policy: one
// attempt at a time, each under the timeout, retried with backoff while the error is
// retryable and the caller's deadline leaves room, through a circuit breaker shared by every
// call of the component.
//
// Callers classify errors: Permanent marks an error not worth retrying (the request is at
// fault), an error's Retryable() bool method or the WithRetryable hook say whether another
// attempt may help, and RetryAfterHint, an error's RetryAfter() method or the WithRetryAfter
// hook carry a provider's Retry-After hint, which Run waits for instead of its backoff. Dapr
// ignores Retry-After; Parley honours it.
package resiliency
