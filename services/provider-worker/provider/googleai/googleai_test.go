package googleai_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/googleai"
	pt "github.com/parleyhq/parley/services/provider-worker/provider/internal/providertest"
)

func newGoogleAI(c component.Component, opts provider.Options) (pt.Converser, error) {
	return googleai.New(c, opts)
}

// An answer of Gemini's OpenAI-compatible endpoint (it names no id prefix and reports
// reasoning tokens of thinking models).
const reply = `{
  "choices": [{"finish_reason": "stop", "index": 0,
               "message": {"content": "Paris.", "role": "assistant"}}],
  "created": 1753000000,
  "id": "abc123",
  "model": "gemini-2.5-flash-lite",
  "object": "chat.completion",
  "usage": {"completion_tokens": 2, "prompt_tokens": 9, "total_tokens": 40,
            "completion_tokens_details": {"reasoning_tokens": 29}}
}`

func TestRequests(t *testing.T) {
	t.Parallel()
	req := &providerv1.Request{
		Messages:    []*providerv1.Message{pt.Msg(providerv1.Role_ROLE_USER, pt.Text("Capital of France?"))},
		Temperature: 0.3,
		Stop:        []string{"."},
	}
	want := &providerv1.Response{
		Model:   "gemini-2.5-flash-lite",
		Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "Paris."}},
		Usage:   &providerv1.Usage{PromptTokens: 9, CompletionTokens: 2, TotalTokens: 40, CompletionReasoningTokens: 29},
	}
	pt.RunRequestCases(t, newGoogleAI, []pt.RequestCase{
		{
			Name:         "defaults",
			Metadata:     map[string]string{"key": "AIza-test", "endpoint": "{server}/v1beta/openai/"},
			Request:      req,
			Reply:        reply,
			WantPath:     "/v1beta/openai/chat/completions",
			WantHeader:   http.Header{"Authorization": {"Bearer AIza-test"}},
			WantNoHeader: []string{"X-Goog-Api-Key"},
			WantBody:     `{"model":"gemini-2.5-flash-lite","messages":[{"role":"user","content":"Capital of France?"}],"temperature":0.3,"stop":["."]}`,
			Want:         want,
		},
		{
			Name:     "GOOGLEAI_MODEL wins over the model metadata",
			Metadata: map[string]string{"key": "AIza-test", "endpoint": "{server}", "model": "gemini-2.5-pro"},
			Env:      map[string]string{"GOOGLEAI_MODEL": "gemini-2.5-flash"},
			Request:  req,
			Reply:    reply,
			WantPath: "/chat/completions",
			WantBody: `{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"Capital of France?"}],"temperature":0.3,"stop":["."]}`,
			Want:     want,
		},
	})
}

func TestDefaultEndpoint(t *testing.T) {
	t.Parallel()
	got, h := pt.DefaultURL(t, newGoogleAI, map[string]string{"key": "AIza-test", "model": "gemini-2.0-flash"}, nil)
	require.Equal(t, "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions", got)
	require.Equal(t, "Bearer AIza-test", h.Get("Authorization"))
	require.NotContains(t, got, "AIza-test", "the key never goes in the URL")
}

// geminiErrorBody is the shape Gemini's OpenAI-compatible endpoint answers errors with.
func geminiErrorBody(typ, code, message string) string {
	return fmt.Sprintf(`[{"error":{"code":%q,"message":%q,"status":%q}}]`, code, message, typ)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	pt.RunErrorCases(t, func(t *testing.T, endpoint, key string, now func() time.Time) pt.Converser {
		p, err := googleai.New(component.Component{Metadata: map[string]string{"key": key, "endpoint": endpoint}}, provider.Options{Now: now})
		require.NoError(t, err)
		return p
	}, geminiErrorBody)
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	_, err := googleai.New(component.Component{}, provider.Options{})
	require.ErrorContains(t, err, `googleai: metadata "key" is required`)
	_, err = googleai.New(component.Component{Metadata: map[string]string{"key": "k"}},
		provider.Options{EndpointAllowlist: []string{"*.googleapis.com"}})
	require.NoError(t, err)
	_, err = googleai.New(component.Component{Metadata: map[string]string{"key": "k", "endpoint": "gopher://x"}}, provider.Options{})
	require.ErrorContains(t, err, "scheme must be http or https")
}
