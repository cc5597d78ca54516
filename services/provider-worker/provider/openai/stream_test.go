package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	pt "github.com/parleyhq/parley/services/provider-worker/provider/internal/providertest"
	"github.com/parleyhq/parley/services/provider-worker/provider/mistral"
	"github.com/parleyhq/parley/services/provider-worker/provider/openai"
)

// sseServer answers every request with body as an event stream and keeps the request's
// JSON body.
func sseServer(t *testing.T, body string, got *map[string]any) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if got != nil {
			_ = json.Unmarshal(b, got)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// collect runs ConverseStream and returns the chunks it emitted.
func collect(t *testing.T, p interface {
	ConverseStream(context.Context, *providerv1.Request, func(*providerv1.Chunk) error) (*providerv1.Response, error)
}, req *providerv1.Request,
) ([]*providerv1.Chunk, *providerv1.Response, error) {
	t.Helper()
	var chunks []*providerv1.Chunk
	resp, err := p.ConverseStream(t.Context(), req, func(c *providerv1.Chunk) error {
		chunks = append(chunks, c)
		return nil
	})
	return chunks, resp, err
}

func event(s string) string { return "data: " + s + "\n\n" }

const (
	roleChunk  = `{"id":"c1","object":"chat.completion.chunk","model":"gpt-x","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`
	textChunk1 = `{"id":"c1","object":"chat.completion.chunk","model":"gpt-x","choices":[{"index":0,"delta":{"content":"Bon"},"finish_reason":null}]}`
	textChunk2 = `{"id":"c1","object":"chat.completion.chunk","model":"gpt-x","choices":[{"index":0,"delta":{"content":"jour"},"finish_reason":null}]}`
	stopChunk  = `{"id":"c1","object":"chat.completion.chunk","model":"gpt-x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`
	usageChunk = `{"id":"c1","object":"chat.completion.chunk","model":"gpt-x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`
)

func TestOpenAIStream(t *testing.T) {
	t.Parallel()
	toolCalls := event(`{"model":"gpt-x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}`) +
		event(`{"model":"gpt-x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}`) +
		event(`{"model":"gpt-x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}`) +
		event(`{"model":"gpt-x","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`)
	tests := []struct {
		name, body  string
		content     string
		chunks      int
		finish      string
		usage       *providerv1.Usage
		args        string
		err         string
		retryable   bool
		errHasBytes string // text of the stream that must not reach the error
	}{
		{name: "text with usage", body: ": ping\n\n" + event(roleChunk) + event(textChunk1) + event(textChunk2) + event(stopChunk) + event(usageChunk) + event("[DONE]"),
			content: "Bonjour", chunks: 3, finish: "stop", usage: &providerv1.Usage{PromptTokens: 5, CompletionTokens: 2, TotalTokens: 7}},
		{name: "no usage", body: event(textChunk1) + event(stopChunk) + event("[DONE]"), content: "Bon", chunks: 2, finish: "stop"},
		{name: "tool call fragments", body: toolCalls + event(usageChunk) + event("[DONE]"), chunks: 4, finish: "tool_calls",
			args: `{"city":"Paris"}`, usage: &providerv1.Usage{PromptTokens: 5, CompletionTokens: 2, TotalTokens: 7}},
		{name: "early EOF", body: event(textChunk1) + event(textChunk2), err: "ended before [DONE]", retryable: true},
		{name: "empty body", body: "", err: "ended before [DONE]", retryable: true},
		{name: "malformed event", body: event(textChunk1) + event(`{"choices":[{"delta":{"content":"secret-text`) + event("[DONE]"),
			err: "event 2: malformed chunk", retryable: true, errHasBytes: "secret-text"},
		{name: "wrong type", body: event(`{"choices":[{"index":"zero"}]}`) + event("[DONE]"), err: "event 1: malformed chunk", retryable: true},
		{name: "error event", body: event(textChunk1) + event(`{"error":{"message":"overloaded"}}`), err: "error object", retryable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var sent map[string]any
			srv := sseServer(t, tt.body, &sent)
			p, err := openai.New(component.Component{Metadata: map[string]string{"key": pt.Key, "endpoint": srv.URL}}, provider.Options{})
			require.NoError(t, err)
			chunks, resp, err := collect(t, p, userRequest("hi"))
			require.Equal(t, true, sent["stream"])
			require.Equal(t, map[string]any{"include_usage": true}, sent["stream_options"])
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				require.Equal(t, tt.retryable, provider.IsRetryable(err))
				if tt.errHasBytes != "" {
					require.NotContains(t, err.Error(), tt.errHasBytes)
				}
				return
			}
			require.NoError(t, err)
			require.Len(t, chunks, tt.chunks)
			var content, args strings.Builder
			for _, c := range chunks {
				content.WriteString(c.GetContent())
				for _, tc := range c.GetToolCalls() {
					args.WriteString(tc.GetArguments())
				}
			}
			require.Equal(t, tt.content, content.String())
			require.Equal(t, tt.args, args.String())
			require.Equal(t, tt.finish, chunks[len(chunks)-1].GetFinishReason())
			require.Equal(t, "gpt-x", resp.GetModel())
			require.Len(t, resp.GetChoices(), 1)
			require.Equal(t, tt.finish, resp.GetChoices()[0].GetFinishReason())
			require.Empty(t, resp.GetChoices()[0].GetContent())
			if tt.usage == nil {
				require.Nil(t, resp.GetUsage(), "a stream without usage reports none")
			} else {
				require.Equal(t, tt.usage.String(), resp.GetUsage().String())
			}
			if tt.args != "" {
				first := chunks[0].GetToolCalls()[0]
				require.Equal(t, "call_1", first.GetId())
				require.Equal(t, "get_weather", first.GetName())
			}
		})
	}
}

func TestOpenAIStreamHTTPErrorAndEmitError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":{"message":"slow down","type":"rate_limit"}}`)
	}))
	t.Cleanup(srv.Close)
	p, err := openai.New(component.Component{Metadata: map[string]string{"key": pt.Key, "endpoint": srv.URL}}, provider.Options{})
	require.NoError(t, err)
	_, _, err = collect(t, p, userRequest("hi"))
	require.True(t, provider.IsRetryable(err), "429 is retryable: %v", err)

	// The worker's emit error (cancelled, no credit) stops the stream and is returned as is.
	ok := sseServer(t, event(textChunk1)+event(textChunk2)+event("[DONE]"), nil)
	p, err = openai.New(component.Component{Metadata: map[string]string{"key": pt.Key, "endpoint": ok.URL}}, provider.Options{})
	require.NoError(t, err)
	stop := errors.New("cancelled by the router")
	calls := 0
	_, err = p.ConverseStream(t.Context(), userRequest("hi"), func(*providerv1.Chunk) error { calls++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, calls)
}

func TestMistralStreamSendsNoStreamOptions(t *testing.T) {
	t.Parallel()
	var sent map[string]any
	srv := sseServer(t, event(textChunk1)+event(stopChunk)+event("[DONE]"), &sent)
	p, err := mistral.New(component.Component{Metadata: map[string]string{"key": pt.Key, "endpoint": srv.URL}}, provider.Options{})
	require.NoError(t, err)
	_, _, err = collect(t, p, userRequest("hi"))
	require.NoError(t, err)
	require.Equal(t, true, sent["stream"])
	require.NotContains(t, sent, "stream_options")
}

// FuzzStreamChunk: any event either decodes or fails with an error that quotes no input.
func FuzzStreamChunk(f *testing.F) {
	for _, s := range []string{roleChunk, textChunk1, stopChunk, usageChunk, `{"choices":[{"delta":{"content":[{"type":"text","text":"x"}]}}]}`, `{"error":{}}`, `[`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		srv := sseServer(t, event(s)+event("[DONE]"), nil)
		p, err := openai.New(component.Component{Metadata: map[string]string{"key": pt.Key, "endpoint": srv.URL}}, provider.Options{})
		require.NoError(t, err)
		_, _, _ = collect(t, p, userRequest("hi"))
	})
}
