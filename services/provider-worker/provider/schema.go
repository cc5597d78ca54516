package provider

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/types/known/structpb"
)

// DefaultResponseSchemaName names a response_format that sets no "name", as in Dapr.
const DefaultResponseSchemaName = "response"

// ResponseSchema is a request's response_format (a JSON Schema) converted the way Dapr's
// langchaingokit convertToStructuredOutputDefinition does; provider/openai applies the
// same rules to its json_schema response format. Providers without native structured
// output (Anthropic, Bedrock) send it as the input schema of a forced tool.
type ResponseSchema struct {
	// Name is the schema's "name", or DefaultResponseSchemaName.
	Name string
	// Description is the schema's "description", if any.
	Description string
	// Strict is the schema's "strict" (default false).
	Strict bool
	// Schema is the reduced JSON Schema as JSON-ready values (map[string]any, []any,
	// string, bool): type, description, required (its strings), additionalProperties (a
	// boolean; false on objects when absent), enum (as strings), the properties of objects
	// and the items of arrays, nothing else.
	Schema map[string]any
}

// maxResponseSchemaDepth bounds the recursion over nested properties and items; a Struct
// decoded from NATS could otherwise nest deeply enough to matter.
const maxResponseSchemaDepth = 64

// ConvertResponseFormat converts rf as Dapr does: "type" is required and must be a string
// at the root and in every property and item schema. A nil rf gives nil and no error. The
// error never holds prompt text, only schema property names; Dapr logs it and goes on
// without structured output, and so should the caller.
func ConvertResponseFormat(rf *structpb.Struct) (*ResponseSchema, error) {
	if rf == nil {
		return nil, nil
	}
	m := rf.AsMap()
	if _, ok := m["type"].(string); !ok {
		return nil, errors.New("schema type is required and must be a string")
	}
	schema, err := responseSchemaAt(m, 0)
	if err != nil {
		return nil, fmt.Errorf("convert schema: %w", err)
	}
	out := &ResponseSchema{Name: DefaultResponseSchemaName, Schema: schema}
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

func responseSchemaAt(m map[string]any, depth int) (map[string]any, error) {
	if depth > maxResponseSchemaDepth {
		return nil, fmt.Errorf("schema nests deeper than %d levels", maxResponseSchemaDepth)
	}
	typ, ok := m["type"].(string)
	if !ok {
		return nil, errors.New("schema type is required")
	}
	n := map[string]any{"type": typ}
	if d, ok := m["description"].(string); ok && d != "" {
		n["description"] = d
	}
	if req, ok := m["required"].([]any); ok {
		var names []any
		for _, r := range req {
			if s, ok := r.(string); ok {
				names = append(names, s)
			}
		}
		if len(names) > 0 {
			n["required"] = names
		}
	}
	if enum, ok := m["enum"].([]any); ok && len(enum) > 0 {
		values := make([]any, 0, len(enum))
		for _, e := range enum {
			if s, ok := e.(string); ok {
				values = append(values, s)
			} else {
				values = append(values, fmt.Sprintf("%v", e))
			}
		}
		n["enum"] = values
	}
	switch typ {
	case "object":
		additional := false
		if a, ok := m["additionalProperties"].(bool); ok {
			additional = a
		}
		n["additionalProperties"] = additional
		if props, ok := m["properties"].(map[string]any); ok && len(props) > 0 {
			out := make(map[string]any, len(props))
			for name, v := range props {
				pm, ok := v.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("property %q must be a map, got %T", name, v)
				}
				p, err := responseSchemaAt(pm, depth+1)
				if err != nil {
					return nil, fmt.Errorf("convert property %q: %w", name, err)
				}
				out[name] = p
			}
			n["properties"] = out
		}
	case "array":
		if items, ok := m["items"].(map[string]any); ok {
			it, err := responseSchemaAt(items, depth+1)
			if err != nil {
				return nil, fmt.Errorf("convert array items: %w", err)
			}
			n["items"] = it
		}
	}
	return n, nil
}
