package fakeprovider_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/integration/fakeprovider"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/openai"
)

func clock() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }

func start(t testing.TB, opts fakeprovider.Options) *httptest.Server {
	t.Helper()
	if opts.Now == nil {
		opts.Now = clock
	}
	srv := httptest.NewServer(fakeprovider.New(opts))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url string, header http.Header, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = res.Body.Close() }()
	data, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, data
}

const hello = `{"model":"gpt-test","messages":[{"role":"system","content":"be brief"},
	{"role":"user","content":[{"type":"text","text":"hello there"},{"type":"text","text":"friend"}]}]}`

func TestCompletions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts fakeprovider.Options
		path string
		body string
		want string
	}{
		{
			name: "defaults",
			path: "/v1/chat/completions",
			body: hello,
			want: `{"id":"chatcmpl-fake-1","object":"chat.completion","created":1795608000,"model":"gpt-test",
				"choices":[{"index":0,"message":{"role":"assistant","content":"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et"},"finish_reason":"stop"}],
				"usage":{"prompt_tokens":5,"completion_tokens":16,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "tokens, model default, azure path",
			opts: fakeprovider.Options{Tokens: 3, Model: "my-model"},
			path: "/openai/deployments/x/chat/completions",
			body: `{"messages":[{"role":"user","content":"hi"}]}`,
			want: `{"id":"chatcmpl-fake-1","object":"chat.completion","created":1795608000,"model":"my-model",
				"choices":[{"index":0,"message":{"role":"assistant","content":"lorem ipsum dolor"},"finish_reason":"stop"}],
				"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "max_tokens caps the answer",
			opts: fakeprovider.Options{Tokens: 30},
			path: "/chat/completions",
			body: `{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`,
			want: `{"id":"chatcmpl-fake-1","object":"chat.completion","created":1795608000,"model":"m",
				"choices":[{"index":0,"message":{"role":"assistant","content":"lorem ipsum"},"finish_reason":"length"}],
				"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "max_completion_tokens wins over max_tokens",
			path: "/v1/chat/completions",
			body: `{"model":"m","max_tokens":5,"max_completion_tokens":1,"messages":[{"role":"user","content":"hi"}]}`,
			want: `{"id":"chatcmpl-fake-1","object":"chat.completion","created":1795608000,"model":"m",
				"choices":[{"index":0,"message":{"role":"assistant","content":"lorem"},"finish_reason":"length"}],
				"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "no tokens",
			opts: fakeprovider.Options{Tokens: -1},
			path: "/v1/chat/completions/",
			body: `{"model":"m","messages":[{"role":"user","content":null}]}`,
			want: `{"id":"chatcmpl-fake-1","object":"chat.completion","created":1795608000,"model":"m",
				"choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"stop"}],
				"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "tool_choice required calls the first tool",
			path: "/v1/chat/completions",
			body: `{"model":"m","messages":[{"role":"user","content":"weather?"}],"tool_choice":"required",
				"tools":[{"type":"function","function":{"name":"get_weather"}},{"type":"function","function":{"name":"get_time"}}]}`,
			want: `{"id":"chatcmpl-fake-1","object":"chat.completion","created":1795608000,"model":"m",
				"choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"call_fake_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},"finish_reason":"tool_calls"}],
				"usage":{"prompt_tokens":1,"completion_tokens":16,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "a named tool is called",
			path: "/v1/chat/completions",
			body: `{"model":"m","messages":[{"role":"user","content":"time?"}],"tool_choice":{"type":"function","function":{"name":"get_time"}},
				"tools":[{"type":"function","function":{"name":"get_weather"}},{"type":"function","function":{"name":"get_time"}}]}`,
			want: `{"id":"chatcmpl-fake-1","object":"chat.completion","created":1795608000,"model":"m",
				"choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"call_fake_1","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":"tool_calls"}],
				"usage":{"prompt_tokens":1,"completion_tokens":16,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "a JSON response format answers a JSON object",
			opts: fakeprovider.Options{Tokens: 2},
			path: "/v1/chat/completions",
			body: `{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object"}}}}`,
			want: `{"id":"chatcmpl-fake-1","object":"chat.completion","created":1795608000,"model":"m",
				"choices":[{"index":0,"message":{"role":"assistant","content":"{\"answer\":\"lorem ipsum\"}"},"finish_reason":"stop"}],
				"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "tool_choice auto answers text",
			opts: fakeprovider.Options{Tokens: 1},
			path: "/v1/chat/completions",
			body: `{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"auto","tools":[{"type":"function","function":{"name":"f"}}]}`,
			want: `{"id":"chatcmpl-fake-1","object":"chat.completion","created":1795608000,"model":"m",
				"choices":[{"index":0,"message":{"role":"assistant","content":"lorem"},"finish_reason":"stop"}],
				"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := start(t, tt.opts)
			res, data := post(t, srv.URL+tt.path, nil, tt.body)
			require.Equal(t, http.StatusOK, res.StatusCode, string(data))
			require.Equal(t, "application/json", res.Header.Get("Content-Type"))
			require.JSONEq(t, tt.want, string(data))
		})
	}
}

func TestStreaming(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		opts      fakeprovider.Options
		body      string
		want      fakeprovider.Stream
		wantCalls []fakeprovider.ToolCall
	}{
		{
			name: "content and usage",
			opts: fakeprovider.Options{Tokens: 4, TokenInterval: time.Millisecond},
			body: `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a b c"}]}`,
			want: fakeprovider.Stream{
				ID: "chatcmpl-fake-1", Model: "m", Content: "lorem ipsum dolor sit", FinishReason: "stop", Chunks: 7, Done: true,
				Usage: &fakeprovider.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7, PromptTokensDetails: &fakeprovider.PromptTokensDetails{}},
			},
		},
		{
			name: "no usage unless asked, capped",
			opts: fakeprovider.Options{Tokens: 4},
			body: `{"model":"m","stream":true,"max_tokens":2,"messages":[{"role":"user","content":"a"}]}`,
			want: fakeprovider.Stream{ID: "chatcmpl-fake-1", Model: "m", Content: "lorem ipsum", FinishReason: "length", Chunks: 4, Done: true},
		},
		{
			name: "tool call",
			body: `{"model":"m","stream":true,"tool_choice":"required","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"a"}]}`,
			want: fakeprovider.Stream{
				ID: "chatcmpl-fake-1", Model: "m", FinishReason: "tool_calls", Chunks: 3, Done: true,
				ToolCalls: []fakeprovider.ToolCall{{ID: "call_fake_1", Type: "function", Function: fakeprovider.FunctionCall{Name: "f", Arguments: "{}"}}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := start(t, tt.opts)
			res, data := post(t, srv.URL+"/v1/chat/completions", nil, tt.body)
			require.Equal(t, http.StatusOK, res.StatusCode)
			require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
			require.True(t, strings.HasSuffix(string(data), "data: [DONE]\n\n"))
			got, err := fakeprovider.Collect(strings.NewReader(string(data)))
			require.NoError(t, err)
			require.Equal(t, tt.want, *got)
		})
	}
}

func TestStreamChunksAreWellFormed(t *testing.T) {
	t.Parallel()
	srv := start(t, fakeprovider.Options{Tokens: 2})
	_, data := post(t, srv.URL+"/v1/chat/completions", nil, `{"model":"m","stream":true,"messages":[{"role":"user","content":"a"}]}`)
	events := strings.Split(strings.TrimSuffix(string(data), "\n\n"), "\n\n")
	require.Equal(t, []string{
		`data: {"id":"chatcmpl-fake-1","object":"chat.completion.chunk","created":1795608000,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
		`data: {"id":"chatcmpl-fake-1","object":"chat.completion.chunk","created":1795608000,"model":"m","choices":[{"index":0,"delta":{"content":"lorem "},"finish_reason":null}]}`,
		`data: {"id":"chatcmpl-fake-1","object":"chat.completion.chunk","created":1795608000,"model":"m","choices":[{"index":0,"delta":{"content":"ipsum"},"finish_reason":null}]}`,
		`data: {"id":"chatcmpl-fake-1","object":"chat.completion.chunk","created":1795608000,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
		`data: [DONE]`,
	}, events)
}

func TestFailEvery(t *testing.T) {
	t.Parallel()
	srv := start(t, fakeprovider.Options{FailEvery: 3, RetryAfter: 1500 * time.Millisecond, Tokens: 1})
	var statuses []int
	for range 6 {
		res, data := post(t, srv.URL+"/v1/chat/completions", nil, `{"model":"m","messages":[{"role":"user","content":"a"}]}`)
		statuses = append(statuses, res.StatusCode)
		if res.StatusCode != http.StatusOK {
			require.Equal(t, "2", res.Header.Get("Retry-After"))
			require.JSONEq(t, `{"error":{"message":"injected failure","type":"server_error","param":null,"code":"fake_failure"}}`, string(data))
		}
	}
	require.Equal(t, []int{200, 200, 503, 200, 200, 503}, statuses)

	other := start(t, fakeprovider.Options{FailEvery: 1, FailStatus: http.StatusTooManyRequests})
	res, _ := post(t, other.URL+"/v1/chat/completions", nil, `{"model":"m","messages":[{"role":"user","content":"a"}]}`)
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	require.Empty(t, res.Header.Get("Retry-After"))
}

func TestKey(t *testing.T) {
	t.Parallel()
	srv := start(t, fakeprovider.Options{Key: "sk-fake"})
	body := `{"model":"m","messages":[{"role":"user","content":"a"}]}`
	tests := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no key", nil, http.StatusUnauthorized},
		{"wrong key", http.Header{"Authorization": {"Bearer sk-other"}}, http.StatusUnauthorized},
		{"bearer", http.Header{"Authorization": {"Bearer sk-fake"}}, http.StatusOK},
		{"api-key", http.Header{"Api-Key": {"sk-fake"}}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, data := post(t, srv.URL+"/v1/chat/completions", tt.header, body)
			require.Equal(t, tt.want, res.StatusCode, string(data))
			require.NotContains(t, string(data), "sk-fake")
		})
	}
}

func TestBadRequestsAndOtherRoutes(t *testing.T) {
	t.Parallel()
	srv := start(t, fakeprovider.Options{})
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantBody   string
	}{
		{"not JSON", http.MethodPost, "/v1/chat/completions", `{"messages":`, 400,
			`{"error":{"message":"request body is not a valid chat completions request","type":"invalid_request_error","param":null,"code":"invalid_request"}}`},
		{"no messages", http.MethodPost, "/v1/chat/completions", `{"model":"m","messages":[]}`, 400,
			`{"error":{"message":"'messages' must be a non-empty array","type":"invalid_request_error","param":"messages","code":"invalid_request"}}`},
		{"no role", http.MethodPost, "/v1/chat/completions", `{"model":"m","messages":[{"content":"secret"}]}`, 400,
			`{"error":{"message":"every message needs a role","type":"invalid_request_error","param":"messages[0].role","code":"invalid_request"}}`},
		{"negative max_tokens", http.MethodPost, "/v1/chat/completions", `{"messages":[{"role":"user"}],"max_tokens":-1}`, 400,
			`{"error":{"message":"max tokens must not be negative","type":"invalid_request_error","param":"max_tokens","code":"invalid_request"}}`},
		{"too large", http.MethodPost, "/v1/chat/completions", `{"messages":"` + strings.Repeat("x", 9<<20) + `"}`, 413,
			`{"error":{"message":"request body too large","type":"invalid_request_error","param":null,"code":"request_too_large"}}`},
		{"GET completions", http.MethodGet, "/v1/chat/completions", ``, 405,
			`{"error":{"message":"use POST","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}`},
		{"unknown path", http.MethodPost, "/v1/embeddings", `{}`, 404,
			`{"error":{"message":"unknown path","type":"invalid_request_error","param":null,"code":"unknown_url"}}`},
		{"models", http.MethodGet, "/v1/models", ``, 200,
			`{"object":"list","data":[{"id":"fake-model","object":"model","created":0,"owned_by":"parley"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			require.NoError(t, err)
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer func() { _ = res.Body.Close() }()
			data, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			require.Equal(t, tt.wantStatus, res.StatusCode)
			require.JSONEq(t, tt.wantBody, string(data))
			require.NotContains(t, string(data), "secret")
		})
	}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/healthz", nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = res.Body.Close() }()
	require.Equal(t, http.StatusOK, res.StatusCode)
}

// TestLatencyEndsWithTheClient checks that a waiting answer gives up when its client
// does (no wall-clock assertion: the server must simply not hold the request).
func TestLatencyEndsWithTheClient(t *testing.T) {
	t.Parallel()
	for _, stream := range []bool{false, true} {
		srv := start(t, fakeprovider.Options{Latency: time.Hour, TokenInterval: time.Hour})
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		body := `{"model":"m","messages":[{"role":"user","content":"a"}],"stream":` + map[bool]string{true: "true", false: "false"}[stream] + `}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = res.Body.Close()
		}
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		srv.Close() // returns only once the handler has
	}
}

func TestCollect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    fakeprovider.Stream
		wantErr string
	}{
		{
			name: "comments, other fields, CRLF-free multi-line data, no [DONE]",
			in: ": keep-alive\nevent: message\nid: 1\ndata: {\"id\":\"a\",\"model\":\"m\",\ndata: \"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n" +
				"data:{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"ignored\"}},{\"index\":0,\"delta\":{\"content\":\"y\"},\"finish_reason\":\"stop\"}]}",
			want: fakeprovider.Stream{ID: "a", Model: "m", Content: "xy", FinishReason: "stop", Chunks: 2},
		},
		{
			name: "tool call fragments by index",
			in: `data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c2","type":"function","function":{"name":"g","arguments":"{\"a\""}}]}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":":1}"}},{"index":0,"id":"c1","function":{"name":"f","arguments":""}}]}}]}` + "\n\n" +
				"data: [DONE]\n\ndata: {\"not\":\"read\"}\n\n",
			want: fakeprovider.Stream{Chunks: 2, Done: true, ToolCalls: []fakeprovider.ToolCall{
				{ID: "c1", Function: fakeprovider.FunctionCall{Name: "f"}},
				{ID: "c2", Type: "function", Function: fakeprovider.FunctionCall{Name: "g", Arguments: `{"a":1}`}},
			}},
		},
		{name: "empty", in: "", want: fakeprovider.Stream{}},
		{name: "bad JSON", in: "data: {\"choices\":\n\n", wantErr: "event 1: unexpected end of JSON input"},
		{name: "line too long", in: "data: " + strings.Repeat("x", 2<<20), wantErr: "event line too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := fakeprovider.Collect(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, *got)
		})
	}
}

func FuzzCollect(f *testing.F) {
	f.Add("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n")
	f.Add("data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":99999999,\"function\":{\"arguments\":\"x\"}}]}}]}\n\n")
	f.Add(": c\n\nevent: x\ndata:\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		st, err := fakeprovider.Collect(strings.NewReader(in))
		if err != nil {
			return
		}
		if len(st.ToolCalls) > 128 || st.Chunks < 0 {
			t.Fatalf("unbounded stream: %d tool calls, %d chunks", len(st.ToolCalls), st.Chunks)
		}
	})
}

// FuzzHandler sends arbitrary bodies: the fake answers 200 with a completion or 400 with
// an error object, never anything else, and never panics.
func FuzzHandler(f *testing.F) {
	f.Add([]byte(hello))
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"text":"a"}]}],"stream":true,"stream_options":{"include_usage":true}}`))
	f.Add([]byte(`{"messages":[{"role":"u"}],"tools":[{"function":{"name":"f"}}],"tool_choice":{"function":{"name":"g"}}}`))
	f.Add([]byte(`{"messages":[{"role":"u"}],"max_tokens":1e99}`))
	f.Add([]byte(`[]`))
	h := fakeprovider.New(fakeprovider.Options{Tokens: 3, Now: clock})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/chat/completions", strings.NewReader(string(body)))
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			if rec.Header().Get("Content-Type") == "text/event-stream" {
				st, err := fakeprovider.Collect(rec.Body)
				if err != nil || !st.Done {
					t.Fatalf("bad stream: %v", err)
				}
				return
			}
			var c fakeprovider.Completion
			if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil || len(c.Choices) != 1 {
				t.Fatalf("bad completion %q: %v", rec.Body.String(), err)
			}
		case http.StatusBadRequest:
			var e struct {
				Error struct {
					Type string `json:"type"`
				} `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Type != "invalid_request_error" {
				t.Fatalf("bad error %q: %v", rec.Body.String(), err)
			}
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}

// TestOpenAIProviderAgainstFake runs Parley's OpenAI provider against the fake: the two
// agree on the wire, injected failures come back as retryable errors with Retry-After.
func TestOpenAIProviderAgainstFake(t *testing.T) {
	t.Parallel()
	srv := start(t, fakeprovider.Options{Tokens: 5, Key: "sk-fake", FailEvery: 2, RetryAfter: 3 * time.Second})
	p, err := openai.New(component.Component{Metadata: map[string]string{"key": "sk-fake", "endpoint": srv.URL + "/v1"}}, provider.Options{})
	require.NoError(t, err)
	req := &providerv1.Request{Messages: []*providerv1.Message{{
		Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "how are you"}}},
	}}}

	resp, err := p.Converse(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, "gpt-5-nano", resp.GetModel())
	require.Len(t, resp.GetChoices(), 1)
	require.Equal(t, "lorem ipsum dolor sit amet", resp.GetChoices()[0].GetContent())
	require.Equal(t, "stop", resp.GetChoices()[0].GetFinishReason())
	require.Equal(t, uint64(3), resp.GetUsage().GetPromptTokens())
	require.Equal(t, uint64(5), resp.GetUsage().GetCompletionTokens())
	require.Equal(t, uint64(8), resp.GetUsage().GetTotalTokens())

	_, err = p.Converse(t.Context(), req)
	require.True(t, provider.IsRetryable(err), "%v", err)
	d, ok := provider.RetryAfterOf(err)
	require.True(t, ok)
	require.Equal(t, 3*time.Second, d)

	bad, err := openai.New(component.Component{Metadata: map[string]string{"key": "sk-wrong", "endpoint": srv.URL + "/v1"}}, provider.Options{})
	require.NoError(t, err)
	_, err = bad.Converse(t.Context(), req)
	var pe *provider.Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, providerv1.ErrorCode_ERROR_CODE_INTERNAL, pe.Code)
	require.NotContains(t, err.Error(), "sk-wrong")
}

// BenchmarkFakeCompletion measures the fake itself over loopback HTTP, non-streaming
// (64 tokens), as a floor for benchmarks that use it.
func BenchmarkFakeCompletion(b *testing.B) {
	srv := start(b, fakeprovider.Options{Tokens: 64})
	body := `{"model":"m","messages":[{"role":"user","content":"hello there"}]}`
	b.ReportAllocs()
	for b.Loop() {
		req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
	}
}

// BenchmarkFakeStream measures a streamed answer of 64 tokens, read back with Collect.
func BenchmarkFakeStream(b *testing.B) {
	srv := start(b, fakeprovider.Options{Tokens: 64})
	body := `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there"}]}`
	b.ReportAllocs()
	for b.Loop() {
		req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		st, err := fakeprovider.Collect(res.Body)
		_ = res.Body.Close()
		if err != nil || !st.Done {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenAIProviderAgainstFake measures Parley's OpenAI provider calling the fake
// over loopback HTTP: encode, round trip, decode.
func BenchmarkOpenAIProviderAgainstFake(b *testing.B) {
	srv := start(b, fakeprovider.Options{Tokens: 64})
	p, err := openai.New(component.Component{Metadata: map[string]string{"key": "k", "endpoint": srv.URL + "/v1"}}, provider.Options{})
	require.NoError(b, err)
	req := &providerv1.Request{Messages: []*providerv1.Message{{
		Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "hello there"}}},
	}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Converse(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}
