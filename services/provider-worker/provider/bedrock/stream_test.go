package bedrock_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// frame is one event-stream message: an event of type typ, or an exception when
// exception is set.
type frame struct {
	typ, payload string
	exception    bool
}

func ev(typ, payload string) frame { return frame{typ: typ, payload: payload} }

// streamServer answers ConverseStream with frames in the AWS event-stream encoding.
func streamServer(t *testing.T, frames []frame) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/converse-stream") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
		w.WriteHeader(http.StatusOK)
		enc := eventstream.NewEncoder()
		for _, f := range frames {
			var msg eventstream.Message
			if f.exception {
				msg.Headers.Set(":message-type", eventstream.StringValue("exception"))
				msg.Headers.Set(":exception-type", eventstream.StringValue(f.typ))
			} else {
				msg.Headers.Set(":message-type", eventstream.StringValue("event"))
				msg.Headers.Set(":event-type", eventstream.StringValue(f.typ))
			}
			msg.Headers.Set(":content-type", eventstream.StringValue("application/json"))
			msg.Payload = []byte(f.payload)
			if err := enc.Encode(w, msg); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestConverseStream(t *testing.T) {
	t.Parallel()
	text := []frame{
		ev("messageStart", `{"role":"assistant"}`),
		ev("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"Hel"}}`),
		ev("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"lo"}}`),
		ev("contentBlockStop", `{"contentBlockIndex":0}`),
	}
	tool := []frame{
		ev("contentBlockStart", `{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_1","name":"get_weather"}}}`),
		ev("contentBlockDelta", `{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"city\":"}}}`),
		ev("contentBlockDelta", `{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"Paris\"}"}}}`),
		ev("contentBlockStop", `{"contentBlockIndex":1}`),
	}
	stop := func(reason string) frame { return ev("messageStop", `{"stopReason":"`+reason+`"}`) }
	meta := ev("metadata", `{"usage":{"inputTokens":10,"outputTokens":5,"totalTokens":15,"cacheReadInputTokens":2},"metrics":{"latencyMs":100}}`)
	tests := []struct {
		name          string
		frames        []frame
		content, args string
		finish        string
		usage         *providerv1.Usage
		err           string
	}{
		{name: "text with usage", frames: append(append(text[:len(text):len(text)], stop("end_turn")), meta),
			content: "Hello", finish: "end_turn", usage: &providerv1.Usage{PromptTokens: 12, CompletionTokens: 5, TotalTokens: 17, PromptCachedTokens: 2}},
		{name: "tool call fragments", frames: append(append(append(text[:len(text):len(text)], tool...), stop("tool_use")), meta),
			content: "Hello", args: `{"city":"Paris"}`, finish: "tool_use", usage: &providerv1.Usage{PromptTokens: 12, CompletionTokens: 5, TotalTokens: 17, PromptCachedTokens: 2}},
		{name: "no usage", frames: append(text[:len(text):len(text)], stop("end_turn")), content: "Hello", finish: "end_turn"},
		{name: "early end", frames: text, err: "ended before messageStop"},
		{name: "exception mid-stream", frames: append(text[:len(text):len(text)], frame{typ: "modelStreamErrorException", payload: `{"message":"secret-text"}`, exception: true}),
			err: "bedrock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := streamServer(t, tt.frames)
			p := newProvider(t, staticComp(srv.URL))
			var content, args strings.Builder
			var chunks []*providerv1.Chunk
			resp, err := p.ConverseStream(t.Context(), &providerv1.Request{Messages: []*providerv1.Message{{
				Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "hi"}}},
			}}}, func(c *providerv1.Chunk) error {
				chunks = append(chunks, c)
				content.WriteString(c.GetContent())
				for _, tc := range c.GetToolCalls() {
					args.WriteString(tc.GetArguments())
				}
				return nil
			})
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				require.NotContains(t, err.Error(), "secret-text")
				var pe *provider.Error
				require.ErrorAs(t, err, &pe)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.content, content.String())
			require.Equal(t, tt.args, args.String())
			require.Equal(t, tt.finish, chunks[len(chunks)-1].GetFinishReason())
			require.Equal(t, tt.finish, resp.GetChoices()[0].GetFinishReason())
			if tt.usage == nil {
				require.Nil(t, resp.GetUsage())
			} else {
				require.Equal(t, tt.usage.String(), resp.GetUsage().String())
			}
		})
	}
}
