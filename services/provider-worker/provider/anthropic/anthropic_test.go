package anthropic_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/anthropic"
)

const testKey = "sk-ant-test-0123456789abcdef"

func text(s string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_Text{Text: s}}
}

func msg(role providerv1.Role, parts ...*providerv1.Part) *providerv1.Message {
	return &providerv1.Message{Role: role, Parts: parts}
}

func toolCall(id, name, args string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{
		Id: id, Type: "function", Name: name, Arguments: args,
	}}}
}

func toolResult(id, name, content string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_ToolResult{ToolResult: &providerv1.ToolResult{
		ToolCallId: id, Name: name, Content: content,
	}}}
}

func mustStruct(t testing.TB, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}

func requireProtoEqual(t *testing.T, want, got proto.Message) {
	t.Helper()
	if !proto.Equal(want, got) {
		require.Fail(t, "protos differ", "want: %s\ngot:  %s", prototext.Format(want), prototext.Format(got))
	}
}

func comp(meta ...string) component.Component {
	c := component.Component{Name: "claude", Type: "conversation.anthropic", Metadata: map[string]string{}}
	for i := 0; i+1 < len(meta); i += 2 {
		c.Metadata[meta[i]] = meta[i+1]
	}
	return c
}

func noEnv(string) (string, bool) { return "", false }

// recorded is one request the fake API received.
type recorded struct {
	method string
	path   string
	header http.Header
	body   []byte
}

// fakeAPI is a local stand-in for the Messages API: it records each request and answers
// with the status, headers and body it is given.
type fakeAPI struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []recorded
	status int
	header map[string]string
	body   string
}

func newFakeAPI(t *testing.T, status int, body string, header map[string]string) *fakeAPI {
	t.Helper()
	f := &fakeAPI{status: status, body: body, header: header}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: data})
		f.mu.Unlock()
		for k, v := range f.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.status)
		_, _ = io.WriteString(w, f.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func newProvider(t *testing.T, c component.Component) *anthropic.Provider {
	t.Helper()
	p, err := anthropic.New(c, provider.Options{LookupEnv: noEnv})
	require.NoError(t, err)
	return p
}

// okBody is a recorded-shape Messages API answer.
const okBody = `{
  "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-20250514",
  "content": [{"type": "text", "text": "Hello!"}],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 6, "service_tier": "standard"}
}`

func TestNew(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	tests := []struct {
		name      string
		give      component.Component
		env       map[string]string
		wantURL   string
		wantModel string
	}{
		{"defaults", comp("key", testKey), nil,
			"https://api.anthropic.com/v1/messages", anthropic.DefaultModel},
		{"metadata model", comp("key", testKey, "model", "claude-opus-4-1"), nil,
			"https://api.anthropic.com/v1/messages", "claude-opus-4-1"},
		{"env wins over metadata", comp("key", testKey, "model", "claude-opus-4-1"),
			map[string]string{"ANTHROPIC_MODEL": "claude-haiku-4-5"}, "https://api.anthropic.com/v1/messages", "claude-haiku-4-5"},
		{"empty env ignored", comp("key", testKey, "model", "m"), map[string]string{"ANTHROPIC_MODEL": ""},
			"https://api.anthropic.com/v1/messages", "m"},
		{"keys case-insensitive", comp("KEY", testKey, "Model", "m", "EndPoint", "https://proxy.example.com/v1/"), nil,
			"https://proxy.example.com/v1/messages", "m"},
		{"foundry, trailing slash trimmed",
			comp("key", testKey, "apiType", "Foundry", "endpoint", "https://res.services.ai.azure.com/anthropic/v1/"), nil,
			"https://res.services.ai.azure.com/anthropic/v1/messages", anthropic.DefaultModel},
		{"http to loopback", comp("key", testKey, "endpoint", "http://127.0.0.1:8080/v1"), nil,
			"http://127.0.0.1:8080/v1/messages", anthropic.DefaultModel},
		{"http to localhost", comp("key", testKey, "endpoint", "http://localhost:8080/v1"), nil,
			"http://localhost:8080/v1/messages", anthropic.DefaultModel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := anthropic.New(tt.give, provider.Options{LookupEnv: env(tt.env)})
			require.NoError(t, err)
			require.Equal(t, tt.wantURL, p.URL())
			require.Equal(t, tt.wantModel, p.Model())
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		give    component.Component
		allow   []string
		wantErr string
	}{
		{"no key", comp("model", "m"), nil, `metadata "key" is required`},
		{"empty key", comp("key", ""), nil, `metadata "key" is required`},
		{"foundry without endpoint", comp("key", testKey, "apiType", "foundry"), nil, `"endpoint" is required when apiType is "foundry"`},
		{"unknown apiType", comp("key", testKey, "apiType", "azure"), nil, `"apiType": "azure"`},
		{"http to a remote host", comp("key", testKey, "endpoint", "http://proxy.example.com/v1"), nil, "clear text"},
		{"not http", comp("key", testKey, "endpoint", "ftp://proxy.example.com/v1"), nil, "scheme must be http or https"},
		{"credentials in URL", comp("key", testKey, "endpoint", "https://u:p@proxy.example.com/v1"), nil, "credentials"},
		{"host not allowed", comp("key", testKey, "endpoint", "https://evil.example.com/v1"), []string{"*.azure.com"}, "ALLOWLIST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := anthropic.New(tt.give, provider.Options{LookupEnv: noEnv, EndpointAllowlist: tt.allow})
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), testKey)
		})
	}
}

func TestConverse(t *testing.T) {
	t.Parallel()
	maxTokens := int64(256)
	tests := []struct {
		name     string
		req      func(t testing.TB) *providerv1.Request
		wantBody string
		respond  string
		want     *providerv1.Response
	}{
		{
			name: "plain text with defaults",
			req: func(testing.TB) *providerv1.Request {
				return &providerv1.Request{Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("Hello"))}}
			},
			wantBody: `{"model":"claude-sonnet-4-20250514","max_tokens":4096,
				"messages":[{"role":"user","content":[{"type":"text","text":"Hello"}]}]}`,
			respond: okBody,
			want: &providerv1.Response{
				Model:   "claude-sonnet-4-20250514",
				Choices: []*providerv1.Choice{{FinishReason: "end_turn", Content: "Hello!"}},
				Usage:   &providerv1.Usage{PromptTokens: 12, CompletionTokens: 6, TotalTokens: 18},
			},
		},
		{
			name: "system, developer, options, merged roles",
			req: func(testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages: []*providerv1.Message{
						msg(providerv1.Role_ROLE_SYSTEM, text("Be brief.")),
						msg(providerv1.Role_ROLE_USER, text("Hi"), text("")),
						msg(providerv1.Role_ROLE_GENERIC, text("there")),
						msg(providerv1.Role_ROLE_DEVELOPER, text("Answer in French.")),
						msg(providerv1.Role_ROLE_ASSISTANT, text("Bonjour")),
						msg(providerv1.Role_ROLE_USER, text("")),
						msg(providerv1.Role_ROLE_ASSISTANT, text("!")),
					},
					Temperature: 0.7,
					MaxTokens:   &maxTokens,
					Stop:        []string{"\n\nHuman:", "END"},
					Metadata:    map[string]string{"user": "ignored"},
				}
			},
			wantBody: `{"model":"claude-sonnet-4-20250514","max_tokens":256,
				"system":[{"type":"text","text":"Be brief."},{"type":"text","text":"Answer in French."}],
				"messages":[
					{"role":"user","content":[{"type":"text","text":"Hi"},{"type":"text","text":"there"}]},
					{"role":"assistant","content":[{"type":"text","text":"Bonjour"},{"type":"text","text":"!"}]}],
				"temperature":0.7,"stop_sequences":["\n\nHuman:","END"]}`,
			respond: `{"type":"message","role":"assistant","model":"claude-sonnet-4-20250514",
				"content":[{"type":"text","text":"Salut"},{"type":"text","text":" !"}],"stop_reason":"stop_sequence",
				"stop_sequence":"END","usage":{"input_tokens":30,"output_tokens":3}}`,
			want: &providerv1.Response{
				Model:   "claude-sonnet-4-20250514",
				Choices: []*providerv1.Choice{{FinishReason: "stop_sequence", Content: "Salut !"}},
				Usage:   &providerv1.Usage{PromptTokens: 30, CompletionTokens: 3, TotalTokens: 33},
			},
		},
		{
			name: "tools, tool calls and results",
			req: func(t testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages: []*providerv1.Message{
						msg(providerv1.Role_ROLE_USER, text("Weather in Paris and Rome?")),
						msg(providerv1.Role_ROLE_ASSISTANT, text("Checking."),
							toolCall("toolu_01", "get_weather", `{"city": "Paris", "days": 2}`),
							toolCall("toolu_02", "get_weather", `{"city":"Rome"}`),
							toolCall("toolu_03", "now", "")),
						msg(providerv1.Role_ROLE_TOOL, toolResult("toolu_01", "get_weather", "18C"),
							toolResult("toolu_01", "get_weather", "sunny")),
						msg(providerv1.Role_ROLE_TOOL, toolResult("toolu_02", "get_weather", "21C")),
						msg(providerv1.Role_ROLE_USER, text("Thanks")),
						msg(providerv1.Role_ROLE_TOOL, toolResult("toolu_03", "now", "")),
					},
					Tools: []*providerv1.Tool{
						{Type: "function", Name: "get_weather", Description: "Current weather", Parameters: mustStruct(t, map[string]any{
							"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}},
							"required": []any{"city"},
						})},
						{Name: "now"},
					},
					ToolChoice: "auto",
				}
			},
			wantBody: `{"model":"claude-sonnet-4-20250514","max_tokens":4096,
				"messages":[
					{"role":"user","content":[{"type":"text","text":"Weather in Paris and Rome?"}]},
					{"role":"assistant","content":[{"type":"text","text":"Checking."},
						{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"city":"Paris","days":2}},
						{"type":"tool_use","id":"toolu_02","name":"get_weather","input":{"city":"Rome"}},
						{"type":"tool_use","id":"toolu_03","name":"now","input":{}}]},
					{"role":"user","content":[
						{"type":"tool_result","tool_use_id":"toolu_01","content":[{"type":"text","text":"18C"},{"type":"text","text":"sunny"}]},
						{"type":"tool_result","tool_use_id":"toolu_02","content":[{"type":"text","text":"21C"}]},
						{"type":"tool_result","tool_use_id":"toolu_03"},
						{"type":"text","text":"Thanks"}]}],
				"tools":[
					{"name":"get_weather","description":"Current weather","input_schema":{"type":"object",
						"properties":{"city":{"type":"string"}},"required":["city"]}},
					{"name":"now","input_schema":{"type":"object","properties":{}}}],
				"tool_choice":{"type":"auto"}}`,
			respond: `{"id":"msg_02","type":"message","role":"assistant","model":"claude-sonnet-4-20250514",
				"content":[{"type":"thinking","thinking":"...","signature":"x"},{"type":"text","text":"Let me check."},
					{"type":"tool_use","id":"toolu_04","name":"get_weather","input":{ "city" : "Oslo", "n": 12345678901234567890 }}],
				"stop_reason":"tool_use","usage":{"input_tokens":100,"cache_creation_input_tokens":20,
				"cache_read_input_tokens":300,"output_tokens":40}}`,
			want: &providerv1.Response{
				Model: "claude-sonnet-4-20250514",
				Choices: []*providerv1.Choice{{
					FinishReason: "tool_use", Content: "Let me check.",
					ToolCalls: []*providerv1.ToolCall{{Id: "toolu_04", Type: "function", Name: "get_weather",
						Arguments: `{"city":"Oslo","n":12345678901234567890}`}},
				}},
				Usage: &providerv1.Usage{PromptTokens: 420, CompletionTokens: 40, TotalTokens: 460, PromptCachedTokens: 300},
			},
		},
		{
			name: "tool choice required, any model answer fields",
			req: func(testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages:   []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("x"))},
					Tools:      []*providerv1.Tool{{Type: "function", Name: "f"}},
					ToolChoice: "required",
				}
			},
			wantBody: `{"model":"claude-sonnet-4-20250514","max_tokens":4096,
				"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"any"}}`,
			respond: `{"type":"message","model":"claude-x","content":[{"type":"tool_use","id":"t","name":"f","input":null}],
				"stop_reason":"tool_use"}`,
			want: &providerv1.Response{
				Model: "claude-x",
				Choices: []*providerv1.Choice{{FinishReason: "tool_use",
					ToolCalls: []*providerv1.ToolCall{{Id: "t", Type: "function", Name: "f", Arguments: "{}"}}}},
			},
		},
		{
			name: "tool choice none and by name; no stop reason",
			req: func(testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages:   []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("x"))},
					Tools:      []*providerv1.Tool{{Type: "function", Name: "f"}, {Type: "function", Name: "g"}},
					ToolChoice: "g",
				}
			},
			wantBody: `{"model":"claude-sonnet-4-20250514","max_tokens":4096,
				"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}},
					{"name":"g","input_schema":{"type":"object","properties":{}}}],
				"tool_choice":{"type":"tool","name":"g"}}`,
			respond: `{"type":"message","content":[],"stop_reason":null}`,
			want:    &providerv1.Response{Choices: []*providerv1.Choice{{FinishReason: "unknown"}}},
		},
		{
			name: "tool choice none; auto without tools omitted",
			req: func(testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages:   []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("x"))},
					Tools:      []*providerv1.Tool{{Type: "function", Name: "f"}},
					ToolChoice: "none",
				}
			},
			wantBody: `{"model":"claude-sonnet-4-20250514","max_tokens":4096,
				"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"none"}}`,
			respond: okBody,
			want: &providerv1.Response{
				Model:   "claude-sonnet-4-20250514",
				Choices: []*providerv1.Choice{{FinishReason: "end_turn", Content: "Hello!"}},
				Usage:   &providerv1.Usage{PromptTokens: 12, CompletionTokens: 6, TotalTokens: 18},
			},
		},
		{
			name: "response format: forced tool, tool_use input as content",
			req: func(t testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("Weather in Paris?"))},
					ResponseFormat: mustStruct(t, map[string]any{
						"type": "object", "name": "weather", "description": "The weather", "strict": true,
						"properties": map[string]any{
							"city":   map[string]any{"type": "string", "description": "City name", "format": "dropped"},
							"temp_c": map[string]any{"type": "number"},
							"sky":    map[string]any{"type": "string", "enum": []any{"clear", "cloudy", 3}},
							"tags":   map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
						},
						"required": []any{"city", "temp_c", 7},
						"$schema":  "https://json-schema.org/draft/2020-12/schema",
					}),
				}
			},
			wantBody: `{"model":"claude-sonnet-4-20250514","max_tokens":4096,
				"messages":[{"role":"user","content":[{"type":"text","text":"Weather in Paris?"}]}],
				"tools":[{"name":"weather","description":"The weather","input_schema":{
					"type":"object","description":"The weather","additionalProperties":false,"required":["city","temp_c"],
					"properties":{
						"city":{"type":"string","description":"City name"},
						"temp_c":{"type":"number"},
						"sky":{"type":"string","enum":["clear","cloudy","3"]},
						"tags":{"type":"array","items":{"type":"string"}}}}}],
				"tool_choice":{"type":"tool","name":"weather"}}`,
			respond: `{
  "id": "msg_01Aq9w938a90dw8q",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-20250514",
  "content": [{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "weather",
    "input": {"city": "Paris", "temp_c": 21.5, "sky": "clear", "tags": []}}],
  "stop_reason": "tool_use",
  "stop_sequence": null,
  "usage": {"input_tokens": 410, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 58}
}`,
			want: &providerv1.Response{
				Model: "claude-sonnet-4-20250514",
				Choices: []*providerv1.Choice{{FinishReason: "stop",
					Content: `{"city":"Paris","temp_c":21.5,"sky":"clear","tags":[]}`}},
				Usage: &providerv1.Usage{PromptTokens: 410, CompletionTokens: 58, TotalTokens: 468},
			},
		},
		{
			name: "response format: default name, tool_choice without tools overridden, max_tokens kept",
			req: func(t testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages:       []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("x"))},
					ToolChoice:     "auto",
					ResponseFormat: mustStruct(t, map[string]any{"type": "object"}),
				}
			},
			wantBody: `{"model":"claude-sonnet-4-20250514","max_tokens":4096,
				"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"tools":[{"name":"response","input_schema":{"type":"object","additionalProperties":false}}],
				"tool_choice":{"type":"tool","name":"response"}}`,
			respond: `{"type":"message","model":"claude-x","content":[{"type":"text","text":"ignored"},
				{"type":"tool_use","id":"t","name":"response","input":{"a":  "trunc"}}],"stop_reason":"max_tokens"}`,
			want: &providerv1.Response{
				Model:   "claude-x",
				Choices: []*providerv1.Choice{{FinishReason: "max_tokens", Content: `{"a":"trunc"}`}},
			},
		},
		{
			name: "response format: answer without the response tool mapped as usual",
			req: func(t testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages:       []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("x"))},
					ResponseFormat: mustStruct(t, map[string]any{"type": "object"}),
				}
			},
			wantBody: `{"model":"claude-sonnet-4-20250514","max_tokens":4096,
				"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"tools":[{"name":"response","input_schema":{"type":"object","additionalProperties":false}}],
				"tool_choice":{"type":"tool","name":"response"}}`,
			respond: okBody,
			want: &providerv1.Response{
				Model:   "claude-sonnet-4-20250514",
				Choices: []*providerv1.Choice{{FinishReason: "end_turn", Content: "Hello!"}},
				Usage:   &providerv1.Usage{PromptTokens: 12, CompletionTokens: 6, TotalTokens: 18},
			},
		},
		{
			name: "invalid response format ignored",
			req: func(t testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("x"))},
					ResponseFormat: mustStruct(t, map[string]any{"type": "object",
						"properties": map[string]any{"a": map[string]any{"description": "no type"}}}),
				}
			},
			wantBody: `{"model":"claude-sonnet-4-20250514","max_tokens":4096,
				"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
			respond: okBody,
			want: &providerv1.Response{
				Model:   "claude-sonnet-4-20250514",
				Choices: []*providerv1.Choice{{FinishReason: "end_turn", Content: "Hello!"}},
				Usage:   &providerv1.Usage{PromptTokens: 12, CompletionTokens: 6, TotalTokens: 18},
			},
		},
		{
			name: "invalid response format ignored with tools",
			req: func(t testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages:       []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("x"))},
					Tools:          []*providerv1.Tool{{Type: "function", Name: "f"}},
					ResponseFormat: mustStruct(t, map[string]any{"name": "no type"}),
				}
			},
			wantBody: `{"model":"claude-sonnet-4-20250514","max_tokens":4096,
				"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}]}`,
			respond: okBody,
			want: &providerv1.Response{
				Model:   "claude-sonnet-4-20250514",
				Choices: []*providerv1.Choice{{FinishReason: "end_turn", Content: "Hello!"}},
				Usage:   &providerv1.Usage{PromptTokens: 12, CompletionTokens: 6, TotalTokens: 18},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI(t, http.StatusOK, tt.respond, nil)
			p := newProvider(t, comp("key", testKey, "endpoint", api.srv.URL+"/v1"))
			got, err := p.Converse(t.Context(), tt.req(t))
			require.NoError(t, err)
			requireProtoEqual(t, tt.want, got)

			reqs := api.requests()
			require.Len(t, reqs, 1)
			r := reqs[0]
			require.Equal(t, http.MethodPost, r.method)
			require.Equal(t, "/v1/messages", r.path)
			require.Equal(t, testKey, r.header.Get("X-Api-Key"))
			require.Equal(t, "2023-06-01", r.header.Get("Anthropic-Version"))
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
			require.Empty(t, r.header.Get("Authorization"))
			require.JSONEq(t, tt.wantBody, string(r.body))
		})
	}
}

func TestConverseFoundry(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, http.StatusOK, okBody, nil)
	p, err := anthropic.New(comp("key", testKey, "apiType", "foundry", "model", "my-claude-deployment",
		"endpoint", api.srv.URL+"/anthropic/v1/"), provider.Options{LookupEnv: noEnv})
	require.NoError(t, err)
	_, err = p.Converse(t.Context(), &providerv1.Request{Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("Hi"))}})
	require.NoError(t, err)
	reqs := api.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "/anthropic/v1/messages", reqs[0].path)
	require.Equal(t, testKey, reqs[0].header.Get("X-Api-Key"))
	require.Equal(t, "2023-06-01", reqs[0].header.Get("Anthropic-Version"))
	var body map[string]any
	require.NoError(t, json.Unmarshal(reqs[0].body, &body))
	require.Equal(t, "my-claude-deployment", body["model"])
}

func TestConverseInvalidRequest(t *testing.T) {
	t.Parallel()
	zero, negative := int64(0), int64(-1)
	user := msg(providerv1.Role_ROLE_USER, text("x"))
	tests := []struct {
		name    string
		give    *providerv1.Request
		wantErr string
	}{
		{"invalid tool arguments", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_ASSISTANT, toolCall("t", "f", `{"city": secret-prompt-text`))}}, "not valid JSON"},
		{"non-object tool arguments", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_ASSISTANT, toolCall("t", "f", `[1,2]`))}}, "not a JSON object"},
		{"tool call in a user message", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_USER, toolCall("t", "f", `{}`))}}, "must be in an assistant message"},
		{"tool result in an assistant message", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_ASSISTANT, toolResult("t", "f", "r"))}}, "cannot be in an assistant message"},
		{"tool call in a system message", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_SYSTEM, toolCall("t", "f", `{}`))}}, "text only"},
		{"part without kind", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_USER, &providerv1.Part{})}}, "no content"},
		{"unspecified role", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_UNSPECIFIED, text("x"))}}, "unsupported role"},
		{"zero max tokens", &providerv1.Request{Messages: []*providerv1.Message{user}, MaxTokens: &zero}, "max_tokens"},
		{"negative max tokens", &providerv1.Request{Messages: []*providerv1.Message{user}, MaxTokens: &negative}, "max_tokens"},
		{"required without tools", &providerv1.Request{Messages: []*providerv1.Message{user}, ToolChoice: "required"}, "needs at least one tool"},
		{"unknown tool name", &providerv1.Request{Messages: []*providerv1.Message{user},
			Tools: []*providerv1.Tool{{Name: "f"}}, ToolChoice: "g"}, `"g" names no tool`},
		{"non-function tool", &providerv1.Request{Messages: []*providerv1.Message{user},
			Tools: []*providerv1.Tool{{Type: "retrieval", Name: "f"}}}, "only function"},
		{"response format with tools", &providerv1.Request{Messages: []*providerv1.Message{user},
			Tools:          []*providerv1.Tool{{Type: "function", Name: "f"}},
			ResponseFormat: mustStruct(t, map[string]any{"type": "object"})},
			"anthropic: response_format cannot be combined with tools for this provider"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI(t, http.StatusOK, okBody, nil)
			p := newProvider(t, comp("key", testKey, "endpoint", api.srv.URL+"/v1"))
			_, err := p.Converse(t.Context(), tt.give)
			requireCode(t, err, providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), "secret-prompt-text")
			require.Empty(t, api.requests(), "an invalid request must not reach the API")
		})
	}
}

func TestConverseInvalidResponseFormatLogged(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, http.StatusOK, okBody, nil)
	var logs bytes.Buffer
	p, err := anthropic.New(comp("key", testKey, "endpoint", api.srv.URL+"/v1"),
		provider.Options{LookupEnv: noEnv, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	_, err = p.Converse(t.Context(), &providerv1.Request{
		RequestId:      "req-7",
		Messages:       []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("secret-prompt-text"))},
		ResponseFormat: mustStruct(t, map[string]any{"type": 1}),
	})
	require.NoError(t, err)
	require.Len(t, api.requests(), 1)
	require.NotContains(t, string(api.requests()[0].body), "tool")
	require.Contains(t, logs.String(), `"msg":"response_format ignored: not convertible to a json_schema"`)
	require.Contains(t, logs.String(), `"request_id":"req-7"`)
	require.Contains(t, logs.String(), "schema type is required and must be a string")
	require.NotContains(t, logs.String(), "secret-prompt-text")
	require.NotContains(t, logs.String(), testKey)
}

// codeOf is what a test reads from a *provider.Error.
type codeOf struct {
	RetryAfter time.Duration
	retryable  bool
}

func (c codeOf) Retryable() bool { return c.retryable }

func requireCode(t *testing.T, err error, want providerv1.ErrorCode) codeOf {
	t.Helper()
	var pe *provider.Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, want.String(), pe.Code.String(), "error: %v", err)
	return codeOf{RetryAfter: pe.RetryAfter, retryable: pe.Retryable()}
}

func TestConverseHTTPErrors(t *testing.T) {
	t.Parallel()
	errBody := func(typ, message string) string {
		return `{"type":"error","error":{"type":"` + typ + `","message":"` + message + `"},"request_id":"req_011"}`
	}
	tests := []struct {
		name           string
		status         int
		header         map[string]string
		body           string
		wantCode       providerv1.ErrorCode
		wantRetryAfter time.Duration
		wantText       string
	}{
		{"400 invalid request", http.StatusBadRequest, nil,
			errBody("invalid_request_error", "messages: roles must alternate; prompt was: secret-prompt-text"),
			providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, 0, "type=invalid_request_error"},
		{"401 bad key", http.StatusUnauthorized, nil,
			errBody("authentication_error", "invalid x-api-key "+testKey),
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0, "authentication failed"},
		{"403 permission", http.StatusForbidden, nil, errBody("permission_error", "no"),
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0, "HTTP 403"},
		{"404 unknown model", http.StatusNotFound, nil, errBody("not_found_error", "model: claude-nope"),
			providerv1.ErrorCode_ERROR_CODE_NOT_FOUND, 0, "type=not_found_error"},
		{"413 too large", http.StatusRequestEntityTooLarge, nil, errBody("request_too_large", "too large"),
			providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, 0, "HTTP 413"},
		{"429 with retry-after", http.StatusTooManyRequests, map[string]string{"Retry-After": "17"},
			errBody("rate_limit_error", "slow down"),
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 17 * time.Second, "type=rate_limit_error"},
		{"429 with HTTP-date retry-after", http.StatusTooManyRequests,
			map[string]string{"Retry-After": "Wed, 01 Jan 2031 00:00:30 GMT"}, errBody("rate_limit_error", "slow down"),
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 30 * time.Second, "HTTP 429"},
		{"500 api error", http.StatusInternalServerError, nil, errBody("api_error", "boom"),
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 0, "type=api_error"},
		{"503 with non-JSON body", http.StatusServiceUnavailable, map[string]string{"Retry-After": "3"},
			"<html>upstream connect error</html>", providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 3 * time.Second, "HTTP 503"},
		{"529 overloaded", 529, nil, errBody("overloaded_error", "Overloaded"),
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 0, "type=overloaded_error"},
		{"redirect not followed", http.StatusTemporaryRedirect, map[string]string{"Location": "https://evil.example.com/"}, "",
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0, "HTTP 307"},
		{"200 with malformed JSON", http.StatusOK, nil, `{"type":"message","content":[{"type":"text","text":"secret-prompt-text`,
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0, "malformed JSON"},
		{"200 with an error object", http.StatusOK, nil, errBody("overloaded_error", "x"),
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0, `not "message"`},
		{"200 with wrong field types", http.StatusOK, nil, `{"type":"message","content":"secret-prompt-text"}`,
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0, `JSON field "content"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI(t, tt.status, tt.body, tt.header)
			p, err := anthropic.New(comp("key", testKey, "endpoint", api.srv.URL+"/v1"), provider.Options{
				LookupEnv: noEnv,
				Now:       func() time.Time { return time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC) },
			})
			require.NoError(t, err)
			_, err = p.Converse(t.Context(), &providerv1.Request{
				Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("secret-prompt-text"))},
			})
			pe := requireCode(t, err, tt.wantCode)
			require.Equal(t, tt.wantRetryAfter, pe.RetryAfter)
			require.ErrorContains(t, err, tt.wantText)
			require.NotContains(t, err.Error(), testKey)
			require.NotContains(t, err.Error(), "secret-prompt-text")
			require.Len(t, api.requests(), 1, "the provider must not retry on its own")
		})
	}
}

func TestConverseTransportErrors(t *testing.T) {
	t.Parallel()
	req := &providerv1.Request{Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("hi"))}}

	t.Run("hung server: deadline", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		p := newProvider(t, comp("key", testKey, "endpoint", srv.URL+"/v1"))
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := p.Converse(ctx, req)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NotContains(t, err.Error(), testKey)
	})

	t.Run("slow body: deadline while reading", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Read the request first, as a real server does: a reply to an unread request
			// races with the client's write and may close the connection instead.
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"type":"message","content":[`)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		p := newProvider(t, comp("key", testKey, "endpoint", srv.URL+"/v1"))
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := p.Converse(ctx, req)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})

	t.Run("canceled by the caller", func(t *testing.T) {
		t.Parallel()
		api := newFakeAPI(t, http.StatusOK, okBody, nil)
		p := newProvider(t, comp("key", testKey, "endpoint", api.srv.URL+"/v1"))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := p.Converse(ctx, req)
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("connection refused: unavailable", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		p := newProvider(t, comp("key", testKey, "endpoint", url+"/v1"))
		_, err := p.Converse(t.Context(), req)
		pe := requireCode(t, err, providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE)
		require.True(t, pe.Retryable())
		require.NotContains(t, err.Error(), testKey)
		require.False(t, errors.Is(err, context.DeadlineExceeded))
	})

	t.Run("connection dropped mid-answer: unavailable", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"type":"message"`)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}))
		t.Cleanup(srv.Close)
		p := newProvider(t, comp("key", testKey, "endpoint", srv.URL+"/v1"))
		_, err := p.Converse(t.Context(), req)
		requireCode(t, err, providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE)
		require.False(t, strings.Contains(err.Error(), testKey))
	})
}

// BenchmarkConverse measures one call against a local fake endpoint: encoding, the
// loopback HTTP exchange and decoding.
func BenchmarkConverse(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, okBody)
	}))
	b.Cleanup(srv.Close)
	p, err := anthropic.New(comp("key", testKey, "endpoint", srv.URL+"/v1"), provider.Options{LookupEnv: noEnv})
	if err != nil {
		b.Fatal(err)
	}
	req := &providerv1.Request{Messages: []*providerv1.Message{
		msg(providerv1.Role_ROLE_SYSTEM, text("Be brief.")),
		msg(providerv1.Role_ROLE_USER, text(strings.Repeat("lorem ipsum ", 50))),
	}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Converse(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}
