package openaiapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

// fakeConverser answers every request with its reply (or err) and keeps the last request:
// the API layer's tests need no network. The whole path, with the real services, is
// tested end to end in integration/ (openai_test.go).
type fakeConverser struct {
	reply *conversation.Result
	err   error
	last  conversation.Request
	// streamErr, when set, fails a stream after its first delta.
	streamErr error
}

func (f *fakeConverser) Lookup(name string) (conversation.Component, bool) {
	for _, c := range f.List() {
		if c.Name == name {
			return c, true
		}
	}
	return conversation.Component{}, false
}

func (f *fakeConverser) List() []conversation.Component {
	return []conversation.Component{
		{Name: "gpt", Type: "conversation.openai", CacheTTL: time.Minute},
		{Name: "echo", Type: "conversation.echo"},
	}
}

func (f *fakeConverser) Converse(_ context.Context, req conversation.Request) (*conversation.Result, error) {
	f.last = req
	if f.err != nil {
		return nil, f.err
	}
	return f.reply, nil
}

// ConverseStream streams the reply: each choice's content in two pieces, each tool call
// as its id and name, then its arguments.
func (f *fakeConverser) ConverseStream(_ context.Context, req conversation.Request, emit func(conversation.Delta) error) (*conversation.Result, error) {
	f.last = req
	if f.err != nil {
		return nil, f.err
	}
	for _, c := range f.reply.Response.GetChoices() {
		content := c.GetContent()
		half := len(content) / 2
		for _, piece := range []string{content[:half], content[half:]} {
			if piece == "" {
				continue
			}
			if err := emit(conversation.Delta{RequestID: f.reply.RequestID, Choice: c.GetIndex(), Content: piece}); err != nil {
				return nil, err
			}
			if f.streamErr != nil {
				return nil, f.streamErr
			}
		}
		for i, tc := range c.GetToolCalls() {
			for _, d := range []*providerv1.ToolCallDelta{
				{Index: int32(i), Id: tc.GetId(), Name: tc.GetName()}, //nolint:gosec // a handful of calls
				{Index: int32(i), Arguments: tc.GetArguments()},       //nolint:gosec // a handful of calls
			} {
				if err := emit(conversation.Delta{RequestID: f.reply.RequestID, Choice: c.GetIndex(), ToolCalls: []*providerv1.ToolCallDelta{d}}); err != nil {
					return nil, err
				}
			}
		}
	}
	return f.reply, nil
}

func okReply() *conversation.Result {
	return &conversation.Result{RequestID: "0190-req", ProviderTime: 40 * time.Millisecond, Response: &providerv1.Response{
		Model:   "gpt-4o-mini-2024-07-18",
		Choices: []*providerv1.Choice{{Index: 0, FinishReason: "stop", Content: "hello there"}},
		Usage: &providerv1.Usage{PromptTokens: 5, CompletionTokens: 2, TotalTokens: 7, PromptCachedTokens: 3,
			CompletionReasoningTokens: 1},
	}}
}

func newTestHandler(f *fakeConverser) *Handler {
	h := New(f, f, nil, Options{MaxBodyBytes: 1 << 16, Timeout: time.Second}, slog.New(slog.DiscardHandler))
	h.now = func() time.Time { return time.Unix(1_700_000_000, 0) }
	return h
}

func post(h *Handler, body string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ChatCompletions(rec, req)
	return rec
}

const hello = `{"model":"gpt","messages":[{"role":"user","content":"hi"}]}`

func TestChatCompletionAnswer(t *testing.T) {
	t.Parallel()
	f := &fakeConverser{reply: okReply()}
	rec := post(newTestHandler(f), hello, nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.JSONEq(t, `{
		"id": "chatcmpl-0190-req", "object": "chat.completion", "created": 1700000000,
		"model": "gpt-4o-mini-2024-07-18", "system_fingerprint": null,
		"choices": [{"index": 0, "logprobs": null, "finish_reason": "stop",
			"message": {"role": "assistant", "content": "hello there", "refusal": null, "annotations": []}}],
		"usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
			"prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
			"completion_tokens_details": {"reasoning_tokens": 1, "audio_tokens": 0,
				"accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
	}`, rec.Body.String())
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	require.Equal(t, "0190-req", rec.Header().Get(RequestIDHeader))
	require.Equal(t, "0190-req", rec.Header().Get("X-Request-Id"))
	require.Equal(t, "miss", rec.Header().Get(CacheHeader))
	require.Contains(t, rec.Header().Get("Server-Timing"), "provider;dur=40.000")
	require.Equal(t, auditv1.Api_API_OPENAI, f.last.API)
	require.Equal(t, "gpt", f.last.Provider.GetComponent())
}

func TestChatCompletionToolCallsAnswer(t *testing.T) {
	t.Parallel()
	reply := okReply()
	reply.Response.Choices = []*providerv1.Choice{{FinishReason: "tool_use", ToolCalls: []*providerv1.ToolCall{
		{Id: "toolu_1", Name: "weather", Arguments: `{"city":"Oslo"}`}, {Name: "time", Arguments: `{}`},
	}}}
	rec := post(newTestHandler(&fakeConverser{reply: reply}), hello, nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var got completion
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	c := got.Choices[0]
	require.Equal(t, "tool_calls", c.FinishReason)
	require.Nil(t, c.Message.Content, "content is null beside tool calls")
	require.Equal(t, []responseToolCall{
		{ID: "toolu_1", Type: "function", Function: functionCall{Name: "weather", Arguments: `{"city":"Oslo"}`}},
		{ID: "call_0_1", Type: "function", Function: functionCall{Name: "time", Arguments: `{}`}},
	}, c.Message.ToolCalls)
}

func TestCacheHeader(t *testing.T) {
	t.Parallel()
	hit := okReply()
	hit.CacheHit = true
	tests := []struct {
		name   string
		body   string
		header http.Header
		reply  *conversation.Result
		want   string
	}{
		{"miss", hello, nil, okReply(), "miss"},
		{"hit", hello, nil, hit, "hit"},
		{"bypassed by header", hello, http.Header{"Parley-Cache": {"bypass"}}, okReply(), "off"},
		{"bypassed by metadata", `{"model":"gpt","messages":[{"role":"user","content":"hi"}],"metadata":{"parley.cache":"bypass"}}`, nil, okReply(), "off"},
		{"component without cache", `{"model":"echo","messages":[{"role":"user","content":"hi"}]}`, nil, okReply(), "off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := post(newTestHandler(&fakeConverser{reply: tt.reply}), tt.body, tt.header)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			require.Equal(t, tt.want, rec.Header().Get(CacheHeader))
		})
	}
}

// TestTranslate shows what the provider gets for each part of a request.
func TestTranslate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		header http.Header
		// want is the provider request in protojson, without the component.
		want string
		// check inspects the rest of the conversation request.
		check func(t *testing.T, r conversation.Request)
	}{
		{
			name: "every role, parts and a tool round trip",
			body: `{"model":"gpt","messages":[
				{"role":"developer","content":"be brief"},
				{"role":"system","content":[{"type":"text","text":"you are"},{"type":"text","text":" helpful"}]},
				{"role":"user","content":"weather?","name":"ann"},
				{"role":"assistant","content":null,"refusal":null,"annotations":[],"audio":null,"function_call":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]},
				{"role":"tool","tool_call_id":"c1","content":[{"type":"text","text":"{\"temp\":3}"}]},
				{"role":"assistant","content":"3 degrees","refusal":null}
			]}`,
			want: `{"messages":[
				{"role":"ROLE_DEVELOPER","parts":[{"text":"be brief"}]},
				{"role":"ROLE_SYSTEM","parts":[{"text":"you are"},{"text":" helpful"}]},
				{"role":"ROLE_USER","parts":[{"text":"weather?"}]},
				{"role":"ROLE_ASSISTANT","parts":[{"toolCall":{"id":"c1","type":"function","name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]},
				{"role":"ROLE_TOOL","parts":[{"toolResult":{"toolCallId":"c1","name":"weather","content":"{\"temp\":3}"}}]},
				{"role":"ROLE_ASSISTANT","parts":[{"text":"3 degrees"}]}]}`,
		},
		{
			name: "a tool result names its function when no call in the history does",
			body: `{"model":"gpt","messages":[{"role":"tool","tool_call_id":"c9","name":"lookup","content":"42"}]}`,
			want: `{"messages":[{"role":"ROLE_TOOL","parts":[{"toolResult":{"toolCallId":"c9","name":"lookup","content":"42"}}]}]}`,
		},
		{
			name: "sampling fields, stop as a string, max_completion_tokens over max_tokens",
			body: `{"model":"gpt","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":9,"max_completion_tokens":50,"stop":"END","n":1,"user":"u-1","seed":7,"top_p":0.9,"parallel_tool_calls":false,"store":false,"logprobs":false,"modalities":["text"]}`,
			want: `{"messages":[{"role":"ROLE_USER","parts":[{"text":"hi"}]}],"temperature":0.2,"maxTokens":"50","stop":["END"]}`,
		},
		{
			name: "max_tokens alone, stop as an array",
			body: `{"model":"gpt","messages":[{"role":"user","content":"hi"}],"max_tokens":9,"stop":["a","b"]}`,
			want: `{"messages":[{"role":"ROLE_USER","parts":[{"text":"hi"}]}],"maxTokens":"9","stop":["a","b"]}`,
		},
		{
			name: "tools with a named tool choice",
			body: `{"model":"gpt","messages":[{"role":"user","content":"hi"}],
				"tools":[{"type":"function","function":{"name":"weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true}}],
				"tool_choice":{"type":"function","function":{"name":"weather"}}}`,
			want: `{"messages":[{"role":"ROLE_USER","parts":[{"text":"hi"}]}],
				"tools":[{"type":"function","name":"weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}],
				"toolChoice":"weather"}`,
		},
		{
			name: "tools default to auto",
			body: `{"model":"gpt","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}`,
			want: `{"messages":[{"role":"ROLE_USER","parts":[{"text":"hi"}]}],"tools":[{"type":"function","name":"f"}],"toolChoice":"auto"}`,
		},
		{
			name: "json_schema response format",
			body: `{"model":"gpt","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"city","description":"a city","strict":true,"schema":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"],"additionalProperties":false}}}}`,
			want: `{"messages":[{"role":"ROLE_USER","parts":[{"text":"hi"}]}],"responseFormat":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"],"additionalProperties":false,"name":"city","description":"a city","strict":true}}`,
		},
		{
			name: "json_object response format is an open object schema",
			body: `{"model":"gpt","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}`,
			want: `{"messages":[{"role":"ROLE_USER","parts":[{"text":"hi"}]}],"responseFormat":{"type":"object","additionalProperties":true,"name":"json_object"}}`,
		},
		{
			name: "text response format is none",
			body: `{"model":"gpt","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"text"}}`,
			want: `{"messages":[{"role":"ROLE_USER","parts":[{"text":"hi"}]}]}`,
		},
		{
			name:   "metadata forwarded without parley keys; scrub from the header",
			body:   `{"model":"gpt","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}],"metadata":{"team":"x","parley.cache":"bypass"}}`,
			header: http.Header{"Parley-Scrub": {"inputs, outputs"}},
			want:   `{"messages":[{"role":"ROLE_USER","parts":[{"text":"a"}]},{"role":"ROLE_USER","parts":[{"text":"b"}]}],"metadata":{"team":"x"}}`,
			check: func(t *testing.T, r conversation.Request) {
				require.Equal(t, []bool{true, true}, r.ScrubInput)
				require.True(t, r.ScrubOutput)
				require.True(t, r.ScrubToolArguments)
				require.False(t, r.Tokenize)
				require.True(t, r.BypassCache)
			},
		},
		{
			name: "tokenize from metadata implies inputs; nothing forwarded",
			body: `{"model":"gpt","messages":[{"role":"user","content":"a"}],"metadata":{"parley.scrub":"tokenize"}}`,
			want: `{"messages":[{"role":"ROLE_USER","parts":[{"text":"a"}]}]}`,
			check: func(t *testing.T, r conversation.Request) {
				require.Equal(t, []bool{true}, r.ScrubInput)
				require.False(t, r.ScrubOutput)
				require.True(t, r.Tokenize)
				require.False(t, r.BypassCache)
			},
		},
		{
			name: "no scrubbing by default",
			body: hello,
			want: `{"messages":[{"role":"ROLE_USER","parts":[{"text":"hi"}]}]}`,
			check: func(t *testing.T, r conversation.Request) {
				require.Equal(t, []bool{false}, r.ScrubInput)
				require.False(t, r.ScrubOutput)
				require.NotNil(t, r.ErrorCode)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeConverser{reply: okReply()}
			rec := post(newTestHandler(f), tt.body, tt.header)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			got := proto.CloneOf(f.last.Provider)
			require.Equal(t, "gpt", got.GetComponent())
			got.Component = ""
			b, err := protojson.Marshal(got)
			require.NoError(t, err)
			require.JSONEq(t, tt.want, string(b))
			if tt.check != nil {
				tt.check(t, f.last)
			}
		})
	}
}

// TestRequestErrors: what OpenAI refuses (and what Parley cannot honour) gets a 400 in
// OpenAI's shape naming the field, before any conversation starts.
func TestRequestErrors(t *testing.T) {
	t.Parallel()
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name       string
		body       string
		header     http.Header
		wantStatus int
		wantParam  *string
		wantCode   *string
		wantMsg    string
	}{
		{name: "not JSON", body: `{"model":`, wantStatus: 400, wantMsg: "could not parse the JSON body"},
		{name: "empty body", body: ``, wantStatus: 400, wantMsg: "could not parse the JSON body"},
		{name: "trailing data", body: hello + `{}`, wantStatus: 400, wantMsg: "could not parse the JSON body"},
		{name: "unknown field", body: `{"model":"gpt",` + msgs + `,"frobnicate":1}`, wantStatus: 400, wantMsg: "Unrecognized request argument supplied: frobnicate"},
		{name: "wrong type", body: `{"model":"gpt",` + msgs + `,"temperature":"hot"}`, wantStatus: 400, wantParam: ptr("temperature"), wantMsg: "Invalid type for 'temperature'"},
		{name: "no model", body: `{` + msgs + `}`, wantStatus: 400, wantParam: ptr("model"), wantMsg: "You must provide a model parameter"},
		{name: "unknown model", body: `{"model":"nope",` + msgs + `}`, wantStatus: 404, wantParam: ptr("model"), wantCode: ptr("model_not_found"), wantMsg: "The model `nope` does not exist"},
		{name: "huge model name", body: `{"model":"` + strings.Repeat("m", 300) + `",` + msgs + `}`, wantStatus: 404, wantCode: ptr("model_not_found"), wantParam: ptr("model"), wantMsg: "…` does not exist"},
		{name: "unknown stream option", body: `{"model":"gpt",` + msgs + `,"stream":true,"stream_options":{"include_everything":true}}`, wantStatus: 400, wantMsg: "Unrecognized request argument supplied: stream_options.include_everything"},
		{name: "stream_options without stream", body: `{"model":"gpt",` + msgs + `,"stream_options":{"include_usage":true}}`, wantStatus: 400, wantParam: ptr("stream_options")},
		{name: "n of 2", body: `{"model":"gpt",` + msgs + `,"n":2}`, wantStatus: 400, wantParam: ptr("n"), wantMsg: "'n' must be 1"},
		{name: "logprobs", body: `{"model":"gpt",` + msgs + `,"logprobs":true}`, wantStatus: 400, wantParam: ptr("logprobs")},
		{name: "audio output", body: `{"model":"gpt",` + msgs + `,"modalities":["text","audio"]}`, wantStatus: 400, wantParam: ptr("modalities")},
		{name: "legacy functions", body: `{"model":"gpt",` + msgs + `,"functions":[{"name":"f"}]}`, wantStatus: 400, wantParam: ptr("functions")},
		{name: "temperature too high", body: `{"model":"gpt",` + msgs + `,"temperature":2.5}`, wantStatus: 400, wantParam: ptr("temperature")},
		{name: "max_tokens zero", body: `{"model":"gpt",` + msgs + `,"max_tokens":0}`, wantStatus: 400, wantParam: ptr("max_tokens")},
		{name: "five stop sequences", body: `{"model":"gpt",` + msgs + `,"stop":["a","b","c","d","e"]}`, wantStatus: 400, wantParam: ptr("stop")},
		{name: "stop of the wrong type", body: `{"model":"gpt",` + msgs + `,"stop":3}`, wantStatus: 400, wantParam: ptr("stop")},
		{name: "no messages", body: `{"model":"gpt","messages":[]}`, wantStatus: 400, wantParam: ptr("messages")},
		{name: "a long value is quoted cut", body: `{"model":"gpt","messages":[{"role":"` + strings.Repeat("w", 5000) + `","content":"hi"}]}`, wantStatus: 400, wantParam: ptr("messages[0].role"), wantMsg: "Invalid value: '" + strings.Repeat("w", 64) + "…'"},
		{name: "unknown role", body: `{"model":"gpt","messages":[{"role":"wizard","content":"hi"}]}`, wantStatus: 400, wantParam: ptr("messages[0].role"), wantMsg: "Invalid value: 'wizard'"},
		{name: "user without content", body: `{"model":"gpt","messages":[{"role":"user"}]}`, wantStatus: 400, wantParam: ptr("messages[0].content")},
		{name: "image part", body: `{"model":"gpt","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, wantStatus: 400, wantParam: ptr("messages[0].content[0].type"), wantMsg: "text content parts only"},
		{name: "unknown part field", body: `{"model":"gpt","messages":[{"role":"user","content":[{"type":"text","text":"a","x":1}]}]}`, wantStatus: 400, wantMsg: "Unrecognized request argument supplied: messages[0].content[0].x"},
		{name: "content of the wrong type", body: `{"model":"gpt","messages":[{"role":"user","content":7}]}`, wantStatus: 400, wantParam: ptr("messages[0].content")},
		{name: "tool message without its call id", body: `{"model":"gpt","messages":[{"role":"tool","content":"x"}]}`, wantStatus: 400, wantParam: ptr("messages[0].tool_call_id")},
		{name: "tool calls on a user message", body: `{"model":"gpt","messages":[{"role":"user","content":"x","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, wantStatus: 400, wantParam: ptr("messages[0].tool_calls")},
		{name: "empty assistant", body: `{"model":"gpt","messages":[{"role":"assistant"}]}`, wantStatus: 400, wantParam: ptr("messages[0].content")},
		{name: "tool call without id", body: `{"model":"gpt","messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, wantStatus: 400, wantParam: ptr("messages[0].tool_calls[0].id")},
		{name: "custom tool", body: `{"model":"gpt",` + msgs + `,"tools":[{"type":"custom","custom":{"name":"x"}}]}`, wantStatus: 400, wantParam: ptr("tools[0].type")},
		{name: "bad function name", body: `{"model":"gpt",` + msgs + `,"tools":[{"type":"function","function":{"name":"a b"}}]}`, wantStatus: 400, wantParam: ptr("tools[0].function.name")},
		{name: "parameters not an object", body: `{"model":"gpt",` + msgs + `,"tools":[{"type":"function","function":{"name":"f","parameters":[1]}}]}`, wantStatus: 400, wantParam: ptr("tools[0].function.parameters")},
		{name: "tool_choice names no tool", body: `{"model":"gpt",` + msgs + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`, wantStatus: 400, wantParam: ptr("tool_choice")},
		{name: "tool_choice required without tools", body: `{"model":"gpt",` + msgs + `,"tool_choice":"required"}`, wantStatus: 400, wantParam: ptr("tool_choice")},
		{name: "tool_choice unknown word", body: `{"model":"gpt",` + msgs + `,"tool_choice":"sometimes"}`, wantStatus: 400, wantParam: ptr("tool_choice")},
		{name: "response_format unknown type", body: `{"model":"gpt",` + msgs + `,"response_format":{"type":"yaml"}}`, wantStatus: 400, wantParam: ptr("response_format.type")},
		{name: "json_schema without a name", body: `{"model":"gpt",` + msgs + `,"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object"}}}}`, wantStatus: 400, wantParam: ptr("response_format.json_schema.name")},
		{name: "too many metadata pairs", body: `{"model":"gpt",` + msgs + `,"metadata":{` + manyPairs(17) + `}}`, wantStatus: 400, wantParam: ptr("metadata")},
		{name: "bad Parley-Scrub", body: hello, header: http.Header{"Parley-Scrub": {"inputs,everything"}}, wantStatus: 400, wantMsg: "Invalid Parley-Scrub value 'everything'"},
		{name: "bad parley.cache key", body: `{"model":"gpt",` + msgs + `,"metadata":{"parley.cache":"forever"}}`, wantStatus: 400, wantParam: ptr("metadata.parley.cache")},
		{name: "too deep", body: `{"model":"gpt",` + msgs + `,"metadata":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, wantStatus: 400, wantMsg: "nests deeper"},
		{name: "too large", body: `{"model":"gpt","messages":[{"role":"user","content":"` + strings.Repeat("x", 1<<16) + `"}]}`, wantStatus: 413, wantCode: ptr("request_too_large")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeConverser{reply: okReply()}
			rec := post(newTestHandler(f), tt.body, tt.header)
			require.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			var body struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			require.NoError(t, decodeStrict(rec.Body.Bytes(), &body), rec.Body.String())
			require.Equal(t, "invalid_request_error", body.Error.Type)
			require.Equal(t, tt.wantParam, body.Error.Param)
			require.Equal(t, tt.wantCode, body.Error.Code)
			require.Contains(t, body.Error.Message, tt.wantMsg)
			require.Nil(t, f.last.Provider, "no conversation starts")
		})
	}
}

func ptr(s string) *string { return &s }

func manyPairs(n int) string {
	pairs := make([]string, n)
	for i := range pairs {
		pairs[i] = `"k` + strings.Repeat("x", i) + `":"v"`
	}
	return strings.Join(pairs, ",")
}

// TestConversationErrors: each kind of failure gets OpenAI's status and error type, a
// provider's rate limit a 429 with its Retry-After, and the audit log the same code.
func TestConversationErrors(t *testing.T) {
	t.Parallel()
	provider := func(code providerv1.ErrorCode, retry time.Duration) error {
		return &conversation.ProviderError{Code: code, Message: "upstream said so", RetryAfter: retry}
	}
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantType   string
		wantCode   string
		wantRetry  string
		wantAudit  string
	}{
		{"rate limited", provider(providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 1500*time.Millisecond), 429, "rate_limit_error", "rate_limit_exceeded", "2", "429 rate_limit_exceeded"},
		{"unavailable", provider(providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 0), 503, "server_error", "service_unavailable", "", "503 service_unavailable"},
		{"provider refused the request", provider(providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, 0), 400, "invalid_request_error", "", "", "400 invalid_request_error"},
		{"provider has no such model", provider(providerv1.ErrorCode_ERROR_CODE_NOT_FOUND, 0), 404, "invalid_request_error", "model_not_found", "", "404 model_not_found"},
		{"provider timed out", provider(providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED, 0), 504, "server_error", "timeout", "", "504 timeout"},
		{"provider failed", provider(providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0), 502, "server_error", "upstream_error", "", "502 upstream_error"},
		{"limit broken", &conversation.InvalidRequestError{Detail: "too many texts"}, 400, "invalid_request_error", "", "", "400 invalid_request_error"},
		{"no worker", conversation.ErrNoWorker, 503, "server_error", "service_unavailable", "", "503 service_unavailable"},
		{"worker lost", conversation.ErrWorkerLost, 502, "server_error", "upstream_error", "", "502 upstream_error"},
		{"deadline", context.DeadlineExceeded, 504, "server_error", "timeout", "", "504 timeout"},
		{"scrubber down", &conversation.ScrubError{Err: errors.New("dial")}, 503, "server_error", "service_unavailable", "", "503 service_unavailable"},
		{"audit down", &conversation.AuditError{Err: errors.New("nats")}, 503, "server_error", "service_unavailable", "", "503 service_unavailable"},
		{"anything else", errors.New("boom"), 500, "server_error", "", "", "500 server_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := post(newTestHandler(&fakeConverser{err: tt.err}), hello, nil)
			require.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			require.Equal(t, tt.wantRetry, rec.Header().Get("Retry-After"))
			var body errorBody
			require.NoError(t, decodeStrict(rec.Body.Bytes(), &body), rec.Body.String())
			require.Equal(t, tt.wantType, body.Error.Type)
			require.Equal(t, nullable(tt.wantCode), body.Error.Code)
			require.NotContains(t, body.Error.Message, "dial", "internal causes stay in the log")
			require.NotContains(t, body.Error.Message, "boom", "internal causes stay in the log")
			require.Equal(t, tt.wantAudit, auditCode(tt.err))
		})
	}
}

func TestFinishReason(t *testing.T) {
	t.Parallel()
	call := []*providerv1.ToolCall{{Name: "f"}}
	tests := []struct {
		raw   string
		calls []*providerv1.ToolCall
		want  string
	}{
		{"stop", nil, "stop"}, {"end_turn", nil, "stop"}, {"STOP", nil, "stop"}, {"stop_sequence", nil, "stop"},
		{"unknown", nil, "stop"}, {"", nil, "stop"},
		{"length", nil, "length"}, {"max_tokens", nil, "length"}, {"MAX_TOKENS", nil, "length"}, {"model_length", nil, "length"},
		{"tool_calls", call, "tool_calls"}, {"tool_use", call, "tool_calls"}, {"STOP", call, "tool_calls"}, {"unknown", call, "tool_calls"},
		{"content_filter", nil, "content_filter"}, {"SAFETY", nil, "content_filter"}, {"guardrail_intervened", nil, "content_filter"},
		{"refusal", nil, "content_filter"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, FinishReason(&providerv1.Choice{FinishReason: tt.raw, ToolCalls: tt.calls}), "%q with %d calls", tt.raw, len(tt.calls))
	}
}

func TestModels(t *testing.T) {
	t.Parallel()
	h := newTestHandler(&fakeConverser{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", h.Models)
	mux.HandleFunc("GET /v1/models/{id}", h.Model)
	mux.HandleFunc("POST /v1/chat/completions", h.ChatCompletions)
	mux.HandleFunc("/v1/", h.NotFound)
	tests := []struct {
		path       string
		wantStatus int
		want       string
	}{
		{"/v1/models", 200, `{"object":"list","data":[
			{"id":"echo","object":"model","created":0,"owned_by":"echo"},
			{"id":"gpt","object":"model","created":0,"owned_by":"openai"}]}`},
		{"/v1/models/gpt", 200, `{"id":"gpt","object":"model","created":0,"owned_by":"openai"}`},
		{"/v1/models/nope", 404, `{"error":{"message":"The model ` + "`nope`" + ` does not exist or you do not have access to it.","type":"invalid_request_error","param":"model","code":"model_not_found"}}`},
		{"/v1/embeddings", 404, `{"error":{"message":"Invalid URL (GET /v1/embeddings)","type":"invalid_request_error","param":null,"code":null}}`},
		{"/v1/chat/completions", 404, `{"error":{"message":"Invalid URL (GET /v1/chat/completions)","type":"invalid_request_error","param":null,"code":null}}`},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		require.Equal(t, tt.wantStatus, rec.Code, tt.path)
		require.JSONEq(t, tt.want, rec.Body.String(), tt.path)
	}

	// A key limited to some components sees only those.
	limited := func(path string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		return r.WithContext(tenant.With(r.Context(), &tenant.Caller{Tenant: "t", Components: map[string]bool{"echo": true}}))
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, limited("/v1/models"))
	require.JSONEq(t, `{"object":"list","data":[{"id":"echo","object":"model","created":0,"owned_by":"echo"}]}`, rec.Body.String())
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, limited("/v1/models/gpt"))
	require.Equal(t, http.StatusNotFound, rec.Code)
}

// admitter refuses with err, or admits with a caller whose settlement it records.
type admitter struct {
	err     error
	settled []int64
	sizes   []int
}

func (a *admitter) Admit(ctx context.Context, _ string, size int) (context.Context, error) {
	a.sizes = append(a.sizes, size)
	if a.err != nil {
		return ctx, a.err
	}
	c := (&tenant.Caller{Tenant: "team-a", KeyID: "k1"}).WithSettle(func(n int64) { a.settled = append(a.settled, n) })
	return tenant.With(ctx, c), nil
}

// TestAdmission: the caller's key is admitted with the request's size before the
// conversation, which runs as the key's caller; a refusal gets OpenAI's shape with the
// status the key's guard names, a limit's Retry-After included.
func TestAdmission(t *testing.T) {
	t.Parallel()
	limit, forbidden, down := errors.New("rate limit exceeded"), errors.New("forbidden"), errors.New("limits down")
	status := func(err error) (int, int64) {
		switch {
		case errors.Is(err, limit):
			return http.StatusTooManyRequests, 42
		case errors.Is(err, forbidden):
			return http.StatusForbidden, 0
		}
		return http.StatusServiceUnavailable, 0
	}
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantType   string
		wantCode   string
		wantRetry  string
	}{
		{"admitted", nil, 200, "", "", ""},
		{"over a limit", limit, 429, "rate_limit_error", "rate_limit_exceeded", "42"},
		{"component not allowed", forbidden, 403, "permission_error", "model_not_allowed", ""},
		{"limits unavailable", down, 503, "server_error", "service_unavailable", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeConverser{reply: okReply()}
			var caller *tenant.Caller
			a := &admitter{err: tt.err}
			h := New(f, f, a, Options{MaxBodyBytes: 1 << 16, Timeout: time.Second, AdmitStatus: status}, slog.New(slog.DiscardHandler))
			h.conv = converseAs{f, &caller}
			rec := post(h, hello, nil)
			require.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			require.Equal(t, []int{len(hello)}, a.sizes)
			require.Equal(t, tt.wantRetry, rec.Header().Get("Retry-After"))
			if tt.err == nil {
				require.Equal(t, "team-a", caller.Tenant, "the conversation runs as the key's caller")
				require.Equal(t, []int64{0}, a.settled, "settled once (the fake conversation settles nothing)")
				return
			}
			require.Nil(t, f.last.Provider, "no conversation starts")
			var body errorBody
			require.NoError(t, decodeStrict(rec.Body.Bytes(), &body))
			require.Equal(t, tt.wantType, body.Error.Type)
			require.Equal(t, nullable(tt.wantCode), body.Error.Code)
		})
	}
}

// converseAs records the caller of the conversation.
type converseAs struct {
	*fakeConverser
	caller **tenant.Caller
}

func (c converseAs) Converse(ctx context.Context, req conversation.Request) (*conversation.Result, error) {
	*c.caller = tenant.From(ctx)
	return c.fakeConverser.Converse(ctx, req)
}
