package deepseek_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/deepseek"
	pt "github.com/parleyhq/parley/services/provider-worker/provider/internal/providertest"
)

func newDeepSeek(c component.Component, opts provider.Options) (pt.Converser, error) {
	return deepseek.New(c, opts)
}

// An answer as DeepSeek's API reference shows it, with its cache-hit counters.
const reply = `{
  "id": "930c60df-bf64-41c9-a88e-3ec75f81e00e",
  "object": "chat.completion",
  "created": 1705651092,
  "model": "deepseek-chat",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
               "logprobs": null, "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 16, "completion_tokens": 10, "total_tokens": 26,
            "prompt_tokens_details": {"cached_tokens": 0},
            "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 16},
  "system_fingerprint": "fp_44709d6fcb"
}`

func want() *providerv1.Response {
	return &providerv1.Response{
		Model:   "deepseek-chat",
		Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "Hello! How can I help you today?"}},
		Usage:   &providerv1.Usage{PromptTokens: 16, CompletionTokens: 10, TotalTokens: 26},
	}
}

func TestRequests(t *testing.T) {
	t.Parallel()
	hello := &providerv1.Request{Messages: []*providerv1.Message{
		pt.Msg(providerv1.Role_ROLE_DEVELOPER, pt.Text("Be brief.")),
		pt.Msg(providerv1.Role_ROLE_USER, pt.Text("Hello"), pt.Text("there")),
	}}
	capped := proto.Clone(hello).(*providerv1.Request)
	capped.MaxTokens = proto.Int64(50)
	capped.Metadata = map[string]string{"k": "v"}
	pt.RunRequestCases(t, newDeepSeek, []pt.RequestCase{
		{
			Name:       "defaults; developer is system; parts joined",
			Metadata:   map[string]string{"key": "sk-ds", "endpoint": "{server}"},
			Env:        map[string]string{"OPENAI_MODEL": "ignored", "DEEPSEEK_MODEL": "ignored"},
			Request:    hello,
			Reply:      reply,
			WantPath:   "/chat/completions",
			WantHeader: http.Header{"Authorization": {"Bearer sk-ds"}},
			WantBody: `{"model":"deepseek-chat","messages":[{"role":"system","content":"Be brief."},
				{"role":"user","content":"Hello\nthere"}]}`,
			Want: want(),
		},
		{
			Name:     "maxTokens metadata is the default max_tokens",
			Metadata: map[string]string{"key": "sk-ds", "endpoint": "{server}/", "model": "deepseek-reasoner", "maxTokens": "1024"},
			Request:  hello,
			Reply:    reply,
			WantPath: "/chat/completions",
			WantBody: `{"model":"deepseek-reasoner","max_tokens":1024,"messages":[{"role":"system","content":"Be brief."},
				{"role":"user","content":"Hello\nthere"}]}`,
			Want: want(),
		},
		{
			Name:     "the request's max_tokens wins; metadata forwarded",
			Metadata: map[string]string{"key": "sk-ds", "endpoint": "{server}", "maxTokens": "1024"},
			Request:  capped,
			Reply:    reply,
			WantPath: "/chat/completions",
			WantBody: `{"model":"deepseek-chat","max_tokens":50,"metadata":{"k":"v"},"messages":[{"role":"system","content":"Be brief."},
				{"role":"user","content":"Hello\nthere"}]}`,
			Want: want(),
		},
	})
}

func TestDefaultEndpoint(t *testing.T) {
	t.Parallel()
	got, h := pt.DefaultURL(t, newDeepSeek, map[string]string{"key": "sk-ds"}, nil)
	require.Equal(t, "https://api.deepseek.com/chat/completions", got)
	require.Equal(t, "Bearer sk-ds", h.Get("Authorization"))
}

func TestErrors(t *testing.T) {
	t.Parallel()
	pt.RunErrorCases(t, func(t *testing.T, endpoint, key string, now func() time.Time) pt.Converser {
		p, err := deepseek.New(component.Component{Metadata: map[string]string{"key": key, "endpoint": endpoint}}, provider.Options{Now: now})
		require.NoError(t, err)
		return p
	}, pt.OpenAIErrorBody)
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		md      map[string]string
		wantErr string
	}{
		{"no key", map[string]string{}, `deepseek: metadata "key" is required`},
		{"maxTokens not a number", map[string]string{"key": "k", "maxTokens": "lots"}, `deepseek: metadata maxTokens: "lots" is not a non-negative integer`},
		{"maxTokens negative", map[string]string{"key": "k", "maxTokens": "-1"}, "not a non-negative integer"},
		{"endpoint not http", map[string]string{"key": "k", "endpoint": "unix:///run/ds.sock"}, "scheme must be http or https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := deepseek.New(component.Component{Metadata: tt.md}, provider.Options{})
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
	_, err := deepseek.New(component.Component{Metadata: map[string]string{"key": "k"}},
		provider.Options{EndpointAllowlist: []string{"api.openai.com"}})
	require.ErrorContains(t, err, `host "api.deepseek.com" is not in WORKER_ENDPOINT_ALLOWLIST`)
}
