package huggingface_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/huggingface"
	pt "github.com/parleyhq/parley/services/provider-worker/provider/internal/providertest"
)

func newHF(c component.Component, opts provider.Options) (pt.Converser, error) {
	return huggingface.New(c, opts)
}

// An answer of the router's OpenAI-compatible endpoint (TGI shape).
const reply = `{
  "object": "chat.completion", "id": "", "created": 1741000000,
  "model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "system_fingerprint": "3.2.1-sha",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "<think>\n</think>\nHi!"},
               "logprobs": null, "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 8, "completion_tokens": 7, "total_tokens": 15}
}`

func TestRequests(t *testing.T) {
	t.Parallel()
	req := &providerv1.Request{
		Messages:   []*providerv1.Message{pt.Msg(providerv1.Role_ROLE_USER, pt.Text("Hi"))},
		Tools:      []*providerv1.Tool{{Type: "function", Name: "f", Description: "does f"}},
		ToolChoice: "f",
	}
	resp := &providerv1.Response{
		Model:   "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
		Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "<think>\n</think>\nHi!"}},
		Usage:   &providerv1.Usage{PromptTokens: 8, CompletionTokens: 7, TotalTokens: 15},
	}
	body := func(model string) string {
		return `{"model":"` + model + `","messages":[{"role":"user","content":"Hi"}],
			"tools":[{"type":"function","function":{"name":"f","description":"does f"}}],
			"tool_choice":{"type":"function","function":{"name":"f"}}}`
	}
	pt.RunRequestCases(t, newHF, []pt.RequestCase{
		{
			Name:     "{{model}} in the endpoint",
			Metadata: map[string]string{"key": "hf_x", "endpoint": "{server}/hf-inference/models/{{model}}/v1"},
			Request:  req,
			Reply:    reply,
			WantPath: "/hf-inference/models/deepseek-ai/DeepSeek-R1-Distill-Qwen-32B/v1/chat/completions",
			WantBody: body("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"),
			Want:     resp,
		},
		{
			Name:     "HUGGINGFACE_MODEL wins over the model metadata",
			Metadata: map[string]string{"key": "hf_x", "endpoint": "{server}/v1", "model": "meta-llama/Llama-3.1-8B-Instruct"},
			Env:      map[string]string{"HUGGINGFACE_MODEL": "Qwen/Qwen2.5-7B-Instruct"},
			Request:  req,
			Reply:    reply,
			WantPath: "/v1/chat/completions",
			WantBody: body("Qwen/Qwen2.5-7B-Instruct"),
			Want:     resp,
		},
	})
}

func TestDefaultEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		md, env map[string]string
		want    string
	}{
		{"default model", map[string]string{"key": "hf_x"}, nil,
			"https://router.huggingface.co/hf-inference/models/deepseek-ai/DeepSeek-R1-Distill-Qwen-32B/v1/chat/completions"},
		{"model metadata", map[string]string{"key": "hf_x", "model": "google/gemma-2-2b-it"}, nil,
			"https://router.huggingface.co/hf-inference/models/google/gemma-2-2b-it/v1/chat/completions"},
		{"model variable", map[string]string{"key": "hf_x", "model": "x/y"}, map[string]string{"HUGGINGFACE_MODEL": "a/b"},
			"https://router.huggingface.co/hf-inference/models/a/b/v1/chat/completions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, h := pt.DefaultURL(t, newHF, tt.md, tt.env)
			require.Equal(t, tt.want, got)
			require.Equal(t, "Bearer hf_x", h.Get("Authorization"))
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	pt.RunErrorCases(t, func(t *testing.T, endpoint, key string, now func() time.Time) pt.Converser {
		p, err := huggingface.New(component.Component{Metadata: map[string]string{"key": key, "endpoint": endpoint}}, provider.Options{Now: now})
		require.NoError(t, err)
		return p
	}, pt.OpenAIErrorBody)
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	_, err := huggingface.New(component.Component{}, provider.Options{})
	require.ErrorContains(t, err, `huggingface: metadata "key" is required`)
	_, err = huggingface.New(component.Component{Metadata: map[string]string{"key": "k"}},
		provider.Options{EndpointAllowlist: []string{"api-inference.huggingface.co"}})
	require.ErrorContains(t, err, `host "router.huggingface.co" is not in WORKER_ENDPOINT_ALLOWLIST`)
}
