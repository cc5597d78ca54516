// Package serve answers provider requests that arrive over NATS.
//
// A Worker joins, for each component it serves, the queue group "parley.provider.<name>" on
// the subject of the same name, so each request reaches one worker of the pool. It decodes the
// providerv1.Request, continues the caller's trace from the message headers, calls the
// component's Provider under the request's deadline, and answers on the reply inbox with
// a Heartbeat reply the moment the call starts (the worker claims the request), more every
// HeartbeatInterval while it runs, then one Response or Error. Heartbeats announce the
// interval in the bus.HeartbeatIntervalHeader header, so that the router presumes the worker
// dead after a few missed ones rather than after its idle timeout.
//
// # Back-pressure
//
// Core NATS hands each queue-group message to a random member, whatever its load, so a worker
// cannot leave work for a less busy peer once the message has arrived; what it can do is
// answer at once instead of queueing. A Worker therefore runs at most Concurrency calls at a
// time. A request that finds every slot busy waits up to AdmissionWait for one, next to at
// most Concurrency other waiting requests; a request beyond that, or still waiting when
// AdmissionWait ends, is answered at once with Error UNAVAILABLE "worker saturated", so the
// router fails fast (or tries another worker) rather than waiting behind an invisible queue.
//
// The message callback never blocks, so the NATS client's per-subscription buffer stays
// nearly empty; it is still capped at PendingMsgs messages (and 64 MiB), because the
// default caps (512k messages, 64 MiB) would let a CPU-starved worker hoard requests that
// other workers could answer. Past the cap the client drops messages as a slow consumer and
// the router sees the silence through its idle timeout. A worker thus holds at most
// Concurrency running calls, Concurrency waiting requests and PendingMsgs buffered messages
// per component.
//
// # Errors
//
// A payload that does not decode, or whose component does not match the subject, is answered
// INVALID_ARGUMENT; a deadline that has already passed, DEADLINE_EXCEEDED without calling the
// provider. Provider failures are answered DEADLINE_EXCEEDED when the request's deadline
// ended the call, with the error's own code when it has a method
// ErrorCode() providerv1.ErrorCode, and INTERNAL otherwise, always with the error's message.
// A panicking provider is recovered and answered INTERNAL "provider panicked"; the worker
// keeps serving.
//
// # Resiliency
//
// Each provider call runs under its component's policy from Options.Resiliency (Dapr
// Resiliency documents; see libs/resiliency): every attempt under the policy's timeout,
// failed attempts retried with backoff while the request's deadline leaves room, all through
// the component's circuit breaker. Retries happen inside the call, so heartbeats continue
// while the policy waits. Errors with code INVALID_ARGUMENT or NOT_FOUND blame the request:
// they are not retried and do not count against the circuit breaker. Empty answers and
// errors whose Retryable() method says false are not retried either, but do count. A
// Retry-After hint the Set can read (resiliency.RetryAfterHint, or its WithRetryAfter hook)
// replaces the backoff. The Response carries the number of attempts. A call the circuit
// breaker refuses is answered UNAVAILABLE "circuit breaker is open" (or "too many requests"
// while half-open) without calling the provider; a call whose last attempt hit the policy's
// timeout is answered DEADLINE_EXCEEDED "attempt timed out after ...".
//
// # Stopping
//
// Stop drains the subscriptions first, so no new work arrives and buffered messages are still
// handled, then waits for running calls until its context ends; calls still running then are
// cancelled and answered UNAVAILABLE. The NATS connection itself is drained by its owner
// afterwards.
package serve
