package openai

import (
	"errors"
	"fmt"
)

// structuredOutput converts a request's response_format, a JSON Schema, the way Dapr's
// langchaingokit convertToStructuredOutputDefinition does: "type" is required and must be
// a string; the name comes from "name" (default "response"), the description from
// "description", strict from "strict" (default false); the schema keeps only type,
// description, required (its strings), additionalProperties (a boolean; false on objects
// when absent), enum (as strings), the properties of objects and the items of arrays.
func structuredOutput(m map[string]any) (*jsonSchema, error) {
	if _, ok := m["type"].(string); !ok {
		return nil, errors.New("schema type is required and must be a string")
	}
	schema, err := schemaAt(m, 0)
	if err != nil {
		return nil, fmt.Errorf("convert schema: %w", err)
	}
	out := &jsonSchema{Name: "response", Schema: schema}
	if n, ok := m["name"].(string); ok && n != "" {
		out.Name = n
	}
	if d, ok := m["description"].(string); ok {
		out.Description = d
	}
	if s, ok := m["strict"].(bool); ok {
		out.Strict = s
	}
	return out, nil
}

// maxSchemaDepth bounds the recursion over nested properties and items; a Struct decoded
// from NATS could otherwise nest deeply enough to matter.
const maxSchemaDepth = 64

func schemaAt(m map[string]any, depth int) (*schemaNode, error) {
	if depth > maxSchemaDepth {
		return nil, fmt.Errorf("schema nests deeper than %d levels", maxSchemaDepth)
	}
	typ, ok := m["type"].(string)
	if !ok {
		return nil, errors.New("schema type is required")
	}
	n := &schemaNode{Type: typ}
	if d, ok := m["description"].(string); ok {
		n.Description = d
	}
	if req, ok := m["required"].([]any); ok {
		for _, r := range req {
			if s, ok := r.(string); ok {
				n.Required = append(n.Required, s)
			}
		}
	}
	if enum, ok := m["enum"].([]any); ok {
		for _, e := range enum {
			if s, ok := e.(string); ok {
				n.Enum = append(n.Enum, s)
			} else {
				n.Enum = append(n.Enum, fmt.Sprintf("%v", e))
			}
		}
	}
	switch typ {
	case "object":
		additional := false
		if a, ok := m["additionalProperties"].(bool); ok {
			additional = a
		}
		n.AdditionalProperties = &additional
		if props, ok := m["properties"].(map[string]any); ok {
			n.Properties = make(map[string]*schemaNode, len(props))
			for name, v := range props {
				pm, ok := v.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("property %q must be a map, got %T", name, v)
				}
				p, err := schemaAt(pm, depth+1)
				if err != nil {
					return nil, fmt.Errorf("convert property %q: %w", name, err)
				}
				n.Properties[name] = p
			}
		}
	case "array":
		if items, ok := m["items"].(map[string]any); ok {
			it, err := schemaAt(items, depth+1)
			if err != nil {
				return nil, fmt.Errorf("convert array items: %w", err)
			}
			n.Items = it
		}
	}
	return n, nil
}
