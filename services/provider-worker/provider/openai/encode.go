package openai

import (
	"errors"
	"fmt"
	"strings"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// Tool choice values of the provider request; "any" is accepted as a synonym of
// "required", as Dapr's components do.
const (
	toolChoiceAuto     = "auto"
	toolChoiceNone     = "none"
	toolChoiceRequired = "required"
	toolChoiceAny      = "any"
)

// promptCacheRetentionKey is the metadata key under which Dapr forwards
// prompt_cache_retention (its langchaingokit "hack"): the Go duration string, e.g. "24h0m0s".
const promptCacheRetentionKey = "prompt_cache_retention"

// droppedMetadataPrefix marks metadata keys langchaingo's OpenAI client never sends.
const droppedMetadataPrefix = "openai:"

// buildRequest translates req into the chat completions body of c's dialect. A request
// that cannot be expressed (a part with no kind, a tool result outside a tool message)
// is an INVALID_ARGUMENT error; its message names positions, never text.
// schemaWarn receives a response_format that Dapr's conversion rejects; the request then
// goes without structured output, as in Dapr.
func (c *Client) buildRequest(req *providerv1.Request, schemaWarn func(error)) (*chatRequest, error) {
	msgs, err := c.messages(req.GetMessages())
	if err != nil {
		return nil, provider.InvalidArgument(fmt.Errorf("%s: %w", c.name, err))
	}
	out := &chatRequest{Model: c.model, Messages: msgs, Stop: req.GetStop()}
	if t := req.GetTemperature(); t > 0 {
		out.Temperature = t
	}
	maxTokens := c.defaultMaxTokens
	if n := req.GetMaxTokens(); n > 0 {
		maxTokens = n
	}
	if maxTokens > 0 {
		if c.dialect.MaxCompletionTokens {
			out.MaxCompletionTokens = maxTokens
		} else {
			out.MaxTokens = maxTokens
		}
	}
	if tools := req.GetTools(); len(tools) > 0 {
		out.Tools = make([]chatTool, len(tools))
		for i, t := range tools {
			typ := t.GetType()
			if typ == "" {
				typ = "function"
			}
			out.Tools[i] = chatTool{Type: typ, Function: functionDef{Name: t.GetName(), Description: t.GetDescription()}}
			if p := t.GetParameters(); p != nil {
				out.Tools[i].Function.Parameters = p.AsMap()
			}
		}
	}
	out.ToolChoice = toolChoice(req.GetToolChoice())
	if rf := req.GetResponseFormat(); rf != nil {
		rs, err := provider.ConvertResponseFormat(rf)
		if err != nil {
			schemaWarn(err)
		} else {
			out.ResponseFormat = &responseFormat{Type: "json_schema", JSONSchema: &jsonSchema{
				Name: rs.Name, Description: rs.Description, Schema: rs.Schema, Strict: rs.Strict,
			}}
		}
	}
	if c.dialect.ForwardMetadata {
		out.Metadata = metadata(req)
	}
	return out, nil
}

// toolChoice renders a tool choice: auto, none and required as strings, any as required,
// a tool name as {"type":"function","function":{"name":…}}, empty as absent.
func toolChoice(v string) any {
	switch v {
	case "":
		return nil
	case toolChoiceAuto, toolChoiceNone, toolChoiceRequired:
		return v
	case toolChoiceAny:
		return toolChoiceRequired
	default:
		return namedToolChoice{Type: "function", Function: functionName{Name: v}}
	}
}

// metadata returns the request metadata as Dapr forwards it: keys prefixed "openai:"
// dropped (langchaingo does), prompt_cache_retention added as a Go duration string when
// the request sets it. nil when nothing is left.
func metadata(req *providerv1.Request) map[string]string {
	md := req.GetMetadata()
	pcr := req.GetPromptCacheRetention()
	if len(md) == 0 && pcr == nil {
		return nil
	}
	out := make(map[string]string, len(md)+1)
	for k, v := range md {
		if !strings.HasPrefix(k, droppedMetadataPrefix) {
			out[k] = v
		}
	}
	if pcr != nil {
		out[promptCacheRetentionKey] = pcr.AsDuration().String()
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// role names a message role in the chat API: function and generic become user (as
// langchaingo's generic role does; OpenAI's function role is deprecated), developer stays
// developer only where the API has it.
func (c *Client) role(r providerv1.Role) string {
	switch r {
	case providerv1.Role_ROLE_SYSTEM:
		return "system"
	case providerv1.Role_ROLE_DEVELOPER:
		if c.dialect.DeveloperRole {
			return "developer"
		}
		return "system"
	case providerv1.Role_ROLE_ASSISTANT:
		return "assistant"
	case providerv1.Role_ROLE_TOOL:
		return "tool"
	default:
		return "user"
	}
}

var (
	errNoKind             = errors.New("part has no kind")
	errToolResultMisplace = errors.New("tool result outside a tool message")
	errToolCallMisplace   = errors.New("tool call outside an assistant message")
	errTextInTool         = errors.New("text part in a tool message: tool messages carry tool results")
)

// messages translates the flattened history. A tool message becomes one tool message per
// tool result (Mistral dialect: one user message "Tool response [ID: …, Name: …]: …").
func (c *Client) messages(in []*providerv1.Message) ([]chatMessage, error) {
	out := make([]chatMessage, 0, len(in))
	for i, m := range in {
		if m.GetRole() == providerv1.Role_ROLE_TOOL {
			msgs, err := c.toolMessages(m)
			if err != nil {
				return nil, fmt.Errorf("message %d: %w", i, err)
			}
			out = append(out, msgs...)
			continue
		}
		msg, err := c.message(m)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		out = append(out, msg)
	}
	return out, nil
}

func (c *Client) message(m *providerv1.Message) (chatMessage, error) {
	assistant := m.GetRole() == providerv1.Role_ROLE_ASSISTANT
	msg := chatMessage{Role: c.role(m.GetRole())}
	texts := make([]string, 0, len(m.GetParts()))
	for j, p := range m.GetParts() {
		switch kind := p.GetKind().(type) {
		case *providerv1.Part_Text:
			texts = append(texts, kind.Text)
		case *providerv1.Part_ToolCall:
			if !assistant {
				return chatMessage{}, fmt.Errorf("part %d: %w", j, errToolCallMisplace)
			}
			tc := kind.ToolCall
			if c.dialect.ToolCallsAsText {
				// Dapr's Mistral workaround (langchaingokit.CreateToolCallPart).
				texts = append(texts, "Tool call [ID: "+tc.GetId()+"]: "+tc.GetName()+"("+tc.GetArguments()+")")
				continue
			}
			typ := tc.GetType()
			if typ == "" {
				typ = "function"
			}
			msg.ToolCalls = append(msg.ToolCalls, toolCall{
				ID: tc.GetId(), Type: typ, Function: functionCall{Name: tc.GetName(), Arguments: tc.GetArguments()},
			})
		case *providerv1.Part_ToolResult:
			return chatMessage{}, fmt.Errorf("part %d: %w", j, errToolResultMisplace)
		default:
			return chatMessage{}, fmt.Errorf("part %d: %w", j, errNoKind)
		}
	}
	msg.Content = c.content(texts, len(msg.ToolCalls) > 0)
	return msg, nil
}

// content renders message texts: one text as a string, several as text parts or joined
// by "\n" (dialects whose APIs take only strings), none as "" (or absent next to tool
// calls, where the API allows null content).
func (c *Client) content(texts []string, hasToolCalls bool) any {
	switch {
	case len(texts) == 0 && hasToolCalls:
		return nil
	case len(texts) == 0:
		return ""
	case len(texts) == 1:
		return texts[0]
	case c.dialect.TextPartsAsArray:
		parts := make([]textPart, len(texts))
		for i, t := range texts {
			parts[i] = textPart{Type: "text", Text: t}
		}
		return parts
	default:
		return strings.Join(texts, "\n")
	}
}

func (c *Client) toolMessages(m *providerv1.Message) ([]chatMessage, error) {
	results := make([]*providerv1.ToolResult, 0, len(m.GetParts()))
	for j, p := range m.GetParts() {
		switch kind := p.GetKind().(type) {
		case *providerv1.Part_ToolResult:
			results = append(results, kind.ToolResult)
		case *providerv1.Part_Text:
			return nil, fmt.Errorf("part %d: %w", j, errTextInTool)
		case *providerv1.Part_ToolCall:
			return nil, fmt.Errorf("part %d: %w", j, errToolCallMisplace)
		default:
			return nil, fmt.Errorf("part %d: %w", j, errNoKind)
		}
	}
	if c.dialect.ToolCallsAsText {
		if len(results) == 0 {
			return nil, nil
		}
		return []chatMessage{mistralToolResponse(results)}, nil
	}
	out := make([]chatMessage, len(results))
	for i, r := range results {
		out[i] = chatMessage{Role: "tool", ToolCallID: r.GetToolCallId(), Content: r.GetContent()}
	}
	return out, nil
}

// mistralToolResponse is Dapr's langchaingokit.CreateToolResponseMessage: one user message
// "Tool response [ID: <id>, Name: <name>]: <c1>\n<c2>…", id and name taken from the first
// result that has them.
func mistralToolResponse(results []*providerv1.ToolResult) chatMessage {
	var id, name string
	contents := make([]string, len(results))
	for i, r := range results {
		if id == "" {
			id = r.GetToolCallId()
		}
		if name == "" {
			name = r.GetName()
		}
		contents[i] = r.GetContent()
	}
	return chatMessage{
		Role:    "user",
		Content: "Tool response [ID: " + id + ", Name: " + name + "]: " + strings.Join(contents, "\n"),
	}
}
