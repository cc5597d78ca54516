// Package echo is Parley's copy of Dapr's conversation.echo component, the deterministic test
// double that Dapr's own tests and many users' tests depend on. It reproduces the behaviour of
// components-contrib conversation/echo (Dapr 1.17 and 1.18): it echoes the text of every message,
// turns each request tool into a tool call and synthesises word-count usage.
package echo

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// Finish reasons reported by the echo provider, following OpenAI's names as Dapr does.
const (
	FinishReasonStop      = "stop"
	FinishReasonToolCalls = "tool_calls"
)

// Provider is the echo provider. It holds no state and is safe for concurrent use.
type Provider struct{}

// New returns an echo provider.
func New() *Provider {
	return &Provider{}
}

// Converse answers req the way Dapr's echo component does:
//
//   - with no messages, the response has no choices;
//   - request tool i becomes the tool call {id: "i", type, name, arguments: the sorted keys of
//     its parameters' "properties", joined by ","};
//   - walking the message parts in order, text parts are collected, tool-call parts are
//     appended to the tool calls and tool results become the text
//     "Tool Response for tool ID '<id>' with name '<name>': <content>";
//   - the single choice (index 0) holds the collected texts joined by "\n" and the tool calls;
//     its finish reason is "tool_calls" when there is any tool call, else "stop";
//   - usage counts the whitespace-separated words n of the content: prompt = completion = n,
//     total = 2n. The model is left empty.
//
// It returns ctx.Err() once ctx is done, and an error for a part with no kind or for tool
// parameters whose "properties" is not an object, as Dapr does.
func (p *Provider) Converse(ctx context.Context, req *providerv1.Request) (*providerv1.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	messages := req.GetMessages()
	if len(messages) == 0 {
		return &providerv1.Response{}, nil
	}

	tools := req.GetTools()
	toolCalls := make([]*providerv1.ToolCall, 0, len(tools))
	for i, tool := range tools {
		args, err := argumentNames(tool.GetParameters())
		if err != nil {
			return nil, fmt.Errorf("echo: tool %d (%q): %w", i, tool.GetName(), err)
		}
		toolCalls = append(toolCalls, &providerv1.ToolCall{
			Id:        strconv.Itoa(i),
			Type:      tool.GetType(),
			Name:      tool.GetName(),
			Arguments: args,
		})
	}

	texts := make([]string, 0, len(messages))
	for i, msg := range messages {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for j, part := range msg.GetParts() {
			switch kind := part.GetKind().(type) {
			case *providerv1.Part_Text:
				texts = append(texts, kind.Text)
			case *providerv1.Part_ToolCall:
				tc := kind.ToolCall
				toolCalls = append(toolCalls, &providerv1.ToolCall{
					Id:        tc.GetId(),
					Type:      tc.GetType(),
					Name:      tc.GetName(),
					Arguments: tc.GetArguments(),
				})
			case *providerv1.Part_ToolResult:
				tr := kind.ToolResult
				texts = append(texts, "Tool Response for tool ID '"+tr.GetToolCallId()+
					"' with name '"+tr.GetName()+"': "+tr.GetContent())
			default:
				return nil, fmt.Errorf("echo: message %d part %d: invalid content type (no kind set)", i, j)
			}
		}
	}

	content := strings.Join(texts, "\n")
	finish := FinishReasonStop
	if len(toolCalls) > 0 {
		finish = FinishReasonToolCalls
	} else {
		toolCalls = nil
	}
	words := uint64(len(strings.Fields(content)))
	return &providerv1.Response{
		Choices: []*providerv1.Choice{{
			Index:        0,
			FinishReason: finish,
			Content:      content,
			ToolCalls:    toolCalls,
		}},
		Usage: &providerv1.Usage{
			PromptTokens:     words,
			CompletionTokens: words,
			TotalTokens:      2 * words,
		},
	}, nil
}

// argumentNames returns the sorted keys of params["properties"], joined by ",".
func argumentNames(params *structpb.Struct) (string, error) {
	props, ok := params.GetFields()["properties"]
	if !ok {
		return "", nil
	}
	obj := props.GetStructValue()
	if obj == nil {
		return "", fmt.Errorf("parameters.properties must be an object, got %s", kindName(props))
	}
	names := make([]string, 0, len(obj.GetFields()))
	for name := range obj.GetFields() {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ","), nil
}

func kindName(v *structpb.Value) string {
	switch v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return "a string"
	case *structpb.Value_NumberValue:
		return "a number"
	case *structpb.Value_BoolValue:
		return "a boolean"
	case *structpb.Value_ListValue:
		return "a list"
	default:
		return "null"
	}
}

// ConverseStream answers req as Converse does, streamed word by word: each chunk holds one
// word with the whitespace after it, so the chunks concatenated are Converse's content;
// then one chunk per tool call (id, name and arguments), the last chunk carrying the finish
// reason. The returned Response has Converse's usage.
func (p *Provider) ConverseStream(ctx context.Context, req *providerv1.Request, emit func(*providerv1.Chunk) error) (*providerv1.Response, error) {
	resp, err := p.Converse(ctx, req)
	if err != nil || len(resp.GetChoices()) == 0 {
		return resp, err
	}
	c := resp.GetChoices()[0]
	pieces := Words(c.GetContent())
	n := len(pieces) + len(c.GetToolCalls())
	if n == 0 {
		n, pieces = 1, []string{""}
	}
	sent := 0
	send := func(ch *providerv1.Chunk) error {
		sent++
		if sent == n {
			ch.FinishReason = c.GetFinishReason()
		}
		return emit(ch)
	}
	for _, w := range pieces {
		if err := send(&providerv1.Chunk{Content: w}); err != nil {
			return nil, err
		}
	}
	for i, tc := range c.GetToolCalls() {
		if err := send(&providerv1.Chunk{ToolCalls: []*providerv1.ToolCallDelta{{
			Index: int32(i), Id: tc.GetId(), Name: tc.GetName(), Arguments: tc.GetArguments(), //nolint:gosec // a handful of tools
		}}}); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// Words splits s into words, each with the whitespace after it; the pieces concatenated
// are s (leading whitespace joins the first piece).
func Words(s string) []string {
	var out []string
	start := 0
	inSpace := true
	for i, r := range s {
		space := r == ' ' || r == '\n' || r == '\t' || r == '\r'
		if inSpace && !space && i > start && strings.TrimSpace(s[start:i]) != "" {
			out = append(out, s[start:i])
			start = i
		}
		inSpace = space
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
