package anthropic

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// FuzzDecodeResponse checks that any answer body decodes or fails without panicking, and
// that a decoded answer is well formed: one choice, a finish reason, and tool-call
// arguments that are valid JSON.
func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(`{"type":"message","model":"m","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn",` +
		`"usage":{"input_tokens":1,"output_tokens":2,"cache_read_input_tokens":3}}`))
	f.Add([]byte(`{"type":"message","content":[{"type":"tool_use","id":"t","name":"f","input":{"a":[1,2,{"b":null}]}}]}`))
	f.Add([]byte(`{"type":"message","content":[{"type":"tool_use","input":"x"}]}`))
	f.Add([]byte(`{"type":"error","error":{"type":"overloaded_error","message":"x"}}`))
	f.Add([]byte(`{"type":"message","usage":{"input_tokens":-1}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := decodeResponse(data, "")
		if err != nil {
			require.Nil(t, res)
			return
		}
		require.Len(t, res.GetChoices(), 1)
		c := res.GetChoices()[0]
		require.NotEmpty(t, c.GetFinishReason())
		for _, tc := range c.GetToolCalls() {
			require.True(t, json.Valid([]byte(tc.GetArguments())), "arguments %q", tc.GetArguments())
		}
		if u := res.GetUsage(); u != nil {
			require.Equal(t, u.GetPromptTokens()+u.GetCompletionTokens(), u.GetTotalTokens())
		}
	})
}

// FuzzToolInput checks that tool-call arguments either become a compact JSON object or are
// refused, and never panic.
func FuzzToolInput(f *testing.F) {
	for _, s := range []string{``, `{}`, ` {"a": 1} `, `{"a":`, `[1]`, `"x"`, `null`, `{"a":"\u00e9"}`, `{} {}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, args string) {
		in, err := toolInput(args)
		if err != nil {
			require.Nil(t, in)
			return
		}
		var obj map[string]any
		require.NoError(t, json.Unmarshal(in, &obj), "input %q", in)
		require.NotNil(t, obj)
	})
}

// FuzzEncodeRequest checks that any text and tool-call arguments give a valid JSON body
// or an error, never a panic, and that texts survive the encoding.
func FuzzEncodeRequest(f *testing.F) {
	f.Add("hello", `{"city":"Paris"}`, "auto")
	f.Add("", "", "none")
	f.Add("\x00\xff", `{"a":`, "required")
	f.Add("x", `{"a":1}`, "f")
	f.Fuzz(func(t *testing.T, text, args, choice string) {
		req := &providerv1.Request{
			Messages: []*providerv1.Message{
				{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: text}}}},
				{Role: providerv1.Role_ROLE_ASSISTANT, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolCall{
					ToolCall: &providerv1.ToolCall{Id: "t", Name: "f", Arguments: args},
				}}}},
			},
			Tools:      []*providerv1.Tool{{Type: "function", Name: "f"}},
			ToolChoice: choice,
		}
		body, _, err := encodeRequest("m", req, nil)
		if err != nil {
			return
		}
		require.True(t, json.Valid(body))
		var decoded messagesRequest
		require.NoError(t, json.Unmarshal(body, &decoded))
		if text != "" && strings.ToValidUTF8(text, "\uFFFD") == text {
			require.Equal(t, text, decoded.Messages[0].Content[0].Text)
		}
	})
}
