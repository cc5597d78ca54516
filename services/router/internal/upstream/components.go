package upstream

import (
	"errors"
	"fmt"
	"strings"

	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// Components is the router's view of the component files: names, types, models and
// cache TTLs. Secrets are not resolved: provider keys never reach the router.
type Components struct {
	byName map[string]conversation.Component
	list   []conversation.Component
}

// LoadComponents reads the Dapr component files in dir.
func LoadComponents(dir string) (*Components, error) {
	cs, err := component.LoadDir(dir, component.Options{SkipSecrets: true})
	if err != nil {
		return nil, fmt.Errorf("load components from COMPONENTS_DIR=%s: %w", dir, err)
	}
	c := &Components{byName: make(map[string]conversation.Component, len(cs))}
	for _, x := range cs {
		model, _ := x.Get("model")
		comp := conversation.Component{Name: x.Name, Type: x.Type, Version: x.Version, Model: model, CacheTTL: x.CacheTTL}
		if v, ok := x.Get("fallbacks"); ok {
			comp.Fallbacks = splitNames(v)
		}
		c.byName[x.Name] = comp
		c.list = append(c.list, comp)
	}
	var errs []error
	for _, x := range cs {
		for _, fb := range c.byName[x.Name].Fallbacks {
			if _, ok := c.byName[fb]; !ok || fb == x.Name {
				errs = append(errs, fmt.Errorf("%s: component %q: metadata \"fallbacks\": %q is not another loaded component", x.File, x.Name, fb))
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("load components from COMPONENTS_DIR=%s: %w", dir, errors.Join(errs...))
	}
	return c, nil
}

// Lookup finds a component by exact name.
func (c *Components) Lookup(name string) (conversation.Component, bool) {
	comp, ok := c.byName[name]
	return comp, ok
}

// List returns every component.
func (c *Components) List() []conversation.Component { return c.list }

// splitNames splits a comma-separated list, dropping blanks.
func splitNames(v string) []string {
	var out []string
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
