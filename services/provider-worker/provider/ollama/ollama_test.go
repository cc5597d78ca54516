package ollama_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	pt "github.com/parleyhq/parley/services/provider-worker/provider/internal/providertest"
	"github.com/parleyhq/parley/services/provider-worker/provider/ollama"
)

func newOllama(c component.Component, opts provider.Options) (pt.Converser, error) {
	return ollama.New(c, opts)
}

// An answer of Ollama's OpenAI-compatible endpoint, a tool call included.
const reply = `{
  "id": "chatcmpl-392", "object": "chat.completion", "created": 1741000000,
  "model": "llama3.2:latest", "system_fingerprint": "fp_ollama",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "",
               "tool_calls": [{"id": "call_b5zqu2q1", "index": 0, "type": "function",
                               "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
               "finish_reason": "tool_calls"}],
  "usage": {"prompt_tokens": 150, "completion_tokens": 20, "total_tokens": 170}
}`

func TestRequests(t *testing.T) {
	t.Parallel()
	req := &providerv1.Request{
		Messages: []*providerv1.Message{
			pt.Msg(providerv1.Role_ROLE_USER, pt.Text("Weather in Oslo?")),
			pt.Msg(providerv1.Role_ROLE_ASSISTANT, pt.ToolCall("call_1", "get_weather", `{"city":"Oslo"}`)),
			pt.Msg(providerv1.Role_ROLE_TOOL, pt.ToolResult("call_1", "get_weather", "-3C")),
		},
		Tools:      []*providerv1.Tool{{Type: "function", Name: "get_weather", Parameters: pt.Struct(t, `{"type":"object"}`)}},
		ToolChoice: "required",
	}
	resp := &providerv1.Response{
		Model: "llama3.2:latest",
		Choices: []*providerv1.Choice{{FinishReason: "tool_calls", ToolCalls: []*providerv1.ToolCall{
			{Id: "call_b5zqu2q1", Type: "function", Name: "get_weather", Arguments: `{"city":"Oslo"}`},
		}}},
		Usage: &providerv1.Usage{PromptTokens: 150, CompletionTokens: 20, TotalTokens: 170},
	}
	body := func(model string) string {
		return `{"model":"` + model + `","messages":[
			{"role":"user","content":"Weather in Oslo?"},
			{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
			{"role":"tool","tool_call_id":"call_1","content":"-3C"}],
			"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],
			"tool_choice":"required"}`
	}
	pt.RunRequestCases(t, newOllama, []pt.RequestCase{
		{
			Name:       "no key: the default key is sent",
			Metadata:   map[string]string{"endpoint": "{server}/v1"},
			Request:    req,
			Reply:      reply,
			WantPath:   "/v1/chat/completions",
			WantHeader: http.Header{"Authorization": {"Bearer ollama"}},
			WantBody:   body("llama3.2:latest"),
			Want:       resp,
		},
		{
			Name:       "key, OLLAMA_MODEL wins",
			Metadata:   map[string]string{"endpoint": "{server}/v1", "key": "proxy-key", "model": "qwen3:8b"},
			Env:        map[string]string{"OLLAMA_MODEL": "gemma3:4b"},
			Request:    req,
			Reply:      reply,
			WantPath:   "/v1/chat/completions",
			WantHeader: http.Header{"Authorization": {"Bearer proxy-key"}},
			WantBody:   body("gemma3:4b"),
			Want:       resp,
		},
	})
}

func TestDefaultEndpoint(t *testing.T) {
	t.Parallel()
	got, h := pt.DefaultURL(t, newOllama, nil, nil)
	require.Equal(t, "http://localhost:11434/v1/chat/completions", got)
	require.Equal(t, "Bearer ollama", h.Get("Authorization"))
}

func TestErrors(t *testing.T) {
	t.Parallel()
	pt.RunErrorCases(t, func(t *testing.T, endpoint, key string, now func() time.Time) pt.Converser {
		p, err := ollama.New(component.Component{Metadata: map[string]string{"key": key, "endpoint": endpoint}}, provider.Options{Now: now})
		require.NoError(t, err)
		return p
	}, pt.OpenAIErrorBody)
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	_, err := ollama.New(component.Component{Metadata: map[string]string{"endpoint": "localhost:11434"}}, provider.Options{})
	require.ErrorContains(t, err, "scheme must be http or https")
	_, err = ollama.New(component.Component{}, provider.Options{EndpointAllowlist: []string{"localhost:11434"}})
	require.NoError(t, err)
	_, err = ollama.New(component.Component{}, provider.Options{EndpointAllowlist: []string{"localhost:8080"}})
	require.ErrorContains(t, err, "not in WORKER_ENDPOINT_ALLOWLIST")
}

func TestPlaceholderKeyIsNotRedacted(t *testing.T) {
	t.Parallel()
	srv := pt.NewServer(t, pt.Reply{Status: http.StatusInternalServerError, Body: `{"error":{"type":"api_error"}}`})
	p, err := ollama.New(component.Component{Metadata: map[string]string{"endpoint": srv.URL}}, provider.Options{})
	require.NoError(t, err)
	_, err = p.Converse(t.Context(), pt.Request())
	require.EqualError(t, err, "ollama: HTTP 500 Internal Server Error (type=api_error)")
	require.True(t, provider.IsRetryable(err))
}
