// Package provider holds what every LLM provider implementation of the worker shares: the
// typed Error that tells the router which code a failure has and when the provider said a
// retry may work, the classification of HTTP answers, the parsing of Retry-After, endpoint
// validation (http(s) only, optional host allow-list) and the construction Options.
//
// Provider implementations live in the sub-packages (openai, deepseek, googleai,
// huggingface, ollama, mistral; echo needs none of this).
package provider

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"time"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
)

// Error is a provider failure with the code the router should see and, when the provider
// sent one, its Retry-After hint. Its message never holds the provider key or prompt text.
type Error struct {
	// Code classifies the failure; UNAVAILABLE means another attempt may work.
	Code providerv1.ErrorCode
	// RetryAfter is how long the provider asked the caller to wait before another
	// attempt (Retry-After, retry-after-ms); zero when it gave no hint.
	RetryAfter time.Duration
	// Err is the failure itself.
	Err error
	// Status is the HTTP status of the provider's answer; 0 when the failure was not
	// an HTTP answer (a transport error, an SDK's own error).
	Status int
}

// HTTPStatus returns Status, for the worker's count of provider errors by kind.
func (e *Error) HTTPStatus() int { return e.Status }

// Error implements error.
func (e *Error) Error() string {
	if e.Err == nil {
		return e.Code.String()
	}
	return e.Err.Error()
}

// Unwrap returns the underlying failure.
func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the code of the failure; the worker's reply carries it.
func (e *Error) ErrorCode() providerv1.ErrorCode { return e.Code }

// Retryable reports whether another attempt may succeed: the provider is unavailable,
// overloaded, rate limiting or timed out, and the caller has not given up.
func (e *Error) Retryable() bool {
	return e.Code == providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE && !errors.Is(e.Err, context.Canceled)
}

// InvalidArgument returns an INVALID_ARGUMENT error wrapping err: the request cannot
// succeed as sent.
func InvalidArgument(err error) *Error {
	return &Error{Code: providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Err: err}
}

// Unavailable returns a retryable UNAVAILABLE error wrapping err.
func Unavailable(err error, retryAfter time.Duration) *Error {
	return &Error{Code: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, RetryAfter: retryAfter, Err: err}
}

// Internal returns an INTERNAL error wrapping err: not retryable, not the caller's fault.
func Internal(err error) *Error {
	return &Error{Code: providerv1.ErrorCode_ERROR_CODE_INTERNAL, Err: err}
}

// IsRetryable reports whether err is a provider Error that another attempt may fix.
func IsRetryable(err error) bool {
	var pe *Error
	return errors.As(err, &pe) && pe.Retryable()
}

// RetryAfterOf returns the Retry-After hint carried by err, if any.
func RetryAfterOf(err error) (time.Duration, bool) {
	var pe *Error
	if errors.As(err, &pe) && pe.RetryAfter > 0 {
		return pe.RetryAfter, true
	}
	return 0, false
}

// Options configures how providers are built. The zero value is ready to use.
type Options struct {
	// EndpointAllowlist, when not empty, lists the hosts a provider endpoint may name
	// (WORKER_ENDPOINT_ALLOWLIST); see HostAllowed for the forms. Defaults are checked too.
	EndpointAllowlist []string
	// LookupEnv reads the model override variables (OPENAI_MODEL, ...); nil means
	// os.LookupEnv.
	LookupEnv func(key string) (string, bool)
	// Transport carries the HTTP calls; nil gives each provider its own transport cloned
	// from http.DefaultTransport with more idle connections per host.
	Transport http.RoundTripper
	// WrapTransport, when set, wraps the transport of every provider's client (the
	// worker's tracing of provider calls).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Now is the clock used to turn an HTTP-date Retry-After into a delay; nil means
	// time.Now.
	Now func() time.Time
	// Logger receives warnings such as an unusable response_format; nil discards them.
	// Nothing logged holds keys or prompt text.
	Logger *slog.Logger
}

// Env returns the non-empty value of the environment variable key.
func (o Options) Env(key string) (string, bool) {
	lookup := o.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, ok := lookup(key)
	if !ok || v == "" {
		return "", false
	}
	return v, true
}

// Clock returns Now, or time.Now when it is nil.
func (o Options) Clock() func() time.Time {
	if o.Now == nil {
		return time.Now
	}
	return o.Now
}

// Log returns Logger, or a logger that discards everything when it is nil.
func (o Options) Log() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// idleConnsPerHost lets a worker keep enough warm connections to one provider for its
// default concurrency (64); net/http's default of 2 would reconnect on most calls.
const idleConnsPerHost = 64

// HTTPClient returns the client a provider uses: the Transport of o (or a fresh one),
// no overall timeout (the context deadline of each call rules, as in Dapr 1.17+), and no
// redirects, so a request carrying a key never goes to a host that was not configured.
func (o Options) HTTPClient() *http.Client {
	rt := o.Transport
	if rt == nil {
		if def, ok := http.DefaultTransport.(*http.Transport); ok {
			t := def.Clone()
			t.MaxIdleConnsPerHost = idleConnsPerHost
			rt = t
		} else {
			rt = http.DefaultTransport
		}
	}
	if o.WrapTransport != nil {
		rt = o.WrapTransport(rt)
	}
	return &http.Client{
		Transport: rt,
		Timeout:   0,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Model resolves a component's model as Dapr's getModel does: the environment variable
// env (when env is not empty and the variable is set) wins over the component's `model`
// metadata, which wins over def.
func (o Options) Model(c component.Component, env, def string) string {
	if env != "" {
		if v, ok := o.Env(env); ok {
			return v
		}
	}
	if v, ok := c.Get("model"); ok && v != "" {
		return v
	}
	return def
}

// Metadata returns the non-empty metadata value of key (case-insensitive).
func Metadata(c component.Component, key string) (string, bool) {
	v, ok := c.Get(key)
	if !ok || v == "" {
		return "", false
	}
	return v, true
}
