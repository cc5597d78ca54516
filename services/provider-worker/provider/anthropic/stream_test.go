package anthropic_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

func sse(typ, data string) string { return "event: " + typ + "\ndata: " + data + "\n\n" }

const (
	evStart    = `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"usage":{"input_tokens":25,"cache_read_input_tokens":5,"output_tokens":1}}}`
	evText0    = `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`
	evHello    = `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}`
	evLo       = `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}`
	evStop0    = `{"type":"content_block_stop","index":0}`
	evTool1    = `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}`
	evArgs1a   = `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}`
	evArgs1b   = `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}`
	evStop1    = `{"type":"content_block_stop","index":1}`
	evDelta    = `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}`
	evToolUse  = `{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":20}}`
	evMsgStop  = `{"type":"message_stop"}`
	evPing     = `{"type":"ping"}`
	evOverload = `{"type":"error","error":{"type":"overloaded_error","message":"secret-text Overloaded"}}`
)

func TestConverseStream(t *testing.T) {
	t.Parallel()
	full := sse("message_start", evStart) + sse("ping", evPing) + sse("content_block_start", evText0) +
		sse("content_block_delta", evHello) + sse("content_block_delta", evLo) + sse("content_block_stop", evStop0)
	tests := []struct {
		name, body    string
		content, args string
		finish        string
		usage         *providerv1.Usage
		err           string
	}{
		{name: "text, usage split over start and delta", body: full + sse("message_delta", evDelta) + sse("message_stop", evMsgStop),
			content: "Hello", finish: "end_turn", usage: &providerv1.Usage{PromptTokens: 30, CompletionTokens: 15, TotalTokens: 45, PromptCachedTokens: 5}},
		{name: "tool call fragments", body: full + sse("content_block_start", evTool1) + sse("content_block_delta", evArgs1a) +
			sse("content_block_delta", evArgs1b) + sse("content_block_stop", evStop1) + sse("message_delta", evToolUse) + sse("message_stop", evMsgStop),
			content: "Hello", args: `{"city": "Paris"}`, finish: "tool_use", usage: &providerv1.Usage{PromptTokens: 30, CompletionTokens: 20, TotalTokens: 50, PromptCachedTokens: 5}},
		{name: "no usage", body: sse("content_block_start", evText0) + sse("content_block_delta", evHello) + sse("message_stop", evMsgStop),
			content: "Hel", finish: "unknown"},
		{name: "early EOF", body: full, err: "ended before message_stop"},
		{name: "error event", body: full + sse("error", evOverload), err: `error event of type "overloaded_error"`},
		{name: "malformed event", body: full + "data: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"secret-text\n\n", err: "event 7: malformed JSON"},
		{name: "delta before its block", body: sse("content_block_delta", evHello), err: "did not start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI(t, http.StatusOK, tt.body, map[string]string{"Content-Type": "text/event-stream"})
			p := newProvider(t, comp("key", testKey, "endpoint", api.srv.URL+"/v1"))
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
			var sent map[string]any
			require.NoError(t, json.Unmarshal(api.requests()[0].body, &sent))
			require.Equal(t, true, sent["stream"])
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				require.NotContains(t, err.Error(), "secret-text")
				require.True(t, provider.IsRetryable(err))
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
				requireProtoEqual(t, tt.usage, resp.GetUsage())
				require.Equal(t, "claude-x", resp.GetModel())
			}
			if tt.args != "" {
				var first *providerv1.ToolCallDelta
				for _, c := range chunks {
					if len(c.GetToolCalls()) > 0 {
						first = c.GetToolCalls()[0]
						break
					}
				}
				require.Equal(t, "toolu_1", first.GetId())
				require.Equal(t, "get_weather", first.GetName())
				require.Equal(t, int32(0), first.GetIndex(), "tool calls are numbered apart from text blocks")
			}
		})
	}
}

// FuzzStreamEvent: any event sequence either ends with an answer or an error, never a panic.
func FuzzStreamEvent(f *testing.F) {
	for _, s := range []string{evStart, evText0, evHello, evTool1, evArgs1a, evDelta, evMsgStop, evOverload, `{"type":"content_block_start","index":-1}`, `[`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		api := newFakeAPI(t, http.StatusOK, sse("x", evStart)+sse("x", evText0)+"data: "+s+"\n\n"+sse("x", evMsgStop), nil)
		p := newProvider(t, comp("key", testKey, "endpoint", api.srv.URL+"/v1"))
		_, _ = p.ConverseStream(t.Context(), &providerv1.Request{Messages: []*providerv1.Message{{
			Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "hi"}}},
		}}}, func(*providerv1.Chunk) error { return nil })
	})
}
