// Package providers maps loaded conversation components to the provider implementations that
// serve them: every type Dapr ships (openai incl. Azure, anthropic incl. Foundry,
// aws.bedrock, deepseek, googleai, huggingface, mistral, ollama) and echo.
package providers

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/anthropic"
	"github.com/parleyhq/parley/services/provider-worker/provider/bedrock"
	"github.com/parleyhq/parley/services/provider-worker/provider/deepseek"
	"github.com/parleyhq/parley/services/provider-worker/provider/echo"
	"github.com/parleyhq/parley/services/provider-worker/provider/googleai"
	"github.com/parleyhq/parley/services/provider-worker/provider/huggingface"
	"github.com/parleyhq/parley/services/provider-worker/provider/mistral"
	"github.com/parleyhq/parley/services/provider-worker/provider/ollama"
	"github.com/parleyhq/parley/services/provider-worker/provider/openai"
)

// Provider answers one conversation request. Implementations must be safe for concurrent
// use and must return once ctx is done.
type Provider interface {
	Converse(ctx context.Context, req *providerv1.Request) (*providerv1.Response, error)
}

// Error is a provider failure that carries the code the router should see, for example
// UNAVAILABLE when the upstream API is overloaded. Failures without a code are INTERNAL.
//
// The code also steers the component's resiliency policy: INVALID_ARGUMENT and NOT_FOUND say
// the request itself cannot succeed, so the worker neither retries them nor counts them
// against the circuit breaker; every other failure may be retried. A provider that got a
// Retry-After answer wraps its Error with resiliency.RetryAfterHint, and the worker waits
// that long instead of its backoff (provider.Error carries its hint in a field, which the
// worker reads through provider.RetryAfterOf).
type Error struct {
	// Code classifies the failure.
	Code providerv1.ErrorCode
	// Err is the failure itself; its message is sent to the router.
	Err error
}

// Error implements error.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the underlying failure.
func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the code of the failure.
func (e *Error) ErrorCode() providerv1.ErrorCode { return e.Code }

// ErrNotLoaded means a component was asked for by name but the components directory does not
// define it.
var ErrNotLoaded = errors.New("component is not loaded")

// constructor builds the provider of one component. ctx bounds start-up work (loading
// AWS credentials); it is not kept.
type constructor func(ctx context.Context, c component.Component, opts provider.Options) (Provider, error)

// typed adapts a constructor of a concrete provider type, returning a nil interface rather
// than a typed nil on error.
func typed[P Provider](f func(component.Component, provider.Options) (P, error)) constructor {
	return func(_ context.Context, c component.Component, opts provider.Options) (Provider, error) {
		p, err := f(c, opts)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
}

// constructors maps the provider part of a component type (conversation.<provider>) to its
// constructor.
func constructors() map[string]constructor {
	return map[string]constructor{
		"echo": func(context.Context, component.Component, provider.Options) (Provider, error) {
			return echo.New(), nil
		},
		"openai":      typed(openai.New),
		"deepseek":    typed(deepseek.New),
		"googleai":    typed(googleai.New),
		"huggingface": typed(huggingface.New),
		"ollama":      typed(ollama.New),
		"mistral":     typed(mistral.New),
		"anthropic":   typed(anthropic.New),
		"aws.bedrock": func(ctx context.Context, c component.Component, opts provider.Options) (Provider, error) {
			p, err := bedrock.New(ctx, c, opts)
			if err != nil {
				return nil, err
			}
			return p, nil
		},
	}
}

// New returns the provider implementing c's type.
func New(ctx context.Context, c component.Component, opts provider.Options) (Provider, error) {
	ctor, ok := constructors()[strings.ToLower(c.Provider())]
	if !ok {
		return nil, fmt.Errorf("component %q: type %s is not implemented by this worker", c.Name, c.Type)
	}
	p, err := ctor(ctx, c, opts)
	if err != nil {
		return nil, fmt.Errorf("component %q (%s): %w", c.Name, c.Type, err)
	}
	return p, nil
}

// Select returns the components named in names, in that order, or every component when
// names is empty. A name that comps lacks is an error wrapping ErrNotLoaded; repeated names
// are served once.
func Select(comps []component.Component, names []string) ([]component.Component, error) {
	if len(names) == 0 {
		return comps, nil
	}
	var (
		out  []component.Component
		errs []error
		seen = make(map[string]bool, len(names))
	)
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		i := slices.IndexFunc(comps, func(c component.Component) bool { return c.Name == name })
		if i < 0 {
			errs = append(errs, fmt.Errorf("%q: %w (loaded: %s)", name, ErrNotLoaded, loadedNames(comps)))
			continue
		}
		out = append(out, comps[i])
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func loadedNames(comps []component.Component) string {
	if len(comps) == 0 {
		return "none"
	}
	names := make([]string, len(comps))
	for i, c := range comps {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

// Registry holds the provider of every served component, by component name.
type Registry struct {
	providers map[string]Provider
	names     []string
}

// Build creates the provider of every component in comps. It reports every component it
// cannot serve, not just the first.
func Build(ctx context.Context, comps []component.Component, opts provider.Options) (*Registry, error) {
	r := &Registry{providers: make(map[string]Provider, len(comps))}
	var errs []error
	for _, c := range comps {
		p, err := New(ctx, c, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.providers[c.Name] = p
		r.names = append(r.names, c.Name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(r.names)
	return r, nil
}

// Names lists the served component names, sorted.
func (r *Registry) Names() []string { return slices.Clone(r.names) }

// All yields every served component name with its provider, in name order.
func (r *Registry) All() iter.Seq2[string, Provider] {
	return func(yield func(string, Provider) bool) {
		for _, name := range r.names {
			if !yield(name, r.providers[name]) {
				return
			}
		}
	}
}

// Provider returns the provider of the named component.
func (r *Registry) Provider(name string) (Provider, bool) {
	p, ok := r.providers[name]
	return p, ok
}
