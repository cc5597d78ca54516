package anthropic

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// benchRequest is a typical agent turn: a system prompt, a ten-message history with one
// tool round trip, and two tools.
func benchRequest(b *testing.B) *providerv1.Request {
	b.Helper()
	params, err := structpb.NewStruct(map[string]any{
		"type": "object",
		"properties": map[string]any{
			"city":  map[string]any{"type": "string", "description": "City name"},
			"units": map[string]any{"type": "string", "enum": []any{"metric", "imperial"}},
		},
		"required": []any{"city"},
	})
	if err != nil {
		b.Fatal(err)
	}
	text := func(s string) *providerv1.Part { return &providerv1.Part{Kind: &providerv1.Part_Text{Text: s}} }
	msgs := []*providerv1.Message{{Role: providerv1.Role_ROLE_SYSTEM, Parts: []*providerv1.Part{text("You are a helpful assistant.")}}}
	for i := range 4 {
		msgs = append(msgs,
			&providerv1.Message{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{text(fmt.Sprintf("Question %d: %s", i, strings.Repeat("lorem ipsum ", 20)))}},
			&providerv1.Message{Role: providerv1.Role_ROLE_ASSISTANT, Parts: []*providerv1.Part{text(strings.Repeat("dolor sit amet ", 30))}})
	}
	msgs = append(msgs,
		&providerv1.Message{Role: providerv1.Role_ROLE_ASSISTANT, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolCall{
			ToolCall: &providerv1.ToolCall{Id: "toolu_01", Type: "function", Name: "get_weather", Arguments: `{"city":"Paris","units":"metric"}`},
		}}}},
		&providerv1.Message{Role: providerv1.Role_ROLE_TOOL, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolResult{
			ToolResult: &providerv1.ToolResult{ToolCallId: "toolu_01", Name: "get_weather", Content: `{"temp":18,"sky":"clear"}`},
		}}}})
	maxTokens := int64(1024)
	return &providerv1.Request{
		Messages:    msgs,
		Tools:       []*providerv1.Tool{{Type: "function", Name: "get_weather", Description: "Weather now", Parameters: params}, {Type: "function", Name: "now"}},
		ToolChoice:  "auto",
		Temperature: 0.3,
		MaxTokens:   &maxTokens,
	}
}

const benchResponse = `{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-20250514",
"content":[{"type":"text","text":"It is 18 degrees and clear in Paris. I will also check the time for you, since you asked about the evening."},
{"type":"tool_use","id":"toolu_02","name":"now","input":{"tz":"Europe/Paris"}}],
"stop_reason":"tool_use","stop_sequence":null,
"usage":{"input_tokens":812,"cache_creation_input_tokens":0,"cache_read_input_tokens":512,"output_tokens":64}}`

func BenchmarkEncodeRequest(b *testing.B) {
	req := benchRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		body, _, err := encodeRequest(DefaultModel, req, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(body)))
	}
}

func BenchmarkDecodeResponse(b *testing.B) {
	data := []byte(benchResponse)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeResponse(data, ""); err != nil {
			b.Fatal(err)
		}
	}
}
