package openai_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	pt "github.com/parleyhq/parley/services/provider-worker/provider/internal/providertest"
	"github.com/parleyhq/parley/services/provider-worker/provider/openai"
)

const (
	roleUser      = providerv1.Role_ROLE_USER
	roleSystem    = providerv1.Role_ROLE_SYSTEM
	roleDeveloper = providerv1.Role_ROLE_DEVELOPER
	roleAssistant = providerv1.Role_ROLE_ASSISTANT
	roleTool      = providerv1.Role_ROLE_TOOL
	roleFunction  = providerv1.Role_ROLE_FUNCTION
	roleGeneric   = providerv1.Role_ROLE_GENERIC
)

func newOpenAI(c component.Component, opts provider.Options) (pt.Converser, error) {
	return openai.New(c, opts)
}

// A chat completion as OpenAI's API reference shows it (a tool call; usage with cached
// and reasoning tokens).
const toolCallReply = `{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": "gpt-5-nano-2025-08-07",
  "choices": [{
    "index": 0,
    "message": {
      "role": "assistant",
      "content": null,
      "tool_calls": [{"id": "call_abc", "type": "function",
                      "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
      "refusal": null,
      "annotations": []
    },
    "logprobs": null,
    "finish_reason": "tool_calls"
  }],
  "usage": {
    "prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 32, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
  },
  "service_tier": "default",
  "system_fingerprint": null
}`

const textReply = `{
  "id": "chatcmpl-1", "object": "chat.completion", "created": 1741570283, "model": "gpt-4.1-nano-2025-04-14",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Bonjour !", "refusal": null},
               "logprobs": null, "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
}`

func textResponse(model string) *providerv1.Response {
	return &providerv1.Response{
		Model:   model,
		Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "Bonjour !"}},
		Usage:   &providerv1.Usage{PromptTokens: 12, CompletionTokens: 3, TotalTokens: 15},
	}
}

func fullRequest(t *testing.T) *providerv1.Request {
	t.Helper()
	return &providerv1.Request{
		RequestId: "req-1",
		Messages: []*providerv1.Message{
			pt.Msg(roleSystem, pt.Text("You are terse.")),
			pt.Msg(roleDeveloper, pt.Text("Answer in French.")),
			pt.Msg(roleUser, pt.Text("What is the weather"), pt.Text("in Paris?")),
			pt.Msg(roleAssistant, pt.ToolCall("call_1", "get_weather", `{"city":"Paris"}`)),
			pt.Msg(roleTool, pt.ToolResult("call_1", "get_weather", "sunny"), pt.ToolResult("call_2", "get_time", "noon")),
			pt.Msg(roleFunction, pt.Text("legacy")),
			pt.Msg(roleGeneric, pt.Text("generic")),
			pt.Msg(roleAssistant, pt.Text("It is sunny."), pt.ToolCall("", "noop", "")),
		},
		Tools: []*providerv1.Tool{
			{Type: "function", Name: "get_weather", Description: "Weather by city",
				Parameters: pt.Struct(t, `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)},
			{Name: "get_time"},
		},
		ToolChoice:  "get_weather",
		Temperature: 0.7,
		MaxTokens:   proto.Int64(256),
		Stop:        []string{"\n\n", "END"},
		ResponseFormat: pt.Struct(t, `{"type":"object","name":"weather","strict":true,"description":"A forecast",
			"$schema":"https://json-schema.org/draft/2020-12/schema",
			"properties":{"city":{"type":"string","minLength":1},
			              "temps":{"type":"array","items":{"type":"number"}},
			              "unit":{"type":"string","enum":["C","F",1]}},
			"required":["city",7],"additionalProperties":false}`),
		PromptCacheRetention: durationpb.New(24 * time.Hour),
		Metadata:             map[string]string{"user": "u1", "openai:internal": "dropped"},
	}
}

// fullBodyMessages is the messages array of fullRequest in OpenAI's dialect.
const fullBodyMessages = `[
  {"role":"system","content":"You are terse."},
  {"role":"developer","content":"Answer in French."},
  {"role":"user","content":[{"type":"text","text":"What is the weather"},{"type":"text","text":"in Paris?"}]},
  {"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
  {"role":"tool","tool_call_id":"call_1","content":"sunny"},
  {"role":"tool","tool_call_id":"call_2","content":"noon"},
  {"role":"user","content":"legacy"},
  {"role":"user","content":"generic"},
  {"role":"assistant","content":"It is sunny.","tool_calls":[{"id":"","type":"function","function":{"name":"noop","arguments":""}}]}
]`

// fullBodyRest is everything of fullRequest's body but model, messages and the token cap.
const fullBodyRest = `
  "temperature":0.7,
  "stop":["\n\n","END"],
  "tools":[
    {"type":"function","function":{"name":"get_weather","description":"Weather by city",
      "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
    {"type":"function","function":{"name":"get_time"}}],
  "tool_choice":{"type":"function","function":{"name":"get_weather"}},
  "response_format":{"type":"json_schema","json_schema":{"name":"weather","description":"A forecast","strict":true,
    "schema":{"type":"object","description":"A forecast","additionalProperties":false,"required":["city"],
      "properties":{"city":{"type":"string"},
                    "temps":{"type":"array","items":{"type":"number"}},
                    "unit":{"type":"string","enum":["C","F","1"]}}}}},
  "metadata":{"user":"u1","prompt_cache_retention":"24h0m0s"}`

func toolCallResponse(model string) *providerv1.Response {
	return &providerv1.Response{
		Model: model,
		Choices: []*providerv1.Choice{{
			FinishReason: "tool_calls",
			ToolCalls:    []*providerv1.ToolCall{{Id: "call_abc", Type: "function", Name: "get_weather", Arguments: `{"city":"Paris"}`}},
		}},
		Usage: &providerv1.Usage{
			PromptTokens: 1117, CompletionTokens: 46, TotalTokens: 1163,
			PromptCachedTokens: 1024, CompletionReasoningTokens: 32,
		},
	}
}

func userRequest(text string) *providerv1.Request {
	return &providerv1.Request{Messages: []*providerv1.Message{pt.Msg(roleUser, pt.Text(text))}}
}

func TestOpenAIRequests(t *testing.T) {
	t.Parallel()
	bearer := http.Header{"Authorization": {"Bearer sk-k"}, "Accept": {"application/json"}}
	pt.RunRequestCases(t, newOpenAI, []pt.RequestCase{
		{
			Name:       "defaults",
			Metadata:   map[string]string{"key": "sk-k", "endpoint": "{server}/v1"},
			Request:    userRequest("Hello"),
			Reply:      textReply,
			WantPath:   "/v1/chat/completions",
			WantHeader: bearer,
			WantBody:   `{"model":"gpt-5-nano","messages":[{"role":"user","content":"Hello"}]}`,
			Want:       textResponse("gpt-4.1-nano-2025-04-14"),
		},
		{
			Name:     "model metadata, endpoint with trailing slash",
			Metadata: map[string]string{"key": "sk-k", "endpoint": "{server}/v1/", "model": "gpt-4.1-mini"},
			Request:  userRequest("Hello"),
			Reply:    textReply,
			WantPath: "/v1/chat/completions",
			WantBody: `{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"Hello"}]}`,
			Want:     textResponse("gpt-4.1-nano-2025-04-14"),
		},
		{
			Name:     "OPENAI_MODEL wins over the model metadata",
			Metadata: map[string]string{"key": "sk-k", "endpoint": "{server}", "model": "gpt-4.1-mini", "apiType": "OPEN_AI"},
			Env:      map[string]string{"OPENAI_MODEL": "o4-mini", "AZURE_OPENAI_MODEL": "ignored"},
			Request:  userRequest("Hello"),
			Reply:    textReply,
			WantPath: "/chat/completions",
			WantBody: `{"model":"o4-mini","messages":[{"role":"user","content":"Hello"}]}`,
			Want:     textResponse("gpt-4.1-nano-2025-04-14"),
		},
		{
			Name:       "every feature",
			Metadata:   map[string]string{"key": "sk-k", "endpoint": "{server}/v1"},
			Request:    fullRequest(t),
			Reply:      toolCallReply,
			WantPath:   "/v1/chat/completions",
			WantHeader: bearer,
			WantBody: `{"model":"gpt-5-nano","messages":` + fullBodyMessages + `,"max_completion_tokens":256,` +
				fullBodyRest + `}`,
			Want: toolCallResponse("gpt-5-nano-2025-08-07"),
		},
		{
			Name:     "any is required; temperature 0 and empty metadata are not sent",
			Metadata: map[string]string{"key": "sk-k", "endpoint": "{server}"},
			Request: &providerv1.Request{
				Messages:    []*providerv1.Message{pt.Msg(roleUser, pt.Text("Hi"))},
				Tools:       []*providerv1.Tool{{Type: "function", Name: "f"}},
				ToolChoice:  "any",
				Temperature: 0,
				MaxTokens:   proto.Int64(0),
				Metadata:    map[string]string{"openai:only": "x"},
			},
			Reply:    toolCallReply,
			WantPath: "/chat/completions",
			WantBody: `{"model":"gpt-5-nano","messages":[{"role":"user","content":"Hi"}],
				"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required"}`,
			Want: toolCallResponse("gpt-5-nano-2025-08-07"),
		},
		{
			Name:     "auto, none and an empty message",
			Metadata: map[string]string{"key": "sk-k", "endpoint": "{server}"},
			Request: &providerv1.Request{
				Messages:             []*providerv1.Message{pt.Msg(roleUser), pt.Msg(providerv1.Role_ROLE_UNSPECIFIED, pt.Text("x"))},
				ToolChoice:           "none",
				PromptCacheRetention: durationpb.New(90 * time.Minute),
			},
			Reply:    textReply,
			WantPath: "/chat/completions",
			WantBody: `{"model":"gpt-5-nano","messages":[{"role":"user","content":""},{"role":"user","content":"x"}],
				"tool_choice":"none","metadata":{"prompt_cache_retention":"1h30m0s"}}`,
			Want: textResponse("gpt-4.1-nano-2025-04-14"),
		},
		{
			Name: "azure",
			Metadata: map[string]string{"key": "azure-key", "apiType": "Azure", "endpoint": "{server}/",
				"apiVersion": "2024-10-21", "model": "my deployment"},
			Request:      fullRequest(t),
			Reply:        toolCallReply,
			WantPath:     "/openai/deployments/my deployment/chat/completions",
			WantQuery:    "api-version=2024-10-21",
			WantHeader:   http.Header{"Api-Key": {"azure-key"}},
			WantNoHeader: []string{"Authorization"},
			WantBody: `{"model":"my deployment","messages":` + fullBodyMessages + `,"max_completion_tokens":256,` +
				fullBodyRest + `}`,
			Want: toolCallResponse("gpt-5-nano-2025-08-07"),
		},
		{
			Name: "azure model from AZURE_OPENAI_MODEL",
			Metadata: map[string]string{"key": "azure-key", "apiType": "azure", "endpoint": "{server}",
				"apiVersion": "2025-04-01-preview", "model": "from-metadata"},
			Env:        map[string]string{"AZURE_OPENAI_MODEL": "from-env", "OPENAI_MODEL": "ignored"},
			Request:    userRequest("Hello"),
			Reply:      textReply,
			WantPath:   "/openai/deployments/from-env/chat/completions",
			WantQuery:  "api-version=2025-04-01-preview",
			WantHeader: http.Header{"Api-Key": {"azure-key"}},
			WantBody:   `{"model":"from-env","messages":[{"role":"user","content":"Hello"}]}`,
			Want:       textResponse("gpt-4.1-nano-2025-04-14"),
		},
	})
}

func TestDefaultEndpoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		md, env map[string]string
		wantURL string
	}{
		{"openai", map[string]string{"key": "k"}, nil, "https://api.openai.com/v1/chat/completions"},
		{
			"azure", map[string]string{"key": "k", "apiType": "azure", "endpoint": "https://res.openai.azure.com", "apiVersion": "2024-10-21"}, nil,
			"https://res.openai.azure.com/openai/deployments/gpt-4.1-nano/chat/completions?api-version=2024-10-21",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, _ := pt.DefaultURL(t, newOpenAI, tt.md, tt.env)
			require.Equal(t, tt.wantURL, got)
		})
	}
}

func TestOpenAIErrors(t *testing.T) {
	t.Parallel()
	pt.RunErrorCases(t, func(t *testing.T, endpoint, key string, now func() time.Time) pt.Converser {
		p, err := openai.New(component.Component{Metadata: map[string]string{"key": key, "endpoint": endpoint}},
			provider.Options{Now: now})
		require.NoError(t, err)
		return p
	}, pt.OpenAIErrorBody)
}

func TestAzureErrors(t *testing.T) {
	t.Parallel()
	pt.RunErrorCases(t, func(t *testing.T, endpoint, key string, now func() time.Time) pt.Converser {
		p, err := openai.New(component.Component{Metadata: map[string]string{
			"key": key, "endpoint": endpoint, "apiType": "azure", "apiVersion": "2024-10-21",
		}}, provider.Options{Now: now})
		require.NoError(t, err)
		return p
	}, pt.OpenAIErrorBody)
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		md      map[string]string
		allow   []string
		wantErr string
	}{
		{"no key", map[string]string{"model": "m"}, nil, `openai: metadata "key" is required`},
		{"empty key", map[string]string{"key": ""}, nil, `metadata "key" is required`},
		{"unknown apiType", map[string]string{"key": "k", "apiType": "bedrock"}, nil, `apiType "bedrock": must be openai or azure`},
		{"azure without apiVersion", map[string]string{"key": "k", "apiType": "azure", "endpoint": "https://x"}, nil,
			"endpoint and apiVersion must be provided when apiType is set to 'azure'"},
		{"azure without endpoint", map[string]string{"key": "k", "apiType": "azure", "apiVersion": "v"}, nil,
			"endpoint and apiVersion must be provided when apiType is set to 'azure'"},
		{"azure without key", map[string]string{"apiType": "azure", "apiVersion": "v", "endpoint": "https://x"}, nil, `"key" is required`},
		{"ftp endpoint", map[string]string{"key": "k", "endpoint": "ftp://api.openai.com"}, nil, "scheme must be http or https"},
		{"endpoint with credentials", map[string]string{"key": "k", "endpoint": "https://u:hunter2@x"}, nil, "credentials"},
		{"azure ftp endpoint", map[string]string{"key": "k", "apiType": "azure", "apiVersion": "v", "endpoint": "ftp://x"}, nil, "scheme must be http or https"},
		{"default endpoint not allowed", map[string]string{"key": "k"}, []string{"localhost"}, `host "api.openai.com" is not in WORKER_ENDPOINT_ALLOWLIST`},
		{"configured endpoint not allowed", map[string]string{"key": "k", "endpoint": "https://evil.example"}, []string{"api.openai.com"}, "evil.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := openai.New(component.Component{Metadata: tt.md}, provider.Options{EndpointAllowlist: tt.allow})
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
	_, err := openai.New(component.Component{Metadata: map[string]string{"key": "k"}},
		provider.Options{EndpointAllowlist: []string{"api.openai.com"}})
	require.NoError(t, err)
}

func TestRequestsThatCannotBeSent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		msgs    []*providerv1.Message
		wantErr string
	}{
		{"part without kind", []*providerv1.Message{pt.Msg(roleUser, &providerv1.Part{})}, "message 0: part 0: part has no kind"},
		{"tool result in a user message", []*providerv1.Message{pt.Msg(roleUser, pt.Text(pt.PromptText), pt.ToolResult("1", "f", pt.PromptText))},
			"message 0: part 1: tool result outside a tool message"},
		{"tool call in a user message", []*providerv1.Message{pt.Msg(roleUser, pt.ToolCall("1", "f", pt.PromptText))},
			"tool call outside an assistant message"},
		{"text in a tool message", []*providerv1.Message{pt.Msg(roleUser, pt.Text("a")), pt.Msg(roleTool, pt.Text(pt.PromptText))},
			"message 1: part 0: text part in a tool message"},
		{"tool call in a tool message", []*providerv1.Message{pt.Msg(roleTool, pt.ToolCall("1", "f", "{}"))}, "tool call outside an assistant message"},
		{"part without kind in a tool message", []*providerv1.Message{pt.Msg(roleTool, &providerv1.Part{})}, "part has no kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := pt.NewServer(t, pt.Reply{Body: textReply})
			p, err := openai.New(component.Component{Metadata: map[string]string{"key": pt.Key, "endpoint": srv.URL}}, provider.Options{})
			require.NoError(t, err)
			_, err = p.Converse(t.Context(), &providerv1.Request{Messages: tt.msgs})
			var pe *provider.Error
			require.ErrorAs(t, err, &pe)
			require.Equal(t, providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, pe.Code)
			require.ErrorContains(t, err, tt.wantErr)
			pt.RequireClean(t, err)
			require.Empty(t, srv.Exchanges(), "nothing is sent")
		})
	}
}

func TestRequiredToolUseWithoutAnswer(t *testing.T) {
	t.Parallel()
	empty := `{"model":"m","choices":[{"index":0,"message":{"content":""},"finish_reason":"stop"}]}`
	tests := []struct {
		name    string
		choice  string
		tools   []*providerv1.Tool
		wantErr bool
	}{
		{"required with tools", "required", []*providerv1.Tool{{Name: "f"}}, true},
		{"any with tools", "any", []*providerv1.Tool{{Name: "f"}, {Name: "g"}}, true},
		{"auto with tools", "auto", []*providerv1.Tool{{Name: "f"}}, false},
		{"required without tools", "required", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := pt.NewServer(t, pt.Reply{Body: empty})
			p, err := openai.New(component.Component{Metadata: map[string]string{"key": "k", "endpoint": srv.URL}}, provider.Options{})
			require.NoError(t, err)
			req := userRequest("hi")
			req.ToolChoice, req.Tools = tt.choice, tt.tools
			resp, err := p.Converse(t.Context(), req)
			if !tt.wantErr {
				require.NoError(t, err)
				require.Len(t, resp.GetChoices(), 1)
				return
			}
			require.ErrorContains(t, err, fmt.Sprintf("LLM returned empty response with no tool calls despite %d tools being available", len(tt.tools)))
			require.True(t, provider.IsRetryable(err))
		})
	}
}

func TestUnusableResponseFormatIsDropped(t *testing.T) {
	t.Parallel()
	srv := pt.NewServer(t, pt.Reply{Body: textReply})
	var logs bytes.Buffer
	p, err := openai.New(component.Component{Metadata: map[string]string{"key": pt.Key, "endpoint": srv.URL}},
		provider.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	req := userRequest(pt.PromptText)
	req.RequestId = "req-9"
	req.ResponseFormat = pt.Struct(t, `{"properties":{"a":{"type":"string"}}}`)
	_, err = p.Converse(t.Context(), req)
	require.NoError(t, err)
	pt.RequireJSONEqual(t, `{"model":"gpt-5-nano","messages":[{"role":"user","content":"`+pt.PromptText+`"}]}`, srv.Only(t).Body)
	require.Contains(t, logs.String(), `"msg":"response_format ignored: not convertible to a json_schema"`)
	require.Contains(t, logs.String(), `"request_id":"req-9"`)
	require.Contains(t, logs.String(), "schema type is required and must be a string")
	require.NotContains(t, logs.String(), pt.PromptText)
	require.NotContains(t, logs.String(), pt.Key)
}

func TestClientNeverPrintsKey(t *testing.T) {
	t.Parallel()
	p, err := openai.New(component.Component{Metadata: map[string]string{"key": pt.Key}}, provider.Options{})
	require.NoError(t, err)
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%v", p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p), p.String()} {
		require.NotContains(t, s, pt.Key)
		require.Contains(t, s, "https://api.openai.com/v1/chat/completions")
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("built", "provider", p)
	require.NotContains(t, buf.String(), pt.Key)
	require.Contains(t, buf.String(), `"model":"gpt-5-nano"`)
	require.Equal(t, "gpt-5-nano", p.Model())
}

func TestKeyInTransportErrorIsRedacted(t *testing.T) {
	t.Parallel()
	p, err := openai.New(component.Component{Metadata: map[string]string{"key": pt.Key}}, provider.Options{
		Transport: pt.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			return nil, fmt.Errorf("proxy refused header %q", r.Header.Get("Authorization"))
		}),
	})
	require.NoError(t, err)
	_, err = p.Converse(t.Context(), userRequest("hi"))
	require.ErrorContains(t, err, "[REDACTED]")
	pt.RequireClean(t, err)
	require.True(t, provider.IsRetryable(err))
}

// BenchmarkConverse measures one call to a local fake over loopback HTTP: encoding,
// the round trip and decoding (the fake's own work is included).
func BenchmarkConverse(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, toolCallReply)
	}))
	b.Cleanup(srv.Close)
	p, err := openai.New(component.Component{Metadata: map[string]string{"key": "k", "endpoint": srv.URL}}, provider.Options{})
	require.NoError(b, err)
	req := userRequest(strings.Repeat("word ", 200))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Converse(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}
