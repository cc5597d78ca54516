package daprsdk_test

import (
	"context"
	"testing"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const toolChoiceRule = "'auto', 'none', 'required', or a specific tool name matching the tools available to be used"

// TestErrors checks every error a Dapr SDK user can meet, with Dapr's exact gRPC code and
// message and no details (reference: dapr-conversation-api.md §1.5). Parley writes the
// invalid-params message as Dapr master does (docs/dapr-compatibility.md).
func TestErrors(t *testing.T) {
	need(t)
	t.Parallel()
	client := newClient(t, "")
	alpha2 := func(req dapr.ConversationRequestAlpha2) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := client.ConverseAlpha2(ctx, req)
			return err
		}
	}
	alpha1 := func(name string, in []alpha1Input) func(context.Context) error {
		return func(ctx context.Context) error {
			//nolint:staticcheck // alpha1 is deprecated, and under test
			_, err := client.ConverseAlpha1(ctx, dapr.NewConversationRequest(name, in))
			return err
		}
	}
	hi := inputs(input(user("hi")))
	tests := []struct {
		name     string
		call     func(context.Context) error
		wantCode codes.Code
		wantMsg  string
	}{
		{
			name: "alpha2 component not found", call: alpha2(dapr.ConversationRequestAlpha2{Name: "nope", Inputs: hi}),
			wantCode: codes.InvalidArgument, wantMsg: "failed finding conversation component nope",
		},
		{
			name: "alpha2 missing inputs", call: alpha2(dapr.ConversationRequestAlpha2{Name: "echo"}),
			wantCode: codes.InvalidArgument, wantMsg: "failed conversing with component echo: missing inputs in request",
		},
		{
			// The SDK sends a nil message as an empty one.
			name:     "alpha2 nil message",
			call:     alpha2(dapr.ConversationRequestAlpha2{Name: "echo", Inputs: inputs(input(user("hi"), nil))}),
			wantCode: codes.InvalidArgument, wantMsg: "failed conversing with component echo: invalid params: message type cannot be nil",
		},
		{
			// An SDK quirk: a developer message without content is sent with no type set.
			name:     "alpha2 developer message without content",
			call:     alpha2(dapr.ConversationRequestAlpha2{Name: "echo", Inputs: inputs(input(&dapr.ConversationMessageAlpha2{ConversationMessageOfDeveloper: &dapr.ConversationMessageOfDeveloperAlpha2{Name: ptr("dev")}}))}),
			wantCode: codes.InvalidArgument, wantMsg: "failed conversing with component echo: invalid params: message type cannot be nil",
		},
		{
			// The SDK sends a nil tool call as one with no function.
			name:     "alpha2 tool call without function",
			call:     alpha2(dapr.ConversationRequestAlpha2{Name: "echo", Inputs: inputs(input(assistant("calling", call("c1", "f", "{}"), nil)))}),
			wantCode: codes.InvalidArgument, wantMsg: "failed conversing with component echo: invalid params: tool types cannot be nil",
		},
		{
			name:     "alpha2 tool choice required without tools",
			call:     alpha2(dapr.ConversationRequestAlpha2{Name: "echo", Inputs: hi, ToolChoice: ptr(dapr.ToolChoiceRequiredAlpha2)}),
			wantCode: codes.InvalidArgument, wantMsg: "failed conversing with component echo: invalid params: tool choice must be " + toolChoiceRule,
		},
		{
			name: "alpha2 tool choice names no tool",
			call: alpha2(dapr.ConversationRequestAlpha2{Name: "echo", Inputs: hi, ToolChoice: ptr(dapr.ToolChoiceAlpha2("get_Time")),
				Tools: []*dapr.ConversationToolsAlpha2{{Name: "get_time"}}}),
			wantCode: codes.InvalidArgument, wantMsg: "failed conversing with component echo: invalid params: tool choice selected was not found. Must be " + toolChoiceRule,
		},
		{
			name:     "alpha2 no worker",
			call:     alpha2(dapr.ConversationRequestAlpha2{Name: "orphan", Inputs: hi}),
			wantCode: codes.Internal, wantMsg: "failed conversing with component orphan: no worker serves the component",
		},
		{
			name: "alpha1 component not found", call: alpha1("nope", []alpha1Input{{Content: "hi"}}),
			wantCode: codes.InvalidArgument, wantMsg: "failed finding conversation component nope",
		},
		{
			name: "alpha1 missing inputs", call: alpha1("echo", nil),
			wantCode: codes.InvalidArgument, wantMsg: "failed conversing with component echo: missing inputs in request",
		},
		{
			name: "alpha1 no worker", call: alpha1("orphan", []alpha1Input{{Content: "hi"}}),
			wantCode: codes.Internal, wantMsg: "failed conversing with component orphan: no worker serves the component",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.call(t.Context())
			s, ok := status.FromError(err)
			require.True(t, ok, "not a gRPC status: %v", err)
			require.Equal(t, tt.wantCode, s.Code(), "%v", err)
			require.Equal(t, tt.wantMsg, s.Message())
			require.Empty(t, s.Details())
		})
	}
}

// TestSDKRefusesBeforeSending documents SDK behaviour that never reaches the router.
func TestSDKRefusesBeforeSending(t *testing.T) {
	need(t)
	t.Parallel()
	client := newClient(t, "")
	_, err := client.ConverseAlpha2(t.Context(), dapr.ConversationRequestAlpha2{Name: "echo", Inputs: inputs(input(&dapr.ConversationMessageAlpha2{
		ConversationMessageOfUser:   &dapr.ConversationMessageOfUserAlpha2{Content: content("a")},
		ConversationMessageOfSystem: &dapr.ConversationMessageOfSystemAlpha2{Content: content("b")},
	}))})
	require.EqualError(t, err, "failed to convert ConversationInputAlpha2 to proto")
}
