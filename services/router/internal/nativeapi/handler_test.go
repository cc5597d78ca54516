package nativeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

func TestFromNative(t *testing.T) {
	t.Parallel()
	user := &conversationv1.Message{Role: conversationv1.Role_ROLE_USER, Content: "hi"}
	neg := int64(-1)
	hot := 3.0
	tests := []struct {
		name    string
		req     *conversationv1.ConverseRequest
		wantErr string
		check   func(t *testing.T, r conversation.Request)
	}{
		{name: "no component", req: &conversationv1.ConverseRequest{Messages: []*conversationv1.Message{user}}, wantErr: "component is required"},
		{name: "no messages", req: &conversationv1.ConverseRequest{Component: "c"}, wantErr: "messages must not be empty"},
		{name: "huge component name", req: &conversationv1.ConverseRequest{Component: strings.Repeat("c", 3<<20), Messages: []*conversationv1.Message{user}}, wantErr: "component name is longer than 253 bytes"},
		{name: "bad max tokens", req: &conversationv1.ConverseRequest{Component: "c", Messages: []*conversationv1.Message{user}, MaxTokens: &neg}, wantErr: "max_tokens"},
		{name: "bad temperature", req: &conversationv1.ConverseRequest{Component: "c", Messages: []*conversationv1.Message{user}, Temperature: &hot}, wantErr: "temperature"},
		{name: "required without tools", req: &conversationv1.ConverseRequest{Component: "c", Messages: []*conversationv1.Message{user}, ToolChoice: "required"}, wantErr: "needs at least one tool"},
		{name: "unknown tool", req: &conversationv1.ConverseRequest{Component: "c", Messages: []*conversationv1.Message{user}, Tools: []*conversationv1.Tool{{Name: "f"}}, ToolChoice: "g"}, wantErr: `"g" names no tool`},
		{name: "no role", req: &conversationv1.ConverseRequest{Component: "c", Messages: []*conversationv1.Message{{Content: "x"}}}, wantErr: "messages[0]: role is required"},
		{name: "unknown scrub mode", req: &conversationv1.ConverseRequest{Component: "c", Messages: []*conversationv1.Message{user}, Scrub: &conversationv1.Scrub{Mode: 9}}, wantErr: "unknown scrub mode 9"},
		{
			name: "tokenize",
			req: &conversationv1.ConverseRequest{Component: "c", Messages: []*conversationv1.Message{user},
				Scrub: &conversationv1.Scrub{Inputs: true, Mode: conversationv1.ScrubMode_SCRUB_MODE_TOKENIZE}},
			check: func(t *testing.T, r conversation.Request) {
				t.Helper()
				require.True(t, r.Tokenize)
				require.Equal(t, []bool{true}, r.ScrubInput)
				require.False(t, r.ScrubOutput)
			},
		},
		{
			name: "every role and option",
			req: &conversationv1.ConverseRequest{
				Component: "c",
				Messages: []*conversationv1.Message{
					{Role: conversationv1.Role_ROLE_SYSTEM, Content: "s"},
					{Role: conversationv1.Role_ROLE_DEVELOPER, Content: "d"},
					user,
					{Role: conversationv1.Role_ROLE_ASSISTANT, ToolCalls: []*conversationv1.ToolCall{{Id: "1", Name: "f", Arguments: "{}"}}},
					{Role: conversationv1.Role_ROLE_TOOL, ToolCallId: "1", Name: "f", Content: "r"},
				},
				Tools:     []*conversationv1.Tool{{Name: "f"}},
				Stop:      []string{"END"},
				Scrub:     &conversationv1.Scrub{Inputs: true, Outputs: true},
				CacheMode: conversationv1.CacheMode_CACHE_MODE_BYPASS,
			},
			check: func(t *testing.T, r conversation.Request) {
				t.Helper()
				p := r.Provider
				require.Equal(t, "auto", p.GetToolChoice(), "tools default to auto")
				require.Equal(t, []providerv1.Role{providerv1.Role_ROLE_SYSTEM, providerv1.Role_ROLE_DEVELOPER, providerv1.Role_ROLE_USER,
					providerv1.Role_ROLE_ASSISTANT, providerv1.Role_ROLE_TOOL}, []providerv1.Role{
					p.GetMessages()[0].GetRole(), p.GetMessages()[1].GetRole(), p.GetMessages()[2].GetRole(),
					p.GetMessages()[3].GetRole(), p.GetMessages()[4].GetRole()})
				require.Len(t, p.GetMessages()[3].GetParts(), 1, "an assistant message with only tool calls has no empty text part")
				require.Equal(t, "f", p.GetMessages()[3].GetParts()[0].GetToolCall().GetName())
				require.Equal(t, "1", p.GetMessages()[4].GetParts()[0].GetToolResult().GetToolCallId())
				require.Equal(t, []bool{true, true, true, true, true}, r.ScrubInput)
				require.True(t, r.ScrubOutput)
				require.True(t, r.ScrubToolArguments)
				require.False(t, r.Tokenize, "replace mode by default")
				require.True(t, r.BypassCache)
				require.Equal(t, []string{"END"}, p.GetStop())
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := fromNative(tt.req)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, got)
		})
	}
}

func TestToConnect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want connect.Code
	}{
		{conversation.ErrComponentNotFound, connect.CodeNotFound},
		{conversation.ErrNoWorker, connect.CodeUnavailable},
		{conversation.ErrWorkerLost, connect.CodeUnavailable},
		{&conversation.ScrubError{Err: errors.New("x")}, connect.CodeUnavailable},
		{&conversation.AuditError{Err: errors.New("x")}, connect.CodeUnavailable},
		{&conversation.ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT}, connect.CodeInvalidArgument},
		{&conversation.ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED}, connect.CodeDeadlineExceeded},
		{&conversation.ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_INTERNAL}, connect.CodeInternal},
		{&conversation.InvalidRequestError{Detail: "too many texts"}, connect.CodeInvalidArgument},
	}
	var logs bytes.Buffer
	h := New(nil, 0, slog.New(slog.NewJSONHandler(&logs, nil)))
	for _, tt := range tests {
		require.Equal(t, tt.want, connect.CodeOf(h.toConnect(t.Context(), "c", tt.err)), "%v", tt.err)
	}
	// Context errors pass unchanged; connect codes them on the wire.
	require.ErrorIs(t, h.toConnect(t.Context(), "c", context.DeadlineExceeded), context.DeadlineExceeded)

	// Internal causes stay in the log, under the id the caller gets.
	for _, err := range []error{
		&conversation.ScrubError{Err: errors.New("dial tcp 10.0.0.7:3510: connection refused")},
		&conversation.AuditError{Err: errors.New("nats: maximum payload exceeded")},
	} {
		logs.Reset()
		var ce *connect.Error
		require.ErrorAs(t, h.toConnect(t.Context(), "c", err), &ce)
		require.NotContains(t, ce.Message(), err.(interface{ Unwrap() error }).Unwrap().Error())
		id := regexp.MustCompile(`\(id ([0-9a-f]+)\)`).FindStringSubmatch(ce.Message())
		require.Len(t, id, 2, ce.Message())
		var rec map[string]any
		require.NoError(t, json.Unmarshal(logs.Bytes(), &rec))
		require.Equal(t, id[1], rec["error_id"])
		require.Contains(t, rec["err"], err.(interface{ Unwrap() error }).Unwrap().Error())
	}
}

func TestAuditCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{conversation.ErrComponentNotFound, "not_found"},
		{conversation.ErrNoWorker, "unavailable"},
		{&conversation.ScrubError{Err: errors.New("x")}, "unavailable"},
		{&conversation.ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT}, "invalid_argument"},
		{&conversation.ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_INTERNAL}, "internal"},
		{context.DeadlineExceeded, "deadline_exceeded"},
		{&conversation.ScrubError{Err: context.Canceled}, "canceled"},
		{errors.New("x"), "internal"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, auditCode(tt.err), "%v", tt.err)
	}
}
