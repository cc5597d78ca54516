// Package providers maps loaded conversation components to the provider implementations that
// serve them. Only conversation.echo is implemented today; every other known type fails
// start-up with a message that says so, rather than failing each request later.
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
	"github.com/parleyhq/parley/services/provider-worker/provider/echo"
)

// Provider answers one conversation request. Implementations must be safe for concurrent
// use and must return once ctx is done.
type Provider interface {
	Converse(ctx context.Context, req *providerv1.Request) (*providerv1.Response, error)
}

// Error is a provider failure that carries the code the router should see, for example
// UNAVAILABLE when the upstream API is overloaded. Failures without a code are INTERNAL.
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

// New returns the provider implementing c's type.
func New(c component.Component) (Provider, error) {
	switch c.Provider() {
	case "echo":
		return echo.New(), nil
	default:
		return nil, fmt.Errorf("component %q: type %s is not implemented by this worker yet", c.Name, c.Type)
	}
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
func Build(comps []component.Component) (*Registry, error) {
	r := &Registry{providers: make(map[string]Provider, len(comps))}
	var errs []error
	for _, c := range comps {
		p, err := New(c)
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
