package conversation

import (
	"encoding/json"
	"fmt"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/jsondepth"
	"github.com/parleyhq/parley/libs/providertext"
)

// MaxComponentName bounds a component name: Dapr component names are Kubernetes object
// names, at most 253 characters. API adapters refuse longer names before looking them up,
// so no error message or log line carries a huge name.
const MaxComponentName = 253

// InvalidRequestError means a request breaks one of the limits every request must keep
// (docs/architecture.md, "Limits"); Detail says which, without echoing the input.
type InvalidRequestError struct{ Detail string }

func (e *InvalidRequestError) Error() string { return e.Detail }

func invalid(format string, args ...any) error {
	return &InvalidRequestError{Detail: fmt.Sprintf(format, args...)}
}

// validate checks req against the limits that hold end to end: the number of texts the
// scrubber takes in one call (so no audit copy is ever redacted for being too large to
// scrub) and the nesting depth of every JSON value, which downstream decoders (protobuf,
// PostgreSQL jsonb, the audit query path) must be able to read back.
func (s *Service) validate(req Request) error {
	p := req.Provider
	if n := len(providertext.Inputs(p)); s.opts.MaxTexts > 0 && n > s.opts.MaxTexts {
		return invalid("the request has %d texts (message parts, tool calls and tool results); at most %d are accepted", n, s.opts.MaxTexts)
	}
	for i, t := range p.GetTools() {
		if jsondepth.StructExceeds(t.GetParameters(), jsondepth.Max) {
			return invalid("tools[%d].parameters nest deeper than %d levels", i, jsondepth.Max)
		}
	}
	if jsondepth.StructExceeds(p.GetResponseFormat(), jsondepth.Max) {
		return invalid("response_format nests deeper than %d levels", jsondepth.Max)
	}
	for i, m := range p.GetMessages() {
		for _, part := range m.GetParts() {
			var text, what string
			switch k := part.GetKind().(type) {
			case *providerv1.Part_ToolCall:
				text, what = k.ToolCall.GetArguments(), "tool-call arguments"
			case *providerv1.Part_ToolResult:
				text, what = k.ToolResult.GetContent(), "tool result"
			default:
				continue
			}
			// Only JSON is read as JSON downstream; a text that merely holds brackets is text.
			if jsondepth.Exceeds(text, jsondepth.Max) && json.Valid([]byte(text)) {
				return invalid("messages[%d]: %s nest JSON deeper than %d levels", i, what, jsondepth.Max)
			}
		}
	}
	return nil
}
