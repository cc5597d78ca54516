package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// Wire shapes of the Messages API (https://docs.anthropic.com/en/api/messages), only the
// fields Parley sends or reads.

type messagesRequest struct {
	Model         string      `json:"model"`
	MaxTokens     int64       `json:"max_tokens"`
	System        []textBlock `json:"system,omitempty"`
	Messages      []message   `json:"messages"`
	Tools         []tool      `json:"tools,omitempty"`
	ToolChoice    *toolChoice `json:"tool_choice,omitempty"`
	Temperature   float64     `json:"temperature,omitempty"`
	StopSequences []string    `json:"stop_sequences,omitempty"`
	Stream        bool        `json:"stream,omitempty"`
}

type textBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type message struct {
	Role    string         `json:"role"`
	Content []contentBlock `json:"content"`
}

// contentBlock is a text, tool_use or tool_result block of a request message.
type contentBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   []textBlock     `json:"content,omitempty"`
}

type tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type toolChoice struct {
	Type string `json:"type"`
	Name string `json:"name,omitempty"`
}

type messagesResponse struct {
	Type       string          `json:"type"`
	Model      string          `json:"model"`
	Content    []responseBlock `json:"content"`
	StopReason string          `json:"stop_reason"`
	Usage      *usage          `json:"usage"`
}

type responseBlock struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type usage struct {
	InputTokens              uint64 `json:"input_tokens"`
	OutputTokens             uint64 `json:"output_tokens"`
	CacheCreationInputTokens uint64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     uint64 `json:"cache_read_input_tokens"`
}

const (
	roleUser      = "user"
	roleAssistant = "assistant"

	blockText       = "text"
	blockToolUse    = "tool_use"
	blockToolResult = "tool_result"
)

// emptySchema is the input_schema of a tool that declares no parameters: the API requires
// an object schema.
// errResponseFormatWithTools refuses a request with both a response_format and tools: the
// structured output is a forced tool, which would keep the model from calling the others.
var errResponseFormatWithTools = errors.New("response_format cannot be combined with tools for this provider")

// errNotMessage reports a 200 answer whose type is not "message".
var errNotMessage = errors.New(`response type is not "message"`)

const emptySchema = `{"type":"object","properties":{}}`

// encodeRequest builds the Messages API body for req:
//
//   - system and developer messages become the top-level system blocks, in order;
//   - user, generic and assistant messages keep their role; tool and function messages, and
//     every tool result, go into a user message as tool_result blocks, one per tool call id,
//     ahead of any text of that message as the API requires;
//   - assistant tool calls become tool_use blocks whose input is the parsed JSON arguments
//     (an object; an empty string means {});
//   - consecutive messages of the same role are merged into one, as the API requires
//     alternating roles; empty text parts are dropped, because the API rejects empty text
//     blocks, and so are messages left with no block;
//   - max_tokens is the request's or DefaultMaxTokens; temperature is sent only when > 0;
//     stop becomes stop_sequences;
//   - tool_choice auto, none, required (or any) and a tool name become {"type": "auto"},
//     {"type": "none"}, {"type": "any"} and {"type": "tool", "name": ...}; it is sent only
//     with tools;
//   - response_format, when it converts as Dapr's (provider.ConvertResponseFormat), becomes
//     the only tool, named after the schema (default "response"), whose input_schema is the
//     converted schema, forced with {"type": "tool", "name": ...}; decodeResponse turns its
//     tool_use input back into the content. It cannot be combined with the request's own
//     tools (an error). A schema that does not convert is passed to schemaWarn and the
//     request goes on without it, as in Dapr. "strict" is not sent.
//
// It returns the body and the name of the response tool ("" without response_format).
// Request metadata and prompt_cache_retention are not sent, as Dapr's Anthropic component
// ignores them.
func encodeRequest(model string, req *providerv1.Request, schemaWarn func(error)) ([]byte, string, error) {
	return encode(model, req, schemaWarn, false)
}

// encode is encodeRequest, with "stream": true when stream is set.
func encode(model string, req *providerv1.Request, schemaWarn func(error), stream bool) ([]byte, string, error) {
	out := messagesRequest{
		Model:         model,
		MaxTokens:     DefaultMaxTokens,
		StopSequences: req.GetStop(),
		Stream:        stream,
	}
	if req.MaxTokens != nil {
		if req.GetMaxTokens() <= 0 {
			return nil, "", fmt.Errorf("max_tokens must be > 0, got %d", req.GetMaxTokens())
		}
		out.MaxTokens = req.GetMaxTokens()
	}
	rs, err := provider.ConvertResponseFormat(req.GetResponseFormat())
	if err != nil {
		if schemaWarn != nil {
			schemaWarn(err)
		}
		rs = nil
	}
	if rs != nil && len(req.GetTools()) > 0 {
		return nil, "", errResponseFormatWithTools
	}
	if t := req.GetTemperature(); t > 0 {
		out.Temperature = t
	}
	if err := encodeMessages(&out, req.GetMessages()); err != nil {
		return nil, "", err
	}
	if err := encodeTools(&out, req.GetTools(), req.GetToolChoice()); err != nil {
		return nil, "", err
	}
	responseTool := ""
	if rs != nil {
		schema, err := json.Marshal(rs.Schema)
		if err != nil {
			return nil, "", fmt.Errorf("response_format: %w", err)
		}
		responseTool = rs.Name
		out.Tools = []tool{{Name: rs.Name, Description: rs.Description, InputSchema: schema}}
		out.ToolChoice = &toolChoice{Type: "tool", Name: rs.Name}
	}
	data, err := json.Marshal(&out)
	if err != nil {
		return nil, "", fmt.Errorf("encode request: %w", err)
	}
	return data, responseTool, nil
}

func encodeMessages(out *messagesRequest, msgs []*providerv1.Message) error {
	out.Messages = make([]message, 0, len(msgs))
	for i, m := range msgs {
		role, err := apiRole(m.GetRole())
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if role == "" { // system or developer
			for j, part := range m.GetParts() {
				text, ok := part.GetKind().(*providerv1.Part_Text)
				if !ok {
					return fmt.Errorf("message %d part %d: a %s message may hold text only", i, j, roleName(m.GetRole()))
				}
				if text.Text != "" {
					out.System = append(out.System, textBlock{Type: blockText, Text: text.Text})
				}
			}
			continue
		}
		blocks, role, err := messageBlocks(i, m, role)
		if err != nil {
			return err
		}
		if len(blocks) == 0 {
			continue
		}
		if n := len(out.Messages); n > 0 && out.Messages[n-1].Role == role {
			out.Messages[n-1].Content = append(out.Messages[n-1].Content, blocks...)
		} else {
			out.Messages = append(out.Messages, message{Role: role, Content: blocks})
		}
	}
	for i := range out.Messages {
		if out.Messages[i].Role == roleUser {
			orderToolResultsFirst(out.Messages[i].Content)
		}
	}
	return nil
}

// messageBlocks converts the parts of message i. A message holding a tool result is a user
// message on the wire.
func messageBlocks(i int, m *providerv1.Message, role string) ([]contentBlock, string, error) {
	blocks := make([]contentBlock, 0, len(m.GetParts()))
	for j, part := range m.GetParts() {
		switch kind := part.GetKind().(type) {
		case *providerv1.Part_Text:
			if kind.Text != "" {
				blocks = append(blocks, contentBlock{Type: blockText, Text: kind.Text})
			}
		case *providerv1.Part_ToolCall:
			if role != roleAssistant {
				return nil, "", fmt.Errorf("message %d part %d: a tool call must be in an assistant message, not %s",
					i, j, roleName(m.GetRole()))
			}
			input, err := toolInput(kind.ToolCall.GetArguments())
			if err != nil {
				return nil, "", fmt.Errorf("message %d part %d: tool call %q arguments: %w",
					i, j, kind.ToolCall.GetId(), err)
			}
			blocks = append(blocks, contentBlock{
				Type: blockToolUse, ID: kind.ToolCall.GetId(), Name: kind.ToolCall.GetName(), Input: input,
			})
		case *providerv1.Part_ToolResult:
			if role == roleAssistant {
				return nil, "", fmt.Errorf("message %d part %d: a tool result cannot be in an assistant message", i, j)
			}
			role = roleUser
			blocks = appendToolResult(blocks, kind.ToolResult)
		default:
			return nil, "", fmt.Errorf("message %d part %d: part has no content", i, j)
		}
	}
	return blocks, role, nil
}

// appendToolResult adds r to the tool_result block of the same call id that ends blocks, or
// as a new block: the API takes one result per tool_use.
func appendToolResult(blocks []contentBlock, r *providerv1.ToolResult) []contentBlock {
	id := r.GetToolCallId()
	if n := len(blocks); n == 0 || blocks[n-1].Type != blockToolResult || blocks[n-1].ToolUseID != id {
		blocks = append(blocks, contentBlock{Type: blockToolResult, ToolUseID: id})
	}
	if c := r.GetContent(); c != "" {
		last := &blocks[len(blocks)-1]
		last.Content = append(last.Content, textBlock{Type: blockText, Text: c})
	}
	return blocks
}

// orderToolResultsFirst moves tool_result blocks ahead of the other blocks of a user
// message, keeping each group's order: the API rejects text before a tool result.
func orderToolResultsFirst(blocks []contentBlock) {
	slices.SortStableFunc(blocks, func(a, b contentBlock) int {
		ar, br := a.Type == blockToolResult, b.Type == blockToolResult
		switch {
		case ar == br:
			return 0
		case ar:
			return -1
		default:
			return 1
		}
	})
}

// apiRole maps a Parley role to the API role; "" means the top-level system prompt.
func apiRole(r providerv1.Role) (string, error) {
	switch r {
	case providerv1.Role_ROLE_SYSTEM, providerv1.Role_ROLE_DEVELOPER:
		return "", nil
	case providerv1.Role_ROLE_USER, providerv1.Role_ROLE_GENERIC, providerv1.Role_ROLE_TOOL, providerv1.Role_ROLE_FUNCTION:
		return roleUser, nil
	case providerv1.Role_ROLE_ASSISTANT:
		return roleAssistant, nil
	default:
		return "", fmt.Errorf("unsupported role %s", roleName(r))
	}
}

func roleName(r providerv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

// toolInput parses tool-call arguments into the JSON object the API wants as input.
func toolInput(args string) (json.RawMessage, error) {
	trimmed := strings.Trim(args, jsonSpace)
	if trimmed == "" {
		return json.RawMessage(`{}`), nil
	}
	if !json.Valid([]byte(trimmed)) {
		return nil, errors.New("not valid JSON")
	}
	if trimmed[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(trimmed)); err != nil {
		return nil, fmt.Errorf("compact: %w", err)
	}
	return buf.Bytes(), nil
}

func encodeTools(out *messagesRequest, tools []*providerv1.Tool, choice string) error {
	names := make(map[string]bool, len(tools))
	for i, t := range tools {
		if typ := t.GetType(); typ != "" && typ != "function" {
			return fmt.Errorf("tool %d: type %q is not supported (only function)", i, typ)
		}
		schema := json.RawMessage(emptySchema)
		if p := t.GetParameters(); p != nil {
			data, err := protojson.Marshal(p)
			if err != nil {
				return fmt.Errorf("tool %d (%q) parameters: %w", i, t.GetName(), err)
			}
			schema = data
		}
		out.Tools = append(out.Tools, tool{Name: t.GetName(), Description: t.GetDescription(), InputSchema: schema})
		names[t.GetName()] = true
	}
	switch choice {
	case "":
	case "auto", "none":
		if len(tools) > 0 {
			out.ToolChoice = &toolChoice{Type: choice}
		}
	case "required", "any":
		if len(tools) == 0 {
			return fmt.Errorf("tool_choice %q needs at least one tool", choice)
		}
		out.ToolChoice = &toolChoice{Type: "any"}
	default:
		if !names[choice] {
			return fmt.Errorf("tool_choice %q names no tool of the request", choice)
		}
		out.ToolChoice = &toolChoice{Type: "tool", Name: choice}
	}
	return nil
}

// decodeResponse maps a Messages API answer: text blocks concatenated into the content,
// tool_use blocks into tool calls (arguments: the input as compact JSON), the raw stop
// reason ("unknown" when absent), the model and the usage. The prompt token count includes
// the cached and cache-creation input tokens, which Anthropic counts apart from
// input_tokens, so that it means what it means for OpenAI-compatible providers.
//
// When responseTool is not "" (the request had a response_format), the input of the first
// tool_use block of that name becomes the content, as compact JSON, instead of the text and
// of a tool call; the finish reason is then "stop", unless the API stopped for another
// reason than tool_use or end_turn (max_tokens, refusal, …), which is kept. An answer
// without that block is mapped as any other.
func decodeResponse(data []byte, responseTool string) (*providerv1.Response, error) {
	var r messagesResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, jsonError(err)
	}
	if r.Type != "message" {
		return nil, errNotMessage
	}
	choice := &providerv1.Choice{Index: 0, FinishReason: r.StopReason}
	if choice.FinishReason == "" {
		choice.FinishReason = "unknown"
	}
	var text strings.Builder
	structured, found := "", false
	for i, b := range r.Content {
		switch b.Type {
		case blockText:
			text.WriteString(b.Text)
		case blockToolUse:
			args := "{}"
			if in := bytes.TrimSpace(b.Input); len(in) > 0 && !bytes.Equal(in, []byte("null")) {
				var buf bytes.Buffer
				if err := json.Compact(&buf, in); err != nil {
					return nil, fmt.Errorf("content %d input: %w", i, jsonError(err))
				}
				args = buf.String()
			}
			if responseTool != "" && !found && b.Name == responseTool {
				structured, found = args, true
				continue
			}
			choice.ToolCalls = append(choice.ToolCalls, &providerv1.ToolCall{
				Id: b.ID, Type: "function", Name: b.Name, Arguments: args,
			})
		default:
			// thinking, redacted_thinking and server tool blocks carry no answer text.
		}
	}
	choice.Content = text.String()
	if found {
		choice.Content = structured
		if r.StopReason == "" || r.StopReason == "tool_use" || r.StopReason == "end_turn" {
			choice.FinishReason = "stop"
		}
	}
	out := &providerv1.Response{Choices: []*providerv1.Choice{choice}, Model: r.Model}
	if u := r.Usage; u != nil {
		prompt := u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
		out.Usage = &providerv1.Usage{
			PromptTokens:       prompt,
			CompletionTokens:   u.OutputTokens,
			TotalTokens:        prompt + u.OutputTokens,
			PromptCachedTokens: u.CacheReadInputTokens,
		}
	}
	return out, nil
}

// jsonError describes a decoding failure by its position or field only: the syntax error
// text of encoding/json quotes the offending byte, which may belong to the answer.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Errorf("JSON field %q: unexpected %s", typ.Field, typ.Value)
	default:
		return errors.New("malformed JSON")
	}
}

// jsonSpace is the white space JSON allows around a value (RFC 8259 §2); strings.TrimSpace
// would also accept characters such as \v that make the text invalid JSON.
const jsonSpace = " \t\r\n"
