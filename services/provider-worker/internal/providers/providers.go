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

	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/internal/serve"
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

// ErrNotLoaded means a component was asked for by name but the components directory does not
// define it.
var ErrNotLoaded = errors.New("component is not loaded")

// constructor builds the provider of one component. ctx bounds start-up work (loading
// AWS credentials); it is not kept.
type constructor func(ctx context.Context, c component.Component, opts provider.Options) (serve.Provider, error)

// typed adapts a constructor of a concrete provider type, returning a nil interface rather
// than a typed nil on error.
func typed[P serve.Provider](f func(component.Component, provider.Options) (P, error)) constructor {
	return func(_ context.Context, c component.Component, opts provider.Options) (serve.Provider, error) {
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
		"echo": func(context.Context, component.Component, provider.Options) (serve.Provider, error) {
			return echo.New(), nil
		},
		"openai":      typed(openai.New),
		"deepseek":    typed(deepseek.New),
		"googleai":    typed(googleai.New),
		"huggingface": typed(huggingface.New),
		"ollama":      typed(ollama.New),
		"mistral":     typed(mistral.New),
		"anthropic":   typed(anthropic.New),
		"aws.bedrock": func(ctx context.Context, c component.Component, opts provider.Options) (serve.Provider, error) {
			p, err := bedrock.New(ctx, c, opts)
			if err != nil {
				return nil, err
			}
			return p, nil
		},
	}
}

// New returns the provider implementing c's type.
func New(ctx context.Context, c component.Component, opts provider.Options) (serve.Provider, error) {
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
	providers map[string]serve.Provider
	kinds     map[string]string // component name -> provider (type after "conversation.")
	names     []string
}

// Build creates the provider of every component in comps. It reports every component it
// cannot serve, not just the first.
func Build(ctx context.Context, comps []component.Component, opts provider.Options) (*Registry, error) {
	r := &Registry{providers: make(map[string]serve.Provider, len(comps)), kinds: make(map[string]string, len(comps))}
	var errs []error
	for _, c := range comps {
		p, err := New(ctx, c, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.providers[c.Name] = p
		r.kinds[c.Name] = c.Provider()
		r.names = append(r.names, c.Name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(r.names)
	return r, nil
}

// All yields every served component name with its provider, in name order.
func (r *Registry) All() iter.Seq2[string, serve.Provider] {
	return func(yield func(string, serve.Provider) bool) {
		for _, name := range r.names {
			if !yield(name, r.providers[name]) {
				return
			}
		}
	}
}

// GenAI names the provider of component name (the part of its type after
// "conversation.") and the model its provider sends, where the provider says (an
// optional Model method), for the GenAI attributes of the worker's spans.
func (r *Registry) GenAI(name string) (provider, model string) {
	if m, ok := r.providers[name].(interface{ Model() string }); ok {
		model = m.Model()
	}
	return r.kinds[name], model
}
