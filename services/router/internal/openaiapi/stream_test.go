package openaiapi

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// events splits a Server-Sent Events body into its data lines.
func events(t *testing.T, body string) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		require.True(t, strings.HasPrefix(line, "data: "), "line %q", line)
		out = append(out, strings.TrimPrefix(line, "data: "))
	}
	return out
}

// TestStream: stream: true answers with OpenAI's chunks: the role first, the content and
// tool calls as the conversation releases them, the finish reason, the usage when asked,
// then [DONE]; the cache and timing come as trailers.
func TestStream(t *testing.T) {
	t.Parallel()
	tools := okReply()
	tools.Response.Choices = []*providerv1.Choice{{FinishReason: "tool_use", ToolCalls: []*providerv1.ToolCall{{Id: "c1", Name: "weather", Arguments: `{"city":"Oslo"}`}}}}
	base := `"id":"chatcmpl-0190-req","object":"chat.completion.chunk","created":1700000000,"model":"gpt","system_fingerprint":null`
	tests := []struct {
		name  string
		body  string
		reply *conversation.Result
		want  []string
	}{
		{
			name:  "content with usage",
			body:  `{"model":"gpt","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
			reply: okReply(),
			want: []string{
				`{` + base + `,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}`,
				`{` + base + `,"choices":[{"index":0,"delta":{"content":"hello"},"logprobs":null,"finish_reason":null}],"usage":null}`,
				`{` + base + `,"choices":[{"index":0,"delta":{"content":" there"},"logprobs":null,"finish_reason":null}],"usage":null}`,
				`{` + base + `,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`,
				`{` + base + `,"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,` +
					`"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":1,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`,
				`[DONE]`,
			},
		},
		{
			name:  "tool calls without usage",
			body:  `{"model":"gpt","messages":[{"role":"user","content":"hi"}],"stream":true}`,
			reply: tools,
			want: []string{
				`{` + base + `,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`,
				`{` + base + `,"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"weather","arguments":""}}]},"logprobs":null,"finish_reason":null}]}`,
				`{` + base + `,"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":\"Oslo\"}"}}]},"logprobs":null,"finish_reason":null}]}`,
				`{` + base + `,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}`,
				`[DONE]`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := post(newTestHandler(&fakeConverser{reply: tt.reply}), tt.body, nil)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			require.Equal(t, "text/event-stream", rec.Header().Get("Content-Type"))
			require.Equal(t, "0190-req", rec.Header().Get(RequestIDHeader))
			got := events(t, rec.Body.String())
			require.Len(t, got, len(tt.want), rec.Body.String())
			for i := range tt.want {
				if tt.want[i] == "[DONE]" {
					require.Equal(t, "[DONE]", got[i])
					continue
				}
				require.JSONEq(t, tt.want[i], got[i], "event %d", i)
			}
			trailers := rec.Result().Trailer
			require.Equal(t, "miss", trailers.Get(CacheHeader))
			require.Contains(t, trailers.Get("Server-Timing"), "provider;dur=40.000")
		})
	}
}

// TestStreamErrors: a failure before the first event is an ordinary error answer; after
// it, an error event in OpenAI's shape ends the stream, without [DONE].
func TestStreamErrors(t *testing.T) {
	t.Parallel()
	body := `{"model":"gpt","messages":[{"role":"user","content":"hi"}],"stream":true}`
	limited := &conversation.ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, Message: "slow down", RetryAfter: 3e9}

	rec := post(newTestHandler(&fakeConverser{reply: okReply(), err: limited}), body, nil)
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Equal(t, "3", rec.Header().Get("Retry-After"))
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))

	rec = post(newTestHandler(&fakeConverser{reply: okReply(), streamErr: context.DeadlineExceeded}), body, nil)
	require.Equal(t, http.StatusOK, rec.Code)
	got := events(t, rec.Body.String())
	require.Len(t, got, 3, rec.Body.String())
	require.NotEqual(t, "[DONE]", got[len(got)-1])
	var e errorBody
	require.NoError(t, json.Unmarshal([]byte(got[2]), &e))
	require.Equal(t, "server_error", e.Error.Type)
	require.Equal(t, nullable("timeout"), e.Error.Code)
}
