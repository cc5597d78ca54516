// Package config loads a service's configuration from environment variables into a
// struct with github.com/sethvargo/go-envconfig tags, then validates it.
package config

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/sethvargo/go-envconfig"
)

// Validator is implemented by configuration structs with cross-field rules.
type Validator interface {
	Validate() error
}

// Load reads T from the process environment.
func Load[T any](ctx context.Context) (T, error) {
	return LoadFrom[T](ctx, envconfig.OsLookuper())
}

// LoadFrom reads T from lookuper and calls Validate when *T implements Validator.
// Errors name the environment variable at fault.
func LoadFrom[T any](ctx context.Context, lookuper envconfig.Lookuper) (T, error) {
	var cfg T
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &cfg, Lookuper: lookuper}); err != nil {
		// go-envconfig names the struct field when a value does not parse; users know the
		// variable, so name it too.
		if key := envKeyOf(reflect.TypeFor[T](), err.Error()); key != "" {
			return cfg, fmt.Errorf("configuration: %s: %w", key, err)
		}
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	if v, ok := any(&cfg).(Validator); ok {
		if err := v.Validate(); err != nil {
			return cfg, fmt.Errorf("configuration: %w", err)
		}
	}
	return cfg, nil
}

// Provider returns an fx constructor that loads T from the process environment.
// Tests replace the value with fx.Replace.
func Provider[T any]() func() (T, error) {
	return func() (T, error) {
		// Start-up work: there is no request context yet.
		return Load[T](context.Background())
	}
}

// envKeyOf finds the env tag of the field whose name prefixes msg.
func envKeyOf(t reflect.Type, msg string) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return ""
	}
	for f := range t.Fields() {
		if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" && strings.HasPrefix(msg, f.Name+":") {
			return key
		}
		if f.Type.Kind() == reflect.Struct || (f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct) {
			if key := envKeyOf(f.Type, msg); key != "" {
				return key
			}
		}
	}
	return ""
}
