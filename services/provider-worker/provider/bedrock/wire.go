package bedrock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	smithydocument "github.com/aws/smithy-go/document"
	"google.golang.org/protobuf/types/known/structpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// encodeRequest builds the Converse input for req:
//
//   - system and developer messages become the system blocks, in order;
//   - user, generic and assistant messages keep their role; tool and function messages, and
//     every tool result, go into a user message as toolResult blocks (one per tool call id,
//     ahead of the message's text);
//   - assistant tool calls become toolUse blocks whose input is the parsed JSON arguments
//     (an object; an empty string means {});
//   - consecutive messages of the same role are merged, as the API requires alternating
//     roles; empty text parts are dropped (the API rejects blank text) and so are messages
//     left with no block;
//   - tools become toolConfig.tools[].toolSpec with inputSchema.json; tool_choice auto,
//     required (or any) and a tool name become toolChoice auto, any and tool. The Converse
//     API has no "none": with none, toolConfig is left out, unless the history holds
//     toolUse or toolResult blocks, which the API accepts only with a toolConfig; then the
//     tools are sent without a toolChoice and the model may still call one;
//   - inferenceConfig carries maxTokens, temperature (only when > 0) and stopSequences, and
//     is left out when none is set;
//   - response_format, when it converts as Dapr's (provider.ConvertResponseFormat), becomes
//     the only tool of toolConfig, named after the schema (default "response"), whose
//     inputSchema.json is the converted schema, forced with toolChoice {"tool": {"name"}};
//     decodeResponse turns its toolUse input back into the content. It cannot be combined
//     with the request's own tools (an error). A schema that does not convert is passed to
//     schemaWarn and the request goes on without it, as in Dapr. "strict" is not sent.
//
// It returns the input and the name of the response tool ("" without response_format).
// Request metadata and prompt_cache_retention are not sent, as Dapr's Bedrock component
// ignores them.
func encodeRequest(model string, req *providerv1.Request, schemaWarn func(error)) (
	*bedrockruntime.ConverseInput, string, error,
) {
	in := &bedrockruntime.ConverseInput{ModelId: aws.String(model)}
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
	hasToolBlocks, err := encodeMessages(in, req.GetMessages())
	if err != nil {
		return nil, "", err
	}
	if err := encodeTools(in, req.GetTools(), req.GetToolChoice(), hasToolBlocks); err != nil {
		return nil, "", err
	}
	responseTool := ""
	if rs != nil {
		responseTool = rs.Name
		spec := types.ToolSpecification{
			Name:        aws.String(rs.Name),
			InputSchema: &types.ToolInputSchemaMemberJson{Value: document.NewLazyDocument(rs.Schema)},
		}
		if rs.Description != "" {
			spec.Description = aws.String(rs.Description)
		}
		in.ToolConfig = &types.ToolConfiguration{
			Tools:      []types.Tool{&types.ToolMemberToolSpec{Value: spec}},
			ToolChoice: &types.ToolChoiceMemberTool{Value: types.SpecificToolChoice{Name: aws.String(rs.Name)}},
		}
	}
	var ic types.InferenceConfiguration
	set := false
	if req.MaxTokens != nil {
		n := req.GetMaxTokens()
		if n <= 0 || n > math.MaxInt32 {
			return nil, "", fmt.Errorf("max_tokens must be in 1..%d, got %d", math.MaxInt32, n)
		}
		ic.MaxTokens, set = aws.Int32(int32(n)), true
	}
	if t := req.GetTemperature(); t > 0 {
		ic.Temperature, set = aws.Float32(float32(t)), true
	}
	if stop := req.GetStop(); len(stop) > 0 {
		ic.StopSequences, set = stop, true
	}
	if set {
		in.InferenceConfig = &ic
	}
	return in, responseTool, nil
}

func encodeMessages(in *bedrockruntime.ConverseInput, msgs []*providerv1.Message) (bool, error) {
	hasToolBlocks := false
	for i, m := range msgs {
		role, system, err := apiRole(m.GetRole())
		if err != nil {
			return false, fmt.Errorf("message %d: %w", i, err)
		}
		if system {
			for j, part := range m.GetParts() {
				text, ok := part.GetKind().(*providerv1.Part_Text)
				if !ok {
					return false, fmt.Errorf("message %d part %d: a %s message may hold text only", i, j, roleName(m.GetRole()))
				}
				if text.Text != "" {
					in.System = append(in.System, &types.SystemContentBlockMemberText{Value: text.Text})
				}
			}
			continue
		}
		blocks, role, tools, err := messageBlocks(i, m, role)
		if err != nil {
			return false, err
		}
		hasToolBlocks = hasToolBlocks || tools
		if len(blocks) == 0 {
			continue
		}
		if n := len(in.Messages); n > 0 && in.Messages[n-1].Role == role {
			in.Messages[n-1].Content = append(in.Messages[n-1].Content, blocks...)
		} else {
			in.Messages = append(in.Messages, types.Message{Role: role, Content: blocks})
		}
	}
	for i := range in.Messages {
		if in.Messages[i].Role == types.ConversationRoleUser {
			orderToolResultsFirst(in.Messages[i].Content)
		}
	}
	return hasToolBlocks, nil
}

// messageBlocks converts the parts of message i; it reports whether it produced toolUse
// or toolResult blocks. A message holding a tool result is a user message on the wire.
func messageBlocks(i int, m *providerv1.Message, role types.ConversationRole) (
	[]types.ContentBlock, types.ConversationRole, bool, error,
) {
	blocks := make([]types.ContentBlock, 0, len(m.GetParts()))
	tools := false
	for j, part := range m.GetParts() {
		switch kind := part.GetKind().(type) {
		case *providerv1.Part_Text:
			if kind.Text != "" {
				blocks = append(blocks, &types.ContentBlockMemberText{Value: kind.Text})
			}
		case *providerv1.Part_ToolCall:
			if role != types.ConversationRoleAssistant {
				return nil, "", false, fmt.Errorf("message %d part %d: a tool call must be in an assistant message, not %s",
					i, j, roleName(m.GetRole()))
			}
			input, err := toolInput(kind.ToolCall.GetArguments())
			if err != nil {
				return nil, "", false, fmt.Errorf("message %d part %d: tool call %q arguments: %w",
					i, j, kind.ToolCall.GetId(), err)
			}
			blocks = append(blocks, &types.ContentBlockMemberToolUse{Value: types.ToolUseBlock{
				ToolUseId: aws.String(kind.ToolCall.GetId()),
				Name:      aws.String(kind.ToolCall.GetName()),
				Input:     input,
			}})
			tools = true
		case *providerv1.Part_ToolResult:
			if role == types.ConversationRoleAssistant {
				return nil, "", false, fmt.Errorf("message %d part %d: a tool result cannot be in an assistant message", i, j)
			}
			role = types.ConversationRoleUser
			blocks = appendToolResult(blocks, kind.ToolResult)
			tools = true
		default:
			return nil, "", false, fmt.Errorf("message %d part %d: part has no content", i, j)
		}
	}
	return blocks, role, tools, nil
}

// appendToolResult adds r to the toolResult block of the same call id that ends blocks, or
// as a new block: the API takes one result per toolUse.
func appendToolResult(blocks []types.ContentBlock, r *providerv1.ToolResult) []types.ContentBlock {
	id := r.GetToolCallId()
	var last *types.ContentBlockMemberToolResult
	if n := len(blocks); n > 0 {
		if tr, ok := blocks[n-1].(*types.ContentBlockMemberToolResult); ok && aws.ToString(tr.Value.ToolUseId) == id {
			last = tr
		}
	}
	if last == nil {
		// Content is required: a result without text is sent with an empty list.
		last = &types.ContentBlockMemberToolResult{Value: types.ToolResultBlock{
			ToolUseId: aws.String(id), Content: []types.ToolResultContentBlock{},
		}}
		blocks = append(blocks, last)
	}
	if c := r.GetContent(); c != "" {
		last.Value.Content = append(last.Value.Content, &types.ToolResultContentBlockMemberText{Value: c})
	}
	return blocks
}

// orderToolResultsFirst moves toolResult blocks ahead of the other blocks of a user
// message, keeping each group's order.
func orderToolResultsFirst(blocks []types.ContentBlock) {
	slices.SortStableFunc(blocks, func(a, b types.ContentBlock) int {
		_, ar := a.(*types.ContentBlockMemberToolResult)
		_, br := b.(*types.ContentBlockMemberToolResult)
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

// apiRole maps a Parley role to the Converse role; system reports the system prompt.
func apiRole(r providerv1.Role) (types.ConversationRole, bool, error) {
	switch r {
	case providerv1.Role_ROLE_SYSTEM, providerv1.Role_ROLE_DEVELOPER:
		return "", true, nil
	case providerv1.Role_ROLE_USER, providerv1.Role_ROLE_GENERIC, providerv1.Role_ROLE_TOOL, providerv1.Role_ROLE_FUNCTION:
		return types.ConversationRoleUser, false, nil
	case providerv1.Role_ROLE_ASSISTANT:
		return types.ConversationRoleAssistant, false, nil
	default:
		return "", false, fmt.Errorf("unsupported role %s", roleName(r))
	}
}

func roleName(r providerv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

// toolInput parses tool-call arguments into the JSON object document the API wants.
func toolInput(args string) (document.Interface, error) {
	trimmed := strings.Trim(args, jsonSpace)
	if trimmed == "" {
		return document.NewLazyDocument(map[string]any{}), nil
	}
	if trimmed[0] != '{' {
		if !json.Valid([]byte(trimmed)) {
			return nil, errors.New("not valid JSON")
		}
		return nil, errors.New("not a JSON object")
	}
	v, err := parseJSON([]byte(trimmed))
	if err != nil {
		return nil, err
	}
	return document.NewLazyDocument(v), nil
}

// parseJSON decodes one JSON value for a smithy document, keeping numbers exact
// (smithydocument.Number), which float64 would round.
func parseJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errors.New("not valid JSON")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not valid JSON: data after the value")
	}
	return toDocument(v)
}

// errResponseFormatWithTools refuses a request with both a response_format and tools: the
// structured output is a forced tool, which would keep the model from calling the others.
var errResponseFormatWithTools = errors.New("response_format cannot be combined with tools for this provider")

// errEmptyKey reports an object member named "", which the SDK's document encoder cannot
// write (it would send a malformed body).
var errEmptyKey = errors.New(`an object member has the empty name ""`)

// toDocument replaces every json.Number in v by a smithydocument.Number, which the SDK's
// document encoder writes as a number rather than a string.
func toDocument(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "" {
				return nil, errEmptyKey
			}
			d, err := toDocument(e)
			if err != nil {
				return nil, err
			}
			x[k] = d
		}
		return x, nil
	case []any:
		for i, e := range x {
			d, err := toDocument(e)
			if err != nil {
				return nil, err
			}
			x[i] = d
		}
		return x, nil
	case json.Number:
		return smithydocument.Number(x), nil
	default:
		return v, nil
	}
}

func encodeTools(in *bedrockruntime.ConverseInput, tools []*providerv1.Tool, choice string, hasToolBlocks bool) error {
	if len(tools) == 0 {
		switch choice {
		case "", "auto", "none":
			return nil
		default:
			return fmt.Errorf("tool_choice %q needs at least one tool", choice)
		}
	}
	tc := &types.ToolConfiguration{Tools: make([]types.Tool, 0, len(tools))}
	names := make(map[string]bool, len(tools))
	for i, t := range tools {
		if typ := t.GetType(); typ != "" && typ != "function" {
			return fmt.Errorf("tool %d: type %q is not supported (only function)", i, typ)
		}
		schema := map[string]any{"type": "object", "properties": map[string]any{}}
		if p := t.GetParameters(); p != nil {
			s, err := structDocument(p)
			if err != nil {
				return fmt.Errorf("tool %d (%q) parameters: %w", i, t.GetName(), err)
			}
			schema = s
		}
		spec := types.ToolSpecification{
			Name:        aws.String(t.GetName()),
			InputSchema: &types.ToolInputSchemaMemberJson{Value: document.NewLazyDocument(schema)},
		}
		if d := t.GetDescription(); d != "" {
			spec.Description = aws.String(d)
		}
		tc.Tools = append(tc.Tools, &types.ToolMemberToolSpec{Value: spec})
		names[t.GetName()] = true
	}
	switch choice {
	case "", "auto":
		if choice == "auto" {
			tc.ToolChoice = &types.ToolChoiceMemberAuto{Value: types.AutoToolChoice{}}
		}
	case "none":
		if !hasToolBlocks {
			return nil
		}
	case "required", "any":
		tc.ToolChoice = &types.ToolChoiceMemberAny{Value: types.AnyToolChoice{}}
	default:
		if !names[choice] {
			return fmt.Errorf("tool_choice %q names no tool of the request", choice)
		}
		tc.ToolChoice = &types.ToolChoiceMemberTool{Value: types.SpecificToolChoice{Name: aws.String(choice)}}
	}
	in.ToolConfig = tc
	return nil
}

// structDocument converts tool parameters to a document value; numbers stay exact where
// the Struct holds whole numbers. NaN and infinities, which JSON cannot carry, are errors.
func structDocument(s *structpb.Struct) (map[string]any, error) {
	out := make(map[string]any, len(s.GetFields()))
	for k, v := range s.GetFields() {
		if k == "" {
			return nil, errEmptyKey
		}
		d, err := valueDocument(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", k, err)
		}
		out[k] = d
	}
	return out, nil
}

func valueDocument(v *structpb.Value) (any, error) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue, nil
	case *structpb.Value_BoolValue:
		return k.BoolValue, nil
	case *structpb.Value_NumberValue:
		f := k.NumberValue
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %v cannot be sent as JSON", f)
		}
		data, err := json.Marshal(f)
		if err != nil {
			return nil, fmt.Errorf("number: %w", err)
		}
		return smithydocument.Number(data), nil
	case *structpb.Value_StructValue:
		return structDocument(k.StructValue)
	case *structpb.Value_ListValue:
		out := make([]any, 0, len(k.ListValue.GetValues()))
		for i, e := range k.ListValue.GetValues() {
			d, err := valueDocument(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out = append(out, d)
		}
		return out, nil
	default:
		return nil, nil
	}
}

// decodeResponse maps a Converse answer: text blocks concatenated into the content,
// toolUse blocks into tool calls (arguments: the input as compact JSON), the raw stop
// reason ("unknown" when absent) and the usage. The prompt token count includes the cache
// read and write tokens, which Bedrock counts apart from inputTokens; the total is
// Bedrock's totalTokens, or prompt + completion when that is larger.
//
// When responseTool is not "" (the request had a response_format), the input of the first
// toolUse block of that name becomes the content, as compact JSON, instead of the text and
// of a tool call; the finish reason is then "stop", unless the model stopped for another
// reason than tool_use or end_turn (max_tokens, guardrail_intervened, …), which is kept.
// An answer without that block is mapped as any other.
func decodeResponse(out *bedrockruntime.ConverseOutput, responseTool string) (*providerv1.Response, error) {
	msg, ok := out.Output.(*types.ConverseOutputMemberMessage)
	if !ok {
		return nil, fmt.Errorf("decode response: output is %T, not a message", out.Output)
	}
	choice := &providerv1.Choice{Index: 0, FinishReason: string(out.StopReason)}
	if choice.FinishReason == "" {
		choice.FinishReason = "unknown"
	}
	var text strings.Builder
	structured, found := "", false
	for i, b := range msg.Value.Content {
		switch block := b.(type) {
		case *types.ContentBlockMemberText:
			text.WriteString(block.Value)
		case *types.ContentBlockMemberToolUse:
			args, err := documentJSON(block.Value.Input)
			if err != nil {
				return nil, fmt.Errorf("decode response: content %d input: %w", i, err)
			}
			if responseTool != "" && !found && aws.ToString(block.Value.Name) == responseTool {
				structured, found = args, true
				continue
			}
			choice.ToolCalls = append(choice.ToolCalls, &providerv1.ToolCall{
				Id:        aws.ToString(block.Value.ToolUseId),
				Type:      "function",
				Name:      aws.ToString(block.Value.Name),
				Arguments: args,
			})
		default:
			// Reasoning, citations, images and guard content carry no answer text.
		}
	}
	choice.Content = text.String()
	if found {
		choice.Content = structured
		switch out.StopReason {
		case "", types.StopReasonToolUse, types.StopReasonEndTurn:
			choice.FinishReason = "stop"
		default:
		}
	}
	res := &providerv1.Response{Choices: []*providerv1.Choice{choice}}
	if u := out.Usage; u != nil {
		prompt := nonNegative(u.InputTokens) + nonNegative(u.CacheReadInputTokens) + nonNegative(u.CacheWriteInputTokens)
		completion := nonNegative(u.OutputTokens)
		res.Usage = &providerv1.Usage{
			PromptTokens:       prompt,
			CompletionTokens:   completion,
			TotalTokens:        max(nonNegative(u.TotalTokens), prompt+completion),
			PromptCachedTokens: nonNegative(u.CacheReadInputTokens),
		}
	}
	return res, nil
}

func nonNegative(v *int32) uint64 {
	if v == nil || *v < 0 {
		return 0
	}
	return uint64(*v)
}

// documentJSON renders a response document as compact JSON; a missing input is {}.
func documentJSON(d document.Interface) (string, error) {
	if d == nil {
		return "{}", nil
	}
	data, err := d.MarshalSmithyDocument()
	if err != nil {
		return "", fmt.Errorf("marshal: %w", err)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		return "{}", nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return "", fmt.Errorf("compact: %w", err)
	}
	return buf.String(), nil
}

// jsonSpace is the white space JSON allows around a value (RFC 8259 §2); strings.TrimSpace
// would also accept characters such as \v that make the text invalid JSON.
const jsonSpace = " \t\r\n"
