// Package resourceyaml reads Dapr resource YAML (component and resiliency files): the files
// of a resources folder, and parsed nodes with precise errors. The component and resiliency
// loaders share it.
package resourceyaml

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Deref follows alias nodes (at most 100 deep) to the node they name.
func Deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// IsNull reports whether n is missing or a YAML null.
func IsNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// KindName describes n for an error message.
func KindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
	default:
		return "an unexpected node"
	}
}

// Lookup returns the value of key in a mapping node, or nil.
func Lookup(n *yaml.Node, key string) *yaml.Node {
	n = Deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := Deref(n.Content[i]); k != nil && k.Kind == yaml.ScalarNode && k.Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// OnlyKeys fails on the first key of m (sorted) that allowed does not list.
func OnlyKeys(m map[string]*yaml.Node, allowed ...string) error {
	var unknown []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return fmt.Errorf("unknown field %q (want %s)", unknown[0], strings.Join(allowed, ", "))
}

// Scalar returns a scalar's text; a missing or null node is "".
func Scalar(n *yaml.Node) (string, error) {
	n = Deref(n)
	if IsNull(n) {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("must be a scalar, got %s", KindName(n))
	}
	return n.Value, nil
}

// Pair is one entry of a mapping node, in document order.
type Pair struct {
	Key   string
	Value *yaml.Node
}

// Pairs returns the entries of a mapping node in document order. A missing or null node has
// none; keys must be scalars and unique.
func Pairs(n *yaml.Node) ([]Pair, error) {
	n = Deref(n)
	if IsNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("must be a mapping, got %s", KindName(n))
	}
	out := make([]Pair, 0, len(n.Content)/2)
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := Deref(n.Content[i])
		if k == nil || k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: keys must be scalars", n.Content[i].Line)
		}
		if seen[k.Value] {
			return nil, fmt.Errorf("line %d: key %q defined twice", k.Line, k.Value)
		}
		seen[k.Value] = true
		out = append(out, Pair{Key: k.Value, Value: n.Content[i+1]})
	}
	return out, nil
}

// Mapping returns the entries of a mapping node by key. A missing or null node is an empty
// mapping; keys must be scalars and unique.
func Mapping(n *yaml.Node) (map[string]*yaml.Node, error) {
	ps, err := Pairs(n)
	if err != nil {
		return nil, err
	}
	m := make(map[string]*yaml.Node, len(ps))
	for _, p := range ps {
		m[p.Key] = p.Value
	}
	return m, nil
}

// ScalarList checks that n is missing, null or a list of scalars.
func ScalarList(n *yaml.Node) error {
	n = Deref(n)
	if IsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("must be a list, got %s", KindName(n))
	}
	for i, item := range n.Content {
		if _, err := Scalar(item); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	return nil
}
