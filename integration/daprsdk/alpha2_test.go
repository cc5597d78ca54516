package daprsdk_test

import (
	"strings"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func content(texts ...string) []*dapr.ConversationMessageContentAlpha2 {
	out := make([]*dapr.ConversationMessageContentAlpha2, len(texts))
	for i, s := range texts {
		out[i] = &dapr.ConversationMessageContentAlpha2{Text: ptr(s)}
	}
	return out
}

func user(texts ...string) *dapr.ConversationMessageAlpha2 {
	return &dapr.ConversationMessageAlpha2{ConversationMessageOfUser: &dapr.ConversationMessageOfUserAlpha2{Content: content(texts...)}}
}

func system(texts ...string) *dapr.ConversationMessageAlpha2 {
	return &dapr.ConversationMessageAlpha2{ConversationMessageOfSystem: &dapr.ConversationMessageOfSystemAlpha2{Content: content(texts...)}}
}

func developer(texts ...string) *dapr.ConversationMessageAlpha2 {
	return &dapr.ConversationMessageAlpha2{ConversationMessageOfDeveloper: &dapr.ConversationMessageOfDeveloperAlpha2{Content: content(texts...)}}
}

func assistant(text string, calls ...*dapr.ConversationToolCallsAlpha2) *dapr.ConversationMessageAlpha2 {
	return &dapr.ConversationMessageAlpha2{ConversationMessageOfAssistant: &dapr.ConversationMessageOfAssistantAlpha2{
		Content: content(text), ToolCalls: calls,
	}}
}

// tool is a tool result. Name must be set: the SDK dereferences it and panics on nil.
func tool(id, name, text string) *dapr.ConversationMessageAlpha2 {
	return &dapr.ConversationMessageAlpha2{ConversationMessageOfTool: &dapr.ConversationMessageOfToolAlpha2{
		ToolID: ptr(id), Name: ptr(name), Content: content(text),
	}}
}

func call(id, name, args string) *dapr.ConversationToolCallsAlpha2 {
	return &dapr.ConversationToolCallsAlpha2{ID: id, ToolTypes: dapr.ConversationToolAlpha2{Name: name, Arguments: args}}
}

func input(msgs ...*dapr.ConversationMessageAlpha2) *dapr.ConversationInputAlpha2 {
	return &dapr.ConversationInputAlpha2{Messages: msgs}
}

func scrubbed(msgs ...*dapr.ConversationMessageAlpha2) *dapr.ConversationInputAlpha2 {
	return &dapr.ConversationInputAlpha2{Messages: msgs, ScrubPII: ptr(true)}
}

func inputs(in ...*dapr.ConversationInputAlpha2) []*dapr.ConversationInputAlpha2 { return in }

// answer is the echo component's response as the SDK returns it: one output, one choice at
// index 0, word-count usage, no model.
func answer(text, finish string, words uint64, calls ...*dapr.ConversationToolCallsAlpha2) *dapr.ConversationResponseAlpha2 {
	if calls == nil {
		calls = []*dapr.ConversationToolCallsAlpha2{}
	}
	return &dapr.ConversationResponseAlpha2{Outputs: []*dapr.ConversationResultAlpha2{{
		Choices: []*dapr.ConversationResultChoicesAlpha2{{
			FinishReason: finish,
			Message:      &dapr.ConversationResultMessageAlpha2{Content: text, ToolCalls: calls},
		}},
		Usage: &dapr.ConversationResultAlpha2CompletionUsage{CompletionTokens: words, PromptTokens: words, TotalTokens: 2 * words},
	}}}
}

func withContextID(res *dapr.ConversationResponseAlpha2, id string) *dapr.ConversationResponseAlpha2 {
	res.ContextID = id
	return res
}

func mustStruct(t *testing.T, v map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(v)
	require.NoError(t, err)
	return s
}

func mustAny(t *testing.T, v *wrapperspb.Int64Value) *anypb.Any {
	t.Helper()
	a, err := anypb.New(v)
	require.NoError(t, err)
	return a
}

// TestAlpha2 compares whole SDK responses with the echo component's exact behaviour
// (reference: dapr-conversation-api.md §2.5 and §4.3), on Dapr's gRPC port and on the
// router's main port.
func TestAlpha2(t *testing.T) {
	need(t)
	t.Parallel()
	weather := &dapr.ConversationToolsAlpha2{
		Name: "get_weather", Description: ptr("Weather at a place"),
		Parameters: mustStruct(t, map[string]any{
			"type":       "object",
			"properties": map[string]any{"unit": map[string]any{"type": "string"}, "location": map[string]any{"type": "string"}},
			"required":   []any{"location"},
		}),
	}
	clock := &dapr.ConversationToolsAlpha2{Name: "get_time"}
	toolCalls := []*dapr.ConversationToolCallsAlpha2{call("0", "get_weather", "location,unit"), call("1", "get_time", "")}
	toolAnswer := answer("what now", "tool_calls", 2, toolCalls...)

	tests := []struct {
		name string
		req  dapr.ConversationRequestAlpha2
		want *dapr.ConversationResponseAlpha2
	}{
		{
			name: "user text",
			req:  dapr.ConversationRequestAlpha2{Inputs: inputs(input(user("well hello there")))},
			want: answer("well hello there", "stop", 3),
		},
		{
			name: "system, named user and developer messages flattened across inputs",
			req: dapr.ConversationRequestAlpha2{Inputs: inputs(
				input(system("You are a helpful assistant")),
				input(&dapr.ConversationMessageAlpha2{ConversationMessageOfUser: &dapr.ConversationMessageOfUserAlpha2{
					Name: ptr("alice"), Content: content("well hello", "there"),
				}}, developer("be brief")),
			)},
			want: answer("You are a helpful assistant\nwell hello\nthere\nbe brief", "stop", 10),
		},
		{
			name: "tool result",
			req:  dapr.ConversationRequestAlpha2{Inputs: inputs(input(tool("tool-123", "tool name", "tool message")))},
			want: answer("Tool Response for tool ID 'tool-123' with name 'tool name': tool message", "stop", 12),
		},
		{
			name: "tool result without id",
			req: dapr.ConversationRequestAlpha2{Inputs: inputs(input(&dapr.ConversationMessageAlpha2{ConversationMessageOfTool: &dapr.ConversationMessageOfToolAlpha2{
				Name: ptr("clock"), Content: content("noon"),
			}}))},
			want: answer("Tool Response for tool ID '' with name 'clock': noon", "stop", 10),
		},
		{
			name: "assistant tool call and its result",
			req: dapr.ConversationRequestAlpha2{Inputs: inputs(input(
				user("weather in Paris?"),
				assistant("let me check", call("call_1", "get_weather", `{"location":"Paris"}`)),
				tool("call_1", "get_weather", "sunny"),
			))},
			want: answer("weather in Paris?\nlet me check\nTool Response for tool ID 'call_1' with name 'get_weather': sunny", "tool_calls", 16,
				call("call_1", "get_weather", `{"location":"Paris"}`)),
		},
		{
			name: "assistant tool call with an empty id",
			req:  dapr.ConversationRequestAlpha2{Inputs: inputs(input(assistant("calling", call("", "get_time", "{}"))))},
			want: answer("calling", "tool_calls", 1, call("", "get_time", "{}")),
		},
		{
			name: "tools without tool choice (auto)",
			req:  dapr.ConversationRequestAlpha2{Inputs: inputs(input(user("what now"))), Tools: []*dapr.ConversationToolsAlpha2{weather, clock}},
			want: toolAnswer,
		},
		{
			name: "tool choice auto",
			req: dapr.ConversationRequestAlpha2{Inputs: inputs(input(user("what now"))), Tools: []*dapr.ConversationToolsAlpha2{weather, clock},
				ToolChoice: ptr(dapr.ToolChoiceAutoAlpha2)},
			want: toolAnswer,
		},
		{
			// Dapr's echo ignores the tool choice: every tool still becomes a call.
			name: "tool choice none",
			req: dapr.ConversationRequestAlpha2{Inputs: inputs(input(user("what now"))), Tools: []*dapr.ConversationToolsAlpha2{weather, clock},
				ToolChoice: ptr(dapr.ToolChoiceNoneAlpha2)},
			want: toolAnswer,
		},
		{
			name: "tool choice required",
			req: dapr.ConversationRequestAlpha2{Inputs: inputs(input(user("what now"))), Tools: []*dapr.ConversationToolsAlpha2{weather, clock},
				ToolChoice: ptr(dapr.ToolChoiceRequiredAlpha2)},
			want: toolAnswer,
		},
		{
			name: "tool choice by name",
			req: dapr.ConversationRequestAlpha2{Inputs: inputs(input(user("what now"))), Tools: []*dapr.ConversationToolsAlpha2{weather, clock},
				ToolChoice: ptr(dapr.ToolChoiceAlpha2("get_time"))},
			want: toolAnswer,
		},
		{
			name: "nil tools are skipped by the SDK",
			req:  dapr.ConversationRequestAlpha2{Inputs: inputs(input(user("what now"))), Tools: []*dapr.ConversationToolsAlpha2{nil, clock}},
			want: answer("what now", "tool_calls", 2, call("0", "get_time", "")),
		},
		{
			// Dapr checks a tool name against the tools only when there are tools.
			name: "tool choice by name without tools",
			req:  dapr.ConversationRequestAlpha2{Inputs: inputs(input(user("what now"))), ToolChoice: ptr(dapr.ToolChoiceAlpha2("get_time"))},
			want: answer("what now", "stop", 2),
		},
		{
			name: "scrub one input",
			req:  dapr.ConversationRequestAlpha2{Inputs: inputs(scrubbed(user("my email is test@test.com")), input(user("from 10.8.9.1")))},
			want: answer("my email is <EMAIL_ADDRESS>\nfrom 10.8.9.1", "stop", 6),
		},
		{
			name: "scrub outputs",
			req:  dapr.ConversationRequestAlpha2{Inputs: inputs(input(user("my email is test@test.com")), input(user("from 10.8.9.1"))), ScrubPII: ptr(true)},
			want: answer("my email is <EMAIL_ADDRESS>\nfrom <IP>", "stop", 6),
		},
		{
			name: "scrub a tool result",
			req:  dapr.ConversationRequestAlpha2{Inputs: inputs(scrubbed(tool("t1", "lookup", "well hello there, my phone number is +2222222222")))},
			want: answer("Tool Response for tool ID 't1' with name 'lookup': well hello there, my phone number is <PHONE_NUMBER>", "stop", 17),
		},
		{
			// The SDK sends an input without messages as an empty input; echo answers
			// a conversation without messages with no outputs.
			name: "input without messages",
			req:  dapr.ConversationRequestAlpha2{Inputs: inputs(&dapr.ConversationInputAlpha2{})},
			want: &dapr.ConversationResponseAlpha2{Outputs: []*dapr.ConversationResultAlpha2{}},
		},
		{
			name: "scrub flags false",
			req: dapr.ConversationRequestAlpha2{Inputs: inputs(&dapr.ConversationInputAlpha2{Messages: []*dapr.ConversationMessageAlpha2{user("from 10.8.9.1")}, ScrubPII: ptr(false)}),
				ScrubPII: ptr(false)},
			want: answer("from 10.8.9.1", "stop", 2),
		},
		{
			name: "context id and every option",
			req: dapr.ConversationRequestAlpha2{
				ContextID:            ptr("test-conversation-123"),
				Inputs:               inputs(input(user("well hello there")), input(system("You are a helpful assistant"))),
				Parameters:           map[string]*anypb.Any{"max_tokens": mustAny(t, wrapperspb.Int64(100))},
				Metadata:             map[string]string{"team": "blue"},
				ScrubPII:             ptr(true),
				Temperature:          ptr(0.7),
				Tools:                []*dapr.ConversationToolsAlpha2{{Name: "test_function", Description: ptr("A test function"), Parameters: mustStruct(t, map[string]any{"type": "object", "properties": map[string]any{"param1": map[string]any{"type": "string"}}, "required": []any{"param1"}})}},
				ToolChoice:           ptr(dapr.ToolChoiceAutoAlpha2),
				ResponseFormat:       mustStruct(t, map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"type": "string"}}}),
				PromptCacheRetention: durationpb.New(24 * time.Hour),
			},
			want: withContextID(answer("well hello there\nYou are a helpful assistant", "tool_calls", 8, call("0", "test_function", "param1")), "test-conversation-123"),
		},
	}
	for _, addr := range []string{st.RouterGRPCAddr(), strings.TrimPrefix(st.URL("router"), "http://")} {
		client := newClient(t, addr)
		for _, tt := range tests {
			t.Run(addr+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				req := tt.req
				req.Name = "echo-nocache"
				got, err := client.ConverseAlpha2(t.Context(), req)
				require.NoError(t, err)
				require.Equal(t, tt.want, got)
			})
		}
	}
}

// TestAlpha2Cache: the second identical call is answered from the response cache, which
// the SDK does not show; the gRPC response metadata parley-cache does.
func TestAlpha2Cache(t *testing.T) {
	need(t)
	t.Parallel()
	client := newClient(t, "")
	n := nonce(t)
	req := dapr.ConversationRequestAlpha2{Name: "echo", Inputs: inputs(scrubbed(user("cache me at test@test.com " + n)))}
	want := answer("cache me at <EMAIL_ADDRESS> "+n, "stop", 5)
	for _, wantCache := range []string{"miss", "hit"} {
		var md metadata.MD
		got, err := client.ConverseAlpha2(withHeader(t.Context(), &md), req)
		require.NoError(t, err)
		require.Equal(t, want, got)
		require.Equal(t, []string{wantCache}, md.Get("parley-cache"))
		require.Len(t, md.Get("parley-request-id"), 1)
	}
}
