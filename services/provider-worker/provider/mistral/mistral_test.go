package mistral_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	pt "github.com/parleyhq/parley/services/provider-worker/provider/internal/providertest"
	"github.com/parleyhq/parley/services/provider-worker/provider/mistral"
)

func newMistral(c component.Component, opts provider.Options) (pt.Converser, error) {
	return mistral.New(c, opts)
}

// An answer as Mistral's API reference shows it.
const reply = `{
  "id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
  "object": "chat.completion",
  "model": "open-mistral-7b",
  "usage": {"prompt_tokens": 16, "completion_tokens": 34, "total_tokens": 50},
  "created": 1702256327,
  "choices": [{"index": 0,
               "message": {"content": "It is sunny in Paris.", "tool_calls": null, "prefix": false, "role": "assistant"},
               "finish_reason": "stop"}]
}`

const toolReply = `{
  "id": "b7f1", "object": "chat.completion", "model": "mistral-large-latest", "created": 1702256327,
  "usage": {"prompt_tokens": 80, "completion_tokens": 22, "total_tokens": 102},
  "choices": [{"index": 0, "finish_reason": "tool_calls",
               "message": {"role": "assistant", "content": "",
                           "tool_calls": [{"id": "D681PevKs", "type": "function",
                                           "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}}]
}`

func TestRequests(t *testing.T) {
	t.Parallel()
	conversation := &providerv1.Request{
		Messages: []*providerv1.Message{
			pt.Msg(providerv1.Role_ROLE_SYSTEM, pt.Text("You are terse.")),
			pt.Msg(providerv1.Role_ROLE_DEVELOPER, pt.Text("Answer in French.")),
			pt.Msg(providerv1.Role_ROLE_USER, pt.Text("What is the weather"), pt.Text("in Paris?")),
			pt.Msg(providerv1.Role_ROLE_ASSISTANT, pt.ToolCall("call_1", "get_weather", `{"city":"Paris"}`)),
			pt.Msg(providerv1.Role_ROLE_TOOL, pt.ToolResult("call_1", "get_weather", "sunny"), pt.ToolResult("call_2", "get_time", "noon")),
			pt.Msg(providerv1.Role_ROLE_TOOL, pt.ToolResult("", "", "a"), pt.ToolResult("call_3", "f", "b")),
			pt.Msg(providerv1.Role_ROLE_TOOL),
			pt.Msg(providerv1.Role_ROLE_ASSISTANT, pt.Text("Let me check."), pt.ToolCall("", "noop", "")),
		},
		Tools: []*providerv1.Tool{{Type: "function", Name: "get_weather", Description: "Weather by city",
			Parameters: pt.Struct(t, `{"type":"object","properties":{"city":{"type":"string"}}}`)}},
		ToolChoice:           "any",
		Temperature:          0.2,
		MaxTokens:            proto.Int64(64),
		Stop:                 []string{"###"},
		ResponseFormat:       pt.Struct(t, `{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"]}`),
		Metadata:             map[string]string{"user": "u1"},
		PromptCacheRetention: durationpb.New(time.Hour),
	}
	pt.RunRequestCases(t, newMistral, []pt.RequestCase{
		{
			Name:       "tool calls and results as text, no metadata, usage mapped",
			Metadata:   map[string]string{"key": "mistral-key", "endpoint": "{server}/v1"},
			Env:        map[string]string{"OPENAI_MODEL": "ignored"},
			Request:    conversation,
			Reply:      reply,
			WantPath:   "/v1/chat/completions",
			WantHeader: http.Header{"Authorization": {"Bearer mistral-key"}, "Accept": {"application/json"}},
			WantBody: `{"model":"open-mistral-7b","messages":[
				{"role":"system","content":"You are terse."},
				{"role":"system","content":"Answer in French."},
				{"role":"user","content":"What is the weather\nin Paris?"},
				{"role":"assistant","content":"Tool call [ID: call_1]: get_weather({\"city\":\"Paris\"})"},
				{"role":"user","content":"Tool response [ID: call_1, Name: get_weather]: sunny\nnoon"},
				{"role":"user","content":"Tool response [ID: call_3, Name: f]: a\nb"},
				{"role":"assistant","content":"Let me check.\nTool call [ID: ]: noop()"}],
				"temperature":0.2,"max_tokens":64,"stop":["###"],
				"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather by city",
					"parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
				"tool_choice":"required",
				"response_format":{"type":"json_schema","json_schema":{"name":"response","strict":false,
					"schema":{"type":"object","additionalProperties":false,"required":["answer"],"properties":{"answer":{"type":"string"}}}}}}`,
			Want: &providerv1.Response{
				Model:   "open-mistral-7b",
				Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "It is sunny in Paris."}},
				Usage:   &providerv1.Usage{PromptTokens: 16, CompletionTokens: 34, TotalTokens: 50},
			},
		},
		{
			Name:     "MISTRAL_MODEL wins; named tool choice; tool calls in the answer",
			Metadata: map[string]string{"key": "mistral-key", "endpoint": "{server}/v1", "model": "mistral-small-latest"},
			Env:      map[string]string{"MISTRAL_MODEL": "mistral-large-latest"},
			Request: &providerv1.Request{
				Messages:   []*providerv1.Message{pt.Msg(providerv1.Role_ROLE_USER, pt.Text("Weather in Paris?"))},
				Tools:      []*providerv1.Tool{{Type: "function", Name: "get_weather"}},
				ToolChoice: "get_weather",
			},
			Reply:    toolReply,
			WantPath: "/v1/chat/completions",
			WantBody: `{"model":"mistral-large-latest","messages":[{"role":"user","content":"Weather in Paris?"}],
				"tools":[{"type":"function","function":{"name":"get_weather"}}],
				"tool_choice":{"type":"function","function":{"name":"get_weather"}}}`,
			Want: &providerv1.Response{
				Model: "mistral-large-latest",
				Choices: []*providerv1.Choice{{FinishReason: "tool_calls", ToolCalls: []*providerv1.ToolCall{
					{Id: "D681PevKs", Type: "function", Name: "get_weather", Arguments: `{"city": "Paris"}`},
				}}},
				Usage: &providerv1.Usage{PromptTokens: 80, CompletionTokens: 22, TotalTokens: 102},
			},
		},
	})
}

func TestDefaultEndpoint(t *testing.T) {
	t.Parallel()
	got, h := pt.DefaultURL(t, newMistral, map[string]string{"key": "mistral-key"}, nil)
	require.Equal(t, "https://api.mistral.ai/v1/chat/completions", got)
	require.Equal(t, "Bearer mistral-key", h.Get("Authorization"))
}

// mistralErrorBody is the shape of Mistral's error answers.
func mistralErrorBody(typ, code, message string) string {
	return fmt.Sprintf(`{"object":"error","message":%q,"type":%q,"param":null,"code":%q}`, message, typ, code)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	pt.RunErrorCases(t, func(t *testing.T, endpoint, key string, now func() time.Time) pt.Converser {
		p, err := mistral.New(component.Component{Metadata: map[string]string{"key": key, "endpoint": endpoint}}, provider.Options{Now: now})
		require.NoError(t, err)
		return p
	}, mistralErrorBody)
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	_, err := mistral.New(component.Component{Metadata: map[string]string{"model": "m"}}, provider.Options{})
	require.ErrorContains(t, err, `mistral: metadata "key" is required`)
	_, err = mistral.New(component.Component{Metadata: map[string]string{"key": "k", "endpoint": "ws://x"}}, provider.Options{})
	require.ErrorContains(t, err, "scheme must be http or https")
}
