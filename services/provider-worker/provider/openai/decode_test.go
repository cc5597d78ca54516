package openai

import (
	"encoding/json"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

func requireProtoEqual(t *testing.T, want, got proto.Message) {
	t.Helper()
	if !proto.Equal(want, got) {
		require.Fail(t, "protos differ", "want: %s\ngot:  %s", prototext.Format(want), prototext.Format(got))
	}
}

func TestDecodeResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want *providerv1.Response
	}{
		{
			name: "text, usage with every detail",
			body: `{"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null},"finish_reason":"stop"}],
				"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,
				"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":4},
				"completion_tokens_details":{"reasoning_tokens":5,"audio_tokens":6,"accepted_prediction_tokens":7,"rejected_prediction_tokens":8}}}`,
			want: &providerv1.Response{
				Model:   "gpt-4o-2024-08-06",
				Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "Hi"}},
				Usage: &providerv1.Usage{
					PromptTokens: 19, CompletionTokens: 10, TotalTokens: 29, PromptCachedTokens: 3, PromptAudioTokens: 4,
					CompletionReasoningTokens: 5, CompletionAudioTokens: 6,
					CompletionAcceptedPredictionTokens: 7, CompletionRejectedPredictionTokens: 8,
				},
			},
		},
		{
			name: "several choices, raw finish reasons, parallel tool calls",
			body: `{"model":"m","choices":[
				{"index":0,"message":{"content":"a"},"finish_reason":"length"},
				{"index":1,"message":{"content":null,"tool_calls":[
					{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}},
					{"id":"","function":{"name":"g","arguments":"{\"x\":1}"}}]},"finish_reason":"tool_calls"},
				{"index":2,"message":{"content":"c"},"finish_reason":""}]}`,
			want: &providerv1.Response{Model: "m", Choices: []*providerv1.Choice{
				{Index: 0, FinishReason: "length", Content: "a"},
				{Index: 1, FinishReason: "tool_calls", ToolCalls: []*providerv1.ToolCall{
					{Id: "c1", Type: "function", Name: "f", Arguments: "{}"},
					{Type: "function", Name: "g", Arguments: `{"x":1}`},
				}},
				{Index: 2, Content: "c"},
			}},
		},
		{
			name: "refusal",
			body: `{"model":"m","choices":[{"index":0,"message":{"content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}`,
			want: &providerv1.Response{Model: "m", Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "I can't help with that."}}},
		},
		{
			name: "mistral chunks, arguments as an object",
			body: `{"id":"x","object":"chat.completion","model":"magistral-small-2509","created":1,
				"choices":[{"index":0,"message":{"role":"assistant","content":[
					{"type":"thinking","thinking":[{"type":"text","text":"hmm"}]},{"type":"text","text":"Hello"},{"type":"text","text":" world"}],
					"tool_calls":[{"id":"D681PevKs","type":"function","function":{"name":"f","arguments":{"a": [1, 2]}}}]},
					"finish_reason":"tool_calls"}],
				"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}`,
			want: &providerv1.Response{
				Model: "magistral-small-2509",
				Choices: []*providerv1.Choice{{FinishReason: "tool_calls", Content: "Hello world", ToolCalls: []*providerv1.ToolCall{
					{Id: "D681PevKs", Type: "function", Name: "f", Arguments: `{"a":[1,2]}`},
				}}},
				Usage: &providerv1.Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30},
			},
		},
		{
			name: "deepseek cache hits",
			body: `{"model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant","content":"ok","reasoning_content":"r"},"finish_reason":"stop"}],
				"usage":{"prompt_tokens":100,"completion_tokens":5,"total_tokens":105,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}}`,
			want: &providerv1.Response{
				Model:   "deepseek-chat",
				Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "ok"}},
				Usage:   &providerv1.Usage{PromptTokens: 100, CompletionTokens: 5, TotalTokens: 105, PromptCachedTokens: 64},
			},
		},
		{
			name: "deepseek with both counts prefers the details",
			body: `{"model":"deepseek-chat","choices":[{"index":0,"message":{"content":"ok"},"finish_reason":"stop"}],
				"usage":{"prompt_tokens":100,"completion_tokens":5,"total_tokens":105,"prompt_cache_hit_tokens":64,"prompt_tokens_details":{"cached_tokens":60}}}`,
			want: &providerv1.Response{
				Model:   "deepseek-chat",
				Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "ok"}},
				Usage:   &providerv1.Usage{PromptTokens: 100, CompletionTokens: 5, TotalTokens: 105, PromptCachedTokens: 60},
			},
		},
		{
			name: "ollama: no total, no model",
			body: `{"choices":[{"index":0,"message":{"content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2}}`,
			want: &providerv1.Response{
				Model:   "fallback-model",
				Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "ok"}},
				Usage:   &providerv1.Usage{PromptTokens: 7, CompletionTokens: 2, TotalTokens: 9},
			},
		},
		{
			name: "zero usage is no usage",
			body: `{"model":"m","choices":[{"message":{"content":"ok"}}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"prompt_tokens_details":{"cached_tokens":0}}}`,
			want: &providerv1.Response{Model: "m", Choices: []*providerv1.Choice{{Content: "ok"}}},
		},
		{
			name: "usage null",
			body: `{"model":"m","choices":[{"message":{"content":"ok"}}],"usage":null}`,
			want: &providerv1.Response{Model: "m", Choices: []*providerv1.Choice{{Content: "ok"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeResponse([]byte(tt.body), "fallback-model")
			require.NoError(t, err)
			requireProtoEqual(t, tt.want, got)
		})
	}
}

func TestDecodeResponseErrors(t *testing.T) {
	t.Parallel()
	const secret = "the secret answer"
	tests := []struct {
		name    string
		body    string
		wantErr string
	}{
		{"not JSON", `<html>` + secret, "invalid character"},
		{"truncated", `{"choices":[{"message":{"content":"` + secret, "unexpected end of JSON input"},
		{"no choices", `{"choices":[]}`, "response has no choices"},
		{"error object", `{"error":{"message":"` + secret + `","type":"server_error"}}`, "response carries an error object"},
		{"content is a number", `{"choices":[{"message":{"content":42}}]}`, "choice 0: message content is neither"},
		{"content chunks malformed", `{"choices":[{"message":{"content":[1]}}]}`, "cannot unmarshal number"},
		{"arguments malformed", `{"choices":[{"message":{"tool_calls":[{"function":{"arguments":[1,}}]}}]}`, "invalid character"},
		{"negative tokens", `{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":-1}}`, "cannot unmarshal number -1"},
		{"array", `[]`, "cannot unmarshal array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := decodeResponse([]byte(tt.body), "m")
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), secret)
		})
	}
}

func FuzzDecodeResponse(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","choices":[{"index":0,"message":{"content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
		`{"choices":[{"message":{"content":[{"type":"text","text":"a"}],"tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]}}]}`,
		`{"choices":[{"message":{"content":null,"refusal":"no"}}],"usage":{"prompt_cache_hit_tokens":3}}`,
		`{"choices":[]}`, `{"error":{}}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := decodeResponse(body, "m")
		if err != nil {
			return
		}
		if len(resp.GetChoices()) == 0 || resp.GetModel() == "" {
			t.Fatalf("accepted a response without choices or model: %v", resp)
		}
		if u := resp.GetUsage(); u != nil && u.GetPromptTokens() == 0 && u.GetCompletionTokens() == 0 && u.GetTotalTokens() == 0 {
			t.Fatalf("empty usage kept: %v", u)
		}
		if _, err := proto.Marshal(resp); err != nil {
			t.Fatalf("response does not encode: %v", err)
		}
	})
}

func TestStructuredOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		schema  string
		want    string
		wantErr string
	}{
		{
			name:   "minimal object",
			schema: `{"type":"object"}`,
			want:   `{"name":"response","strict":false,"schema":{"type":"object","additionalProperties":false}}`,
		},
		{
			name: "dapr's integration test shape, nested",
			schema: `{"type":"object","name":"person","strict":true,"additionalProperties":true,
				"properties":{"name":{"type":"string","description":"full name","pattern":"^x"},
				              "tags":{"type":"array","items":{"type":"object","properties":{"k":{"type":"string"}},"required":["k"]}},
				              "kind":{"type":"string","enum":["a",true,2.5,null]},
				              "any":{"type":"array","items":"not a map"}},
				"required":["name"]}`,
			want: `{"name":"person","strict":true,"schema":{"type":"object","additionalProperties":true,"required":["name"],
				"properties":{"name":{"type":"string","description":"full name"},
				              "tags":{"type":"array","items":{"type":"object","additionalProperties":false,"required":["k"],"properties":{"k":{"type":"string"}}}},
				              "kind":{"type":"string","enum":["a","true","2.5","<nil>"]},
				              "any":{"type":"array"}}}}`,
		},
		{
			name:   "properties ignored on non-objects, empty name defaults",
			schema: `{"type":"string","name":"","properties":{"x":{"type":"string"}},"items":{"type":"string"}}`,
			want:   `{"name":"response","strict":false,"schema":{"type":"string"}}`,
		},
		{name: "no type", schema: `{"properties":{}}`, wantErr: "schema type is required and must be a string"},
		{name: "type not a string", schema: `{"type":["object","null"]}`, wantErr: "schema type is required and must be a string"},
		{name: "property not a map", schema: `{"type":"object","properties":{"a":1}}`, wantErr: `property "a" must be a map, got float64`},
		{name: "property without type", schema: `{"type":"object","properties":{"a":{}}}`, wantErr: `convert property "a": schema type is required`},
		{name: "items without type", schema: `{"type":"array","items":{}}`, wantErr: "convert array items: schema type is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var s structpb.Struct
			require.NoError(t, s.UnmarshalJSON([]byte(tt.schema)))
			got, err := structuredOutput(&s)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			data, err := json.Marshal(got)
			require.NoError(t, err)
			require.JSONEq(t, tt.want, string(data))
		})
	}
}

func TestStructuredOutputDepth(t *testing.T) {
	t.Parallel()
	js := strings.Repeat(`{"type":"array","items":`, 100) + `{"type":"string"}` + strings.Repeat(`}`, 100)
	var s structpb.Struct
	require.NoError(t, s.UnmarshalJSON([]byte(js)))
	_, err := structuredOutput(&s)
	require.ErrorContains(t, err, "schema nests deeper than 64 levels")
}

// benchRequest is a typical agent turn: a system prompt, a few turns, a tool call and
// its result, two tools and a structured output.
func benchRequest(b *testing.B) *providerv1.Request {
	b.Helper()
	params, err := structpb.NewStruct(map[string]any{
		"type": "object", "required": []any{"city"},
		"properties": map[string]any{"city": map[string]any{"type": "string"}, "unit": map[string]any{"type": "string", "enum": []any{"C", "F"}}},
	})
	require.NoError(b, err)
	text := func(s string) *providerv1.Part { return &providerv1.Part{Kind: &providerv1.Part_Text{Text: s}} }
	para := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20)
	return &providerv1.Request{
		Messages: []*providerv1.Message{
			{Role: providerv1.Role_ROLE_SYSTEM, Parts: []*providerv1.Part{text(para)}},
			{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{text(para)}},
			{Role: providerv1.Role_ROLE_ASSISTANT, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{
				Id: "call_1", Type: "function", Name: "get_weather", Arguments: `{"city":"Paris","unit":"C"}`,
			}}}}},
			{Role: providerv1.Role_ROLE_TOOL, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolResult{ToolResult: &providerv1.ToolResult{
				ToolCallId: "call_1", Name: "get_weather", Content: `{"temp":21}`,
			}}}}},
			{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{text(para)}},
		},
		Tools: []*providerv1.Tool{
			{Type: "function", Name: "get_weather", Description: "Weather by city", Parameters: params},
			{Type: "function", Name: "get_time", Description: "Time by city", Parameters: params},
		},
		ToolChoice:     "auto",
		Temperature:    0.2,
		ResponseFormat: params,
		Metadata:       map[string]string{"user": "u1"},
	}
}

const benchReply = `{"id":"chatcmpl-1","object":"chat.completion","created":1741570283,"model":"gpt-5-nano-2025-08-07",
"choices":[{"index":0,"message":{"role":"assistant","content":"The weather in Paris is sunny with a light breeze from the west; expect a high of 21 degrees and clear skies through the evening.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],
"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},
"completion_tokens_details":{"reasoning_tokens":32,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},
"service_tier":"default","system_fingerprint":null}`

func benchClient(b *testing.B, d Dialect) *Client {
	b.Helper()
	return &Client{name: "openai", model: "gpt-5-nano", dialect: d, log: slog.New(slog.DiscardHandler)}
}

// BenchmarkEncodeRequest measures translating a typical request into the JSON body.
func BenchmarkEncodeRequest(b *testing.B) {
	for _, bc := range []struct {
		name    string
		dialect Dialect
	}{{"openai", OpenAIDialect()}, {"mistral", Dialect{ToolCallsAsText: true}}} {
		b.Run(bc.name, func(b *testing.B) {
			c := benchClient(b, bc.dialect)
			req := benchRequest(b)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.encode(b.Context(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeResponse measures parsing a typical answer into the provider response.
func BenchmarkDecodeResponse(b *testing.B) {
	data := []byte(benchReply)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := decodeResponse(data, "m"); err != nil {
			b.Fatal(err)
		}
	}
}

// structuredOutput is the json_schema the encoder sends for s.
func structuredOutput(s *structpb.Struct) (*jsonSchema, error) {
	rs, err := provider.ConvertResponseFormat(s)
	if err != nil {
		return nil, err
	}
	return &jsonSchema{Name: rs.Name, Description: rs.Description, Schema: rs.Schema, Strict: rs.Strict}, nil
}
