package component

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/parleyhq/parley/libs/resourceyaml"
)

// TypePrefix is the prefix of every conversation component type, as in "conversation.openai".
const TypePrefix = "conversation."

// Component is one conversation component loaded from a Dapr component YAML document.
type Component struct {
	// Name is metadata.name: the name clients use in the URL or request.
	Name string
	// Type is the lower-cased spec.type, e.g. "conversation.openai".
	Type string
	// Version is the lower-cased spec.version: "", "v0" or "v1".
	Version string
	// File is the path of the file that defines the component.
	File string
	// Metadata holds spec.metadata with every value as a string and every secretKeyRef
	// resolved. Keys keep the spelling of the file; use Get for Dapr's case-insensitive lookup.
	// Values may be secrets: never log them.
	Metadata map[string]string
	// CacheTTL is the response cache TTL from responseCacheTTL (alias cacheTTL); zero means no
	// response cache. It is always zero for the providers that Dapr never caches (echo,
	// deepseek).
	CacheTTL time.Duration
}

// Provider returns the type without the "conversation." prefix, e.g. "aws.bedrock".
func (c Component) Provider() string {
	return strings.TrimPrefix(c.Type, TypePrefix)
}

// Get returns the metadata value whose key matches key case-insensitively, as Dapr's
// mapstructure decoding does.
func (c Component) Get(key string) (string, bool) {
	if v, ok := c.Metadata[key]; ok {
		return v, true
	}
	for k, v := range c.Metadata {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

// String describes the component without metadata values, which may be secrets.
func (c Component) String() string {
	return fmt.Sprintf("component %q (type %s, file %s, metadata keys %v, cacheTTL %s)",
		c.Name, c.Type, c.File, c.metadataKeys(), c.CacheTTL)
}

// LogValue implements slog.LogValuer. It logs metadata keys only, never values.
func (c Component) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", c.Name),
		slog.String("type", c.Type),
		slog.String("version", c.Version),
		slog.String("file", c.File),
		slog.Any("metadata_keys", c.metadataKeys()),
		slog.Duration("cache_ttl", c.CacheTTL),
	)
}

func (c Component) metadataKeys() []string {
	keys := make([]string, 0, len(c.Metadata))
	for k := range c.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Error is a problem with one document of a component file (Kind "component", Name the
// document's metadata.name). Its message names the file, the component (or the document
// number when the name is unknown) and the field.
type Error = resourceyaml.Error
