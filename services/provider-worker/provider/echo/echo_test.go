package echo_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/provider-worker/provider/echo"
)

func text(s string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_Text{Text: s}}
}

func msg(role providerv1.Role, parts ...*providerv1.Part) *providerv1.Message {
	return &providerv1.Message{Role: role, Parts: parts}
}

func toolCallPart(id, name, args string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{
		Id: id, Type: "function", Name: name, Arguments: args,
	}}}
}

func toolResultPart(id, name, content string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_ToolResult{ToolResult: &providerv1.ToolResult{
		ToolCallId: id, Name: name, Content: content,
	}}}
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}

func usage(n uint64) *providerv1.Usage {
	return &providerv1.Usage{PromptTokens: n, CompletionTokens: n, TotalTokens: 2 * n}
}

func requireProtoEqual(t *testing.T, want, got proto.Message) {
	t.Helper()
	if !proto.Equal(want, got) {
		require.Fail(t, "protos differ",
			"want: %s\ngot:  %s", prototext.Format(want), prototext.Format(got))
	}
}

func TestConverse(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		req     func(t *testing.T) *providerv1.Request
		want    *providerv1.Response
		wantErr string
	}{
		{
			// dapr tests/integration/suite/daprd/conversation: of_user
			name: "user message",
			req: func(*testing.T) *providerv1.Request {
				return &providerv1.Request{Messages: []*providerv1.Message{
					msg(providerv1.Role_ROLE_USER, text("user message")),
				}}
			},
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "user message"}},
				Usage:   usage(2),
			},
		},
		{
			// of_tool
			name: "tool message",
			req: func(*testing.T) *providerv1.Request {
				return &providerv1.Request{Messages: []*providerv1.Message{
					msg(providerv1.Role_ROLE_TOOL, toolResultPart("tool-123", "tool name", "tool message")),
				}}
			},
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{
					FinishReason: "stop",
					Content:      "Tool Response for tool ID 'tool-123' with name 'tool name': tool message",
				}},
				Usage: usage(12),
			},
		},
		{
			// the two-input HTTP example with a tool
			name: "two inputs with test_function tool",
			req: func(t *testing.T) *providerv1.Request {
				return &providerv1.Request{
					Messages: []*providerv1.Message{
						msg(providerv1.Role_ROLE_USER, text("well hello there")),
						msg(providerv1.Role_ROLE_SYSTEM, text("You are a helpful assistant")),
					},
					Tools: []*providerv1.Tool{{
						Type:        "function",
						Name:        "test_function",
						Description: "A test function",
						Parameters: mustStruct(t, map[string]any{
							"type":       "object",
							"properties": map[string]any{"param1": map[string]any{"type": "string"}},
							"required":   []any{"param1"},
						}),
					}},
					ToolChoice:  "auto",
					Temperature: 0.7,
				}
			},
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{
					FinishReason: "tool_calls",
					Content:      "well hello there\nYou are a helpful assistant",
					ToolCalls: []*providerv1.ToolCall{{
						Id: "0", Type: "function", Name: "test_function", Arguments: "param1",
					}},
				}},
				Usage: usage(8),
			},
		},
		{
			// of_assistant
			name: "assistant message with tool call",
			req: func(*testing.T) *providerv1.Request {
				return &providerv1.Request{Messages: []*providerv1.Message{
					msg(providerv1.Role_ROLE_ASSISTANT, text("assistant message"),
						toolCallPart("call_123", "test_function", "test-string")),
				}}
			},
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{
					FinishReason: "tool_calls",
					Content:      "assistant message",
					ToolCalls: []*providerv1.ToolCall{{
						Id: "call_123", Type: "function", Name: "test_function", Arguments: "test-string",
					}},
				}},
				Usage: usage(2),
			},
		},
		{
			// multiple messages in conversation
			name: "multiple messages joined by newlines",
			req: func(*testing.T) *providerv1.Request {
				return &providerv1.Request{Messages: []*providerv1.Message{
					msg(providerv1.Role_ROLE_USER, text("first user message")),
					msg(providerv1.Role_ROLE_ASSISTANT, text("first assistant response")),
					msg(providerv1.Role_ROLE_USER, text("second user message")),
					msg(providerv1.Role_ROLE_SYSTEM, text("system instruction")),
				}}
			},
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{
					FinishReason: "stop",
					Content:      "first user message\nfirst assistant response\nsecond user message\nsystem instruction",
				}},
				Usage: usage(11),
			},
		},
		{
			name: "request tools come before message tool calls; parts keep their order",
			req: func(t *testing.T) *providerv1.Request {
				return &providerv1.Request{
					Messages: []*providerv1.Message{
						msg(providerv1.Role_ROLE_USER, text("a"), text("b")),
						msg(providerv1.Role_ROLE_ASSISTANT, toolCallPart("", "lookup", `{"q":"x"}`), text("c")),
						msg(providerv1.Role_ROLE_TOOL, toolResultPart("", "lookup", "")),
					},
					Tools: []*providerv1.Tool{
						{Type: "function", Name: "zeta", Parameters: mustStruct(t, map[string]any{
							"properties": map[string]any{"c": 1, "a": 2, "b": 3},
						})},
						{Type: "function", Name: "no_params"},
						{Type: "function", Name: "no_properties", Parameters: mustStruct(t, map[string]any{"type": "object"})},
						{Type: "function", Name: "empty_properties", Parameters: mustStruct(t, map[string]any{"properties": map[string]any{}})},
						{Type: "", Name: "untyped"},
					},
				}
			},
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{
					FinishReason: "tool_calls",
					Content:      "a\nb\nc\nTool Response for tool ID '' with name 'lookup': ",
					ToolCalls: []*providerv1.ToolCall{
						{Id: "0", Type: "function", Name: "zeta", Arguments: "a,b,c"},
						{Id: "1", Type: "function", Name: "no_params"},
						{Id: "2", Type: "function", Name: "no_properties"},
						{Id: "3", Type: "function", Name: "empty_properties"},
						{Id: "4", Name: "untyped"},
						{Type: "function", Name: "lookup", Arguments: `{"q":"x"}`},
					},
				}},
				Usage: usage(12),
			},
		},
		{
			name: "words are split on any whitespace",
			req: func(*testing.T) *providerv1.Request {
				return &providerv1.Request{Messages: []*providerv1.Message{
					msg(providerv1.Role_ROLE_USER, text("  one\ttwo \n three  "), text("")),
				}}
			},
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "  one\ttwo \n three  \n"}},
				Usage:   usage(3),
			},
		},
		{
			name: "message without parts",
			req: func(*testing.T) *providerv1.Request {
				return &providerv1.Request{Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER)}}
			},
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{FinishReason: "stop"}},
				Usage:   usage(0),
			},
		},
		{
			name: "empty tool call and tool result parts",
			req: func(*testing.T) *providerv1.Request {
				return &providerv1.Request{Messages: []*providerv1.Message{
					msg(providerv1.Role_ROLE_ASSISTANT,
						&providerv1.Part{Kind: &providerv1.Part_ToolCall{}},
						&providerv1.Part{Kind: &providerv1.Part_ToolResult{}}),
				}}
			},
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{
					FinishReason: "tool_calls",
					Content:      "Tool Response for tool ID '' with name '': ",
					ToolCalls:    []*providerv1.ToolCall{{}},
				}},
				Usage: usage(9),
			},
		},
		{
			name: "no messages gives no choices",
			req: func(*testing.T) *providerv1.Request {
				return &providerv1.Request{Tools: []*providerv1.Tool{{Type: "function", Name: "f"}}}
			},
			want: &providerv1.Response{},
		},
		{
			name: "nil request",
			req:  func(*testing.T) *providerv1.Request { return nil },
			want: &providerv1.Response{},
		},
		{
			name: "properties that are not an object",
			req: func(t *testing.T) *providerv1.Request {
				return &providerv1.Request{
					Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("hi"))},
					Tools: []*providerv1.Tool{{Type: "function", Name: "bad", Parameters: mustStruct(t, map[string]any{
						"properties": "param1",
					})}},
				}
			},
			wantErr: `echo: tool 0 ("bad"): parameters.properties must be an object, got a string`,
		},
		{
			name: "properties null",
			req: func(t *testing.T) *providerv1.Request {
				return &providerv1.Request{
					Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("hi"))},
					Tools: []*providerv1.Tool{{Type: "function", Name: "f", Parameters: mustStruct(t, map[string]any{
						"properties": nil,
					})}},
				}
			},
			wantErr: `echo: tool 0 ("f"): parameters.properties must be an object, got null`,
		},
		{
			name: "part without kind",
			req: func(*testing.T) *providerv1.Request {
				return &providerv1.Request{Messages: []*providerv1.Message{
					msg(providerv1.Role_ROLE_USER, text("ok")),
					msg(providerv1.Role_ROLE_USER, text("ok"), &providerv1.Part{}),
				}}
			},
			wantErr: "echo: message 1 part 1: invalid content type (no kind set)",
		},
	}

	p := echo.New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := tt.req(t)
			before := proto.Clone(req)
			got, err := p.Converse(t.Context(), req)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			requireProtoEqual(t, tt.want, got)
			requireProtoEqual(t, before, req) // the request is not modified
			require.Empty(t, got.GetModel())
		})
	}
}

func TestConverseDoesNotAliasRequest(t *testing.T) {
	t.Parallel()
	req := &providerv1.Request{Messages: []*providerv1.Message{
		msg(providerv1.Role_ROLE_ASSISTANT, toolCallPart("id", "f", "{}")),
	}}
	got, err := echo.New().Converse(t.Context(), req)
	require.NoError(t, err)
	got.GetChoices()[0].GetToolCalls()[0].Name = "changed"
	require.Equal(t, "f", req.GetMessages()[0].GetParts()[0].GetToolCall().GetName())
}

func TestConverseContextDone(t *testing.T) {
	t.Parallel()
	req := &providerv1.Request{Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("hi"))}}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	got, err := echo.New().Converse(ctx, req)
	require.ErrorIs(t, err, context.Canceled)
	require.Nil(t, got)

	ctx, cancel = context.WithTimeout(t.Context(), 0)
	defer cancel()
	got, err = echo.New().Converse(ctx, req)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Nil(t, got)
}

func TestConverseConcurrent(t *testing.T) {
	t.Parallel()
	p := echo.New()
	req := &providerv1.Request{Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("hello there"))}}
	done := make(chan *providerv1.Response)
	for range 8 {
		go func() {
			resp, err := p.Converse(t.Context(), req)
			if err != nil {
				done <- nil
				return
			}
			done <- resp
		}()
	}
	for range 8 {
		resp := <-done
		require.NotNil(t, resp)
		require.Equal(t, "hello there", resp.GetChoices()[0].GetContent())
	}
}

func BenchmarkConverse(b *testing.B) {
	params, err := structpb.NewStruct(map[string]any{
		"type": "object",
		"properties": map[string]any{
			"location": map[string]any{"type": "string"},
			"unit":     map[string]any{"type": "string", "enum": []any{"celsius", "fahrenheit"}},
		},
		"required": []any{"location"},
	})
	require.NoError(b, err)
	req := &providerv1.Request{
		Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_SYSTEM, text("You are a helpful assistant that answers briefly.")),
			msg(providerv1.Role_ROLE_USER, text("What is the weather like in San Francisco today?")),
			msg(providerv1.Role_ROLE_ASSISTANT, toolCallPart("call_1", "get_weather", `{"location":"San Francisco, CA"}`)),
			msg(providerv1.Role_ROLE_TOOL, toolResultPart("call_1", "get_weather", `{"temperature":18,"unit":"celsius"}`)),
		},
		Tools: []*providerv1.Tool{{Type: "function", Name: "get_weather", Parameters: params}},
	}
	p := echo.New()
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Converse(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func TestWordsConcatenateToTheText(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", " ", "a", "a b", "  lead and trail  ", "x\ny\tz", "héllo wörld"} {
		got := echo.Words(s)
		if strings.Join(got, "") != s {
			t.Errorf("Words(%q) = %q, does not concatenate back", s, got)
		}
		if len(got) != max(1, len(strings.Fields(s))) && s != "" {
			t.Errorf("Words(%q) = %q, want one piece per word", s, got)
		}
	}
}
