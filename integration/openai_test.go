package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stretchr/testify/require"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/integration/fakeprovider"
	"github.com/parleyhq/parley/integration/stack"
)

// openaiToken is the own stack's DAPR_API_TOKEN: OpenAI's SDKs send it as their API key.
const openaiToken = "oa-test-token"

// capturingFake serves fakeprovider and keeps the body of the last chat request, so a
// test can show what the provider was sent.
type capturingFake struct {
	srv  *httptest.Server
	mu   sync.Mutex
	last []byte
}

func newCapturingFake(t testing.TB, opts fakeprovider.Options) *capturingFake {
	t.Helper()
	f := &capturingFake{}
	fake := fakeprovider.New(opts)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/chat/completions") {
			b, _ := io.ReadAll(r.Body)
			f.mu.Lock()
			f.last = b
			f.mu.Unlock()
			r.Body = io.NopCloser(strings.NewReader(string(b)))
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// lastRequest decodes the last chat request the provider saw.
func (f *capturingFake) lastRequest(t *testing.T) map[string]any {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var m map[string]any
	require.NoError(t, json.Unmarshal(f.last, &m))
	return m
}

// openaiComponent is a conversation.openai component for a fake at url, with a response
// cache TTL when ttl is set.
func openaiComponent(name, url, ttl string) string {
	c := stack.OpenAIComponent(name, url, "test-key", "fake-model")
	if ttl != "" {
		c += fmt.Sprintf("  - name: responseCacheTTL\n    value: %s\n", ttl)
	}
	return c
}

// tokenTransport adds the API token to every call, for the audit API.
type tokenTransport struct{ token string }

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("dapr-api-token", t.token)
	return http.DefaultTransport.RoundTrip(r)
}

// TestOpenAISDK drives the OpenAI-compatible API with OpenAI's official Go SDK against
// real processes, with fake OpenAI providers upstream: models, a plain chat (and its audit
// row), a tool round trip, JSON-schema output, the cache headers, scrubbing asked for by
// header and by metadata, an unknown model, a provider's 429 surfacing as a 429 with
// Retry-After, a wrong key, the official npm package doing the same, and every answer
// against OpenAI's documented schema.
func TestOpenAISDK(t *testing.T) {
	need(t)
	fake := newCapturingFake(t, fakeprovider.Options{Tokens: 4})
	limited := newCapturingFake(t, fakeprovider.Options{FailEvery: 1, FailStatus: http.StatusTooManyRequests, RetryAfter: 7 * time.Second})
	own := startOwnStack(t, map[string]string{
		"oa.yaml":         openaiComponent("oa", fake.srv.URL, ""),
		"oa-cached.yaml":  openaiComponent("oa-cached", fake.srv.URL, "5m"),
		"oa-limited.yaml": openaiComponent("oa-limited", limited.srv.URL, ""),
	}, map[string]string{"WORKER_ENDPOINT_ALLOWLIST": "127.0.0.1", "DAPR_API_TOKEN": openaiToken})
	router := own.URL("router")
	client := openai.NewClient(option.WithBaseURL(router+"/v1"), option.WithAPIKey(openaiToken), option.WithMaxRetries(0))
	audit := auditv1connect.NewAuditServiceClient(&http.Client{Transport: tokenTransport{openaiToken}}, router)
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		t.Cleanup(cancel)
		return c
	}

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx(t))
		require.NoError(t, err)
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
			require.Equal(t, "openai", m.OwnedBy)
		}
		require.Equal(t, []string{"oa", "oa-cached", "oa-limited"}, ids)
		m, err := client.Models.Get(ctx(t), "oa")
		require.NoError(t, err)
		require.Equal(t, "oa", m.ID)
	})

	t.Run("plain chat and its audit row", func(t *testing.T) {
		var resp *http.Response
		c, err := client.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{
			Model: "oa",
			Messages: []openai.ChatCompletionMessageParamUnion{
				openai.DeveloperMessage("answer briefly"), openai.SystemMessage("you are a test"), openai.UserMessage("say something"),
			},
			Temperature:         openai.Float(0.5),
			MaxCompletionTokens: openai.Int(50),
			Stop:                openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"END"}},
			Metadata:            shared.Metadata{"team": "qa"},
		}, option.WithResponseInto(&resp))
		require.NoError(t, err)
		require.Len(t, c.Choices, 1)
		require.Equal(t, "lorem ipsum dolor sit", c.Choices[0].Message.Content)
		require.Equal(t, "stop", c.Choices[0].FinishReason)
		require.Equal(t, "fake-model", c.Model)
		require.EqualValues(t, 4, c.Usage.CompletionTokens)
		require.True(t, c.Usage.PromptTokensDetails.JSON.CachedTokens.Valid())
		require.True(t, c.Usage.CompletionTokensDetails.JSON.ReasoningTokens.Valid())
		id := resp.Header.Get("Parley-Request-Id")
		require.NotEmpty(t, id)
		require.Equal(t, "chatcmpl-"+id, c.ID)
		require.Equal(t, "off", resp.Header.Get("Parley-Cache"))
		require.Contains(t, resp.Header.Get("Server-Timing"), "gateway;dur=")

		sent := fake.lastRequest(t)
		require.Equal(t, []any{"END"}, sent["stop"])
		require.Equal(t, map[string]any{"team": "qa"}, sent["metadata"])
		require.EqualValues(t, 50, sent["max_completion_tokens"])

		var row *auditv1.Conversation
		require.Eventually(t, func() bool {
			res, err := audit.GetConversation(context.Background(), &auditv1.GetConversationRequest{RequestId: id})
			if err != nil {
				return false
			}
			row = res.GetConversation()
			return true
		}, 20*time.Second, 50*time.Millisecond, "no audit row for %s", id)
		require.Equal(t, auditv1.Api_API_OPENAI, row.GetApi())
		require.Equal(t, "oa", row.GetComponent())
		require.Equal(t, auditv1.Status_STATUS_OK, row.GetStatus())
	})

	t.Run("tool round trip", func(t *testing.T) {
		tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:        "get_weather",
			Description: openai.String("the weather in a city"),
			Parameters:  shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
		})}
		params := openai.ChatCompletionNewParams{
			Model:      "oa",
			Messages:   []openai.ChatCompletionMessageParamUnion{openai.UserMessage("weather in Oslo?")},
			Tools:      tools,
			ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")},
		}
		first, err := client.Chat.Completions.New(ctx(t), params)
		require.NoError(t, err)
		require.Equal(t, "tool_calls", first.Choices[0].FinishReason)
		calls := first.Choices[0].Message.ToolCalls
		require.Len(t, calls, 1)
		require.Equal(t, "get_weather", calls[0].Function.Name)
		require.NotEmpty(t, calls[0].ID)

		params.Messages = append(params.Messages, first.Choices[0].Message.ToParam(), openai.ToolMessage(`{"temp_c":3}`, calls[0].ID))
		params.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("auto")}
		second, err := client.Chat.Completions.New(ctx(t), params)
		require.NoError(t, err)
		require.Equal(t, "stop", second.Choices[0].FinishReason)
		require.NotEmpty(t, second.Choices[0].Message.Content)

		// The provider got the whole history: the assistant's call and the tool's answer.
		msgs, _ := fake.lastRequest(t)["messages"].([]any)
		require.Len(t, msgs, 3)
		tool, _ := msgs[2].(map[string]any)
		require.Equal(t, "tool", tool["role"])
		require.Equal(t, calls[0].ID, tool["tool_call_id"])
		require.Equal(t, `{"temp_c":3}`, tool["content"])
	})

	t.Run("json schema output", func(t *testing.T) {
		c, err := client.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{
			Model:    "oa",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("answer in JSON")},
			ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
				JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{
					Name:   "reply",
					Strict: openai.Bool(true),
					Schema: map[string]any{
						"type": "object", "properties": map[string]any{"answer": map[string]any{"type": "string"}},
						"required": []string{"answer"}, "additionalProperties": false,
					},
				},
			}},
		})
		require.NoError(t, err)
		var out struct {
			Answer string `json:"answer"`
		}
		require.NoError(t, json.Unmarshal([]byte(c.Choices[0].Message.Content), &out), c.Choices[0].Message.Content)
		require.Equal(t, "lorem ipsum dolor sit", out.Answer)
		rf, _ := fake.lastRequest(t)["response_format"].(map[string]any)
		require.Equal(t, "json_schema", rf["type"])
		js, _ := rf["json_schema"].(map[string]any)
		require.Equal(t, "reply", js["name"])
		require.Equal(t, true, js["strict"])
	})

	t.Run("streaming with usage", func(t *testing.T) {
		var resp *http.Response
		stream := client.Chat.Completions.NewStreaming(ctx(t), openai.ChatCompletionNewParams{
			Model:         "oa",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream please")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		}, option.WithResponseInto(&resp))
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			require.True(t, acc.AddChunk(stream.Current()), "chunk %d", chunks)
			chunks++
		}
		require.NoError(t, stream.Err())
		require.NoError(t, stream.Close())
		require.Greater(t, chunks, 3, "role, content pieces, finish, usage")
		require.Equal(t, "lorem ipsum dolor sit", acc.Choices[0].Message.Content)
		require.Equal(t, "stop", acc.Choices[0].FinishReason)
		require.EqualValues(t, 4, acc.Usage.CompletionTokens)
		require.True(t, strings.HasPrefix(acc.ID, "chatcmpl-"), acc.ID)
		require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		sent := fake.lastRequest(t)
		require.Equal(t, true, sent["stream"], "the provider streamed too")
	})

	t.Run("streamed tool call", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx(t), openai.ChatCompletionNewParams{
			Model:    "oa",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("weather in Oslo?")},
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
				Name: "get_weather", Parameters: shared.FunctionParameters{"type": "object"},
			})},
			ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")},
		})
		var acc openai.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		require.NoError(t, stream.Err())
		require.Equal(t, "tool_calls", acc.Choices[0].FinishReason)
		require.Len(t, acc.Choices[0].Message.ToolCalls, 1)
		require.Equal(t, "get_weather", acc.Choices[0].Message.ToolCalls[0].Function.Name)
		require.NotEmpty(t, acc.Choices[0].Message.ToolCalls[0].ID)
	})

	t.Run("cache hit on the second identical call", func(t *testing.T) {
		params := openai.ChatCompletionNewParams{Model: "oa-cached", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("cache me " + nonce(t))}}
		var first, second, bypass *http.Response
		_, err := client.Chat.Completions.New(ctx(t), params, option.WithResponseInto(&first))
		require.NoError(t, err)
		require.Equal(t, "miss", first.Header.Get("Parley-Cache"))
		require.Eventually(t, func() bool {
			_, err := client.Chat.Completions.New(ctx(t), params, option.WithResponseInto(&second))
			return err == nil && second.Header.Get("Parley-Cache") == "hit"
		}, 10*time.Second, 50*time.Millisecond, "the second call never hit the cache")
		_, err = client.Chat.Completions.New(ctx(t), params, option.WithHeader("Parley-Cache", "bypass"), option.WithResponseInto(&bypass))
		require.NoError(t, err)
		require.Equal(t, "off", bypass.Header.Get("Parley-Cache"))
	})

	t.Run("scrubbing through a header and through metadata", func(t *testing.T) {
		for _, opts := range [][]option.RequestOption{
			{option.WithHeader("Parley-Scrub", "inputs")},
			{option.WithJSONSet("metadata", map[string]string{"parley.scrub": "inputs"})},
		} {
			_, err := client.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{
				Model: "oa", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("write to ann@example.com")},
			}, opts...)
			require.NoError(t, err)
			sent := fake.lastRequest(t)
			msgs := fmt.Sprint(sent["messages"])
			require.Contains(t, msgs, "write to <EMAIL_ADDRESS>")
			require.NotContains(t, msgs, "ann@example.com")
			require.Nil(t, sent["metadata"], "parley.* keys are not forwarded")
		}
	})

	t.Run("unknown model", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{
			Model: "no-such-model", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		var apiErr *openai.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusNotFound, apiErr.StatusCode)
		require.Equal(t, "model_not_found", apiErr.Code)
		require.Equal(t, "invalid_request_error", apiErr.Type)
		require.Equal(t, "model", apiErr.Param)
		_, err = client.Models.Get(ctx(t), "no-such-model")
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusNotFound, apiErr.StatusCode)
	})

	t.Run("provider 429 surfaces with Retry-After", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{
			Model: "oa-limited", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		var apiErr *openai.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusTooManyRequests, apiErr.StatusCode)
		require.Equal(t, "rate_limit_exceeded", apiErr.Code)
		require.Equal(t, "7", apiErr.Response.Header.Get("Retry-After"))
	})

	t.Run("wrong key", func(t *testing.T) {
		bad := openai.NewClient(option.WithBaseURL(router+"/v1"), option.WithAPIKey("nope"), option.WithMaxRetries(0))
		_, err := bad.Models.List(ctx(t))
		var apiErr *openai.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusUnauthorized, apiErr.StatusCode)
		require.Equal(t, "invalid_api_key", apiErr.Code)
	})

	t.Run("javascript sdk", func(t *testing.T) {
		steps := runOpenAINode(t, router, "oa", "oa-limited")
		want := []string{"plain", "tool-call", "tool-answer", "json-schema", "stream", "unknown-model", "rate-limited"}
		require.Len(t, steps, len(want))
		for i, name := range want {
			require.Equal(t, name, steps[i]["step"], "step %d", i)
		}
		require.Equal(t, "lorem ipsum dolor sit", steps[0]["content"])
		require.Equal(t, "stop", steps[0]["finish"])
		require.True(t, strings.HasPrefix(steps[0]["id"].(string), "chatcmpl-"), steps[0]["id"])
		require.Equal(t, map[string]any{"step": "tool-call", "finish": "tool_calls", "name": "get_weather", "hasId": true}, steps[1])
		require.Equal(t, "stop", steps[2]["finish"])
		require.Equal(t, map[string]any{"answer": "lorem ipsum dolor sit"}, steps[3]["parsed"])
		require.Equal(t, map[string]any{"step": "stream", "content": "lorem ipsum dolor sit", "finish": "stop",
			"completionTokens": float64(4), "manyChunks": true}, steps[4])
		require.Equal(t, map[string]any{"step": "unknown-model", "status": float64(404), "type": "invalid_request_error",
			"code": "model_not_found", "param": "model", "retryAfter": nil}, steps[5])
		require.Equal(t, float64(429), steps[6]["status"])
		require.Equal(t, "rate_limit_exceeded", steps[6]["code"])
		require.Equal(t, "7", steps[6]["retryAfter"])
	})

	t.Run("responses match OpenAI's documented schema", func(t *testing.T) {
		toolBody := `{"model":"oa","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required"}`
		tests := []struct {
			name, method, path, body string
			wantStatus               int
			schema                   map[string]string
		}{
			{"chat completion", http.MethodPost, "/v1/chat/completions", `{"model":"oa","messages":[{"role":"user","content":"x"}]}`, 200, completionSchema},
			{"chat completion with tool calls", http.MethodPost, "/v1/chat/completions", toolBody, 200, completionSchema},
			{"model list", http.MethodGet, "/v1/models", "", 200, modelListSchema},
			{"model", http.MethodGet, "/v1/models/oa", "", 200, modelSchema},
			{"error", http.MethodPost, "/v1/chat/completions", `{"model":"nope","messages":[]}`, 404, errorSchema},
			{"error without a token", http.MethodGet, "/v1/models", "", 401, errorSchema},
			{"unknown path", http.MethodGet, "/v1/embeddings", "", 404, errorSchema},
			{"wrong method", http.MethodGet, "/v1/chat/completions", "", 404, errorSchema},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req, err := http.NewRequestWithContext(ctx(t), tt.method, router+tt.path, strings.NewReader(tt.body))
				require.NoError(t, err)
				if tt.wantStatus != http.StatusUnauthorized {
					req.Header.Set("Authorization", "Bearer "+openaiToken)
				}
				res, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				defer func() { _ = res.Body.Close() }()
				b, err := io.ReadAll(res.Body)
				require.NoError(t, err)
				require.Equal(t, tt.wantStatus, res.StatusCode, string(b))
				require.Equal(t, "application/json", res.Header.Get("Content-Type"))
				var v any
				require.NoError(t, json.Unmarshal(b, &v))
				requireSchema(t, tt.schema, v)
			})
		}
		for _, body := range []string{
			`{"model":"oa","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}`,
			`{"model":"oa","messages":[{"role":"user","content":"x"}],"stream":true,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required"}`,
		} {
			t.Run("streamed chunks", func(t *testing.T) {
				req, err := http.NewRequestWithContext(ctx(t), http.MethodPost, router+"/v1/chat/completions", strings.NewReader(body))
				require.NoError(t, err)
				req.Header.Set("Authorization", "Bearer "+openaiToken)
				res, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				defer func() { _ = res.Body.Close() }()
				b, err := io.ReadAll(res.Body)
				require.NoError(t, err)
				require.Equal(t, http.StatusOK, res.StatusCode, string(b))
				require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
				events := strings.Split(strings.TrimSpace(string(b)), "\n\n")
				require.Greater(t, len(events), 2)
				require.Equal(t, "data: [DONE]", events[len(events)-1])
				for _, e := range events[:len(events)-1] {
					data, ok := strings.CutPrefix(e, "data: ")
					require.True(t, ok, e)
					var v any
					require.NoError(t, json.Unmarshal([]byte(data), &v), data)
					requireSchema(t, chunkSchema, v)
				}
			})
		}
	})
}

// runOpenAINode runs integration/openaisdk/chat.cjs (the official openai npm package,
// pinned in its package-lock.json, installed with npm ci under .data) against the router
// at base and returns the steps it printed. It skips when Node.js is missing.
func runOpenAINode(t *testing.T, base, model, limited string) []map[string]any {
	t.Helper()
	root, err := stack.RepoRoot()
	require.NoError(t, err)
	installCtx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	dir, err := stack.NodeProject(installCtx, filepath.Join(root, "integration", "openaisdk"), filepath.Join(root, ".data", "openaisdk"), t.Output())
	if errors.Is(err, stack.ErrNoNode) {
		t.Skipf("the openai npm package check needs Node.js: %v", err)
	}
	require.NoError(t, err)
	runCtx, cancelRun := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancelRun()
	cmd := exec.CommandContext(runCtx, "node", "chat.cjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PARLEY_BASE_URL="+base+"/v1", "PARLEY_API_KEY="+openaiToken,
		"PARLEY_MODEL="+model, "PARLEY_LIMITED_MODEL="+limited)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "node chat.cjs\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	var steps []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var step map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &step), line)
		steps = append(steps, step)
	}
	return steps
}

// OpenAI's documented response schemas (the OpenAPI spec, as openai-go's types carry it):
// every field by its path ("[]" for the elements of an array) with its JSON type; a type
// may name alternatives ("string|null") and a constant ("string=chat.completion"), and a
// trailing "?" marks a field that may be absent.
var (
	completionSchema = map[string]string{
		"id": "string", "object": "string=chat.completion", "created": "number", "model": "string",
		"choices":                 "array",
		"choices[]":               "object",
		"choices[].index":         "number",
		"choices[].finish_reason": "string=stop|length|tool_calls|content_filter|function_call",
		"choices[].logprobs":      "object|null",
		"choices[].message":       "object",
		"choices[].message.role":  "string=assistant", "choices[].message.content": "string|null", "choices[].message.refusal": "string|null",
		"choices[].message.annotations": "array?", "choices[].message.annotations[]": "object?",
		"choices[].message.tool_calls": "array?", "choices[].message.tool_calls[]": "object?",
		"choices[].message.tool_calls[].id": "string", "choices[].message.tool_calls[].type": "string=function",
		"choices[].message.tool_calls[].function":           "object",
		"choices[].message.tool_calls[].function.name":      "string",
		"choices[].message.tool_calls[].function.arguments": "string",
		"usage": "object?", "usage.prompt_tokens": "number", "usage.completion_tokens": "number", "usage.total_tokens": "number",
		"usage.prompt_tokens_details": "object?", "usage.prompt_tokens_details.cached_tokens": "number?",
		"usage.prompt_tokens_details.audio_tokens": "number?",
		"usage.completion_tokens_details":          "object?", "usage.completion_tokens_details.reasoning_tokens": "number?",
		"usage.completion_tokens_details.audio_tokens":               "number?",
		"usage.completion_tokens_details.accepted_prediction_tokens": "number?",
		"usage.completion_tokens_details.rejected_prediction_tokens": "number?",
		"system_fingerprint": "string|null?", "service_tier": "string|null?",
	}
	chunkSchema = map[string]string{
		"id": "string", "object": "string=chat.completion.chunk", "created": "number", "model": "string",
		"choices": "array", "choices[]": "object?",
		"choices[].index": "number", "choices[].delta": "object",
		"choices[].finish_reason": "string|null=stop|length|tool_calls|content_filter|function_call",
		"choices[].logprobs":      "object|null?",
		"choices[].delta.role":    "string=assistant?", "choices[].delta.content": "string|null?", "choices[].delta.refusal": "string|null?",
		"choices[].delta.tool_calls": "array?", "choices[].delta.tool_calls[]": "object?",
		"choices[].delta.tool_calls[].index": "number", "choices[].delta.tool_calls[].id": "string?",
		"choices[].delta.tool_calls[].type": "string=function?", "choices[].delta.tool_calls[].function": "object?",
		"choices[].delta.tool_calls[].function.name": "string?", "choices[].delta.tool_calls[].function.arguments": "string?",
		"usage": "object|null?", "usage.prompt_tokens": "number", "usage.completion_tokens": "number", "usage.total_tokens": "number",
		"usage.prompt_tokens_details": "object?", "usage.prompt_tokens_details.cached_tokens": "number?",
		"usage.prompt_tokens_details.audio_tokens": "number?",
		"usage.completion_tokens_details":          "object?", "usage.completion_tokens_details.reasoning_tokens": "number?",
		"usage.completion_tokens_details.audio_tokens":               "number?",
		"usage.completion_tokens_details.accepted_prediction_tokens": "number?",
		"usage.completion_tokens_details.rejected_prediction_tokens": "number?",
		"system_fingerprint": "string|null?", "service_tier": "string|null?",
	}
	modelSchema = map[string]string{
		"id": "string", "object": "string=model", "created": "number", "owned_by": "string",
	}
	modelListSchema = map[string]string{
		"object": "string=list", "data": "array", "data[]": "object",
		"data[].id": "string", "data[].object": "string=model", "data[].created": "number", "data[].owned_by": "string",
	}
	errorSchema = map[string]string{
		"error": "object", "error.message": "string", "error.type": "string", "error.param": "string|null", "error.code": "string|null",
	}
)

// requireSchema checks v against schema: every field v has is documented with its type,
// and every required field whose parent is present is present.
func requireSchema(t *testing.T, schema map[string]string, v any) {
	t.Helper()
	// seen holds the fields present; holding marks those whose value is not null (a null
	// object has no fields to require).
	seen, holding := map[string]bool{}, map[string]bool{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		if path != "" {
			seen[path] = true
			holding[path] = v != nil
			spec, ok := schema[path]
			require.True(t, ok, "field %s is not in OpenAI's schema", path)
			requireType(t, path, strings.TrimSuffix(spec, "?"), v)
		}
		switch x := v.(type) {
		case map[string]any:
			for k, child := range x {
				if path == "" {
					walk(k, child)
				} else {
					walk(path+"."+k, child)
				}
			}
		case []any:
			for _, child := range x {
				walk(path+"[]", child)
			}
		}
	}
	walk("", v)
	var missing []string
	for path, spec := range schema {
		if strings.HasSuffix(spec, "?") || seen[path] {
			continue
		}
		parent := path[:max(strings.LastIndexAny(path, ".["), 0)]
		if parent == "" || holding[parent] && !strings.HasSuffix(path, "[]") {
			missing = append(missing, path)
		}
	}
	sort.Strings(missing)
	require.Empty(t, missing, "required fields missing")
}

func requireType(t *testing.T, path, spec string, v any) {
	t.Helper()
	typ, constant, _ := strings.Cut(spec, "=")
	var got string
	switch v.(type) {
	case nil:
		got = "null"
	case string:
		got = "string"
	case float64:
		got = "number"
	case bool:
		got = "boolean"
	case []any:
		got = "array"
	case map[string]any:
		got = "object"
	}
	require.Contains(t, strings.Split(typ, "|"), got, "%s: %v", path, v)
	if constant != "" && got == "string" {
		require.Contains(t, strings.Split(constant, "|"), v, "%s", path)
	}
	if got == "number" {
		f, _ := v.(float64)
		require.Equal(t, float64(int64(f)), f, "%s is an integer", path)
	}
}
