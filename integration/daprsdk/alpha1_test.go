package daprsdk_test

import (
	"testing"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// alpha1Input is the SDK's alpha1 input, named once: alpha1 is deprecated, and under test.
//
//nolint:staticcheck // see above
type alpha1Input = dapr.ConversationInput

// TestAlpha1 drives the deprecated alpha1 API through the SDK: echo joins the inputs with
// "\n" into one result (reference: dapr-conversation-api.md §2.4).
func TestAlpha1(t *testing.T) {
	need(t)
	t.Parallel()
	client := newClient(t, "")
	tests := []struct {
		name   string
		inputs []alpha1Input
		want   string
	}{
		{name: "one input", inputs: []alpha1Input{{Content: "well hello there"}}, want: "well hello there"},
		{
			name: "roles",
			inputs: []alpha1Input{
				{Content: "be brief", Role: ptr("system")}, {Content: "hi", Role: ptr("user")},
				{Content: "hello", Role: ptr("assistant")}, {Content: "odd", Role: ptr("somebody")},
			},
			want: "be brief\nhi\nhello\nodd",
		},
		{
			name:   "scrub one input",
			inputs: []alpha1Input{{Content: "well hello there, my phone number is +2222222222", ScrubPII: ptr(true)}, {Content: "from 10.8.9.1"}},
			want:   "well hello there, my phone number is <PHONE_NUMBER>\nfrom 10.8.9.1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			//nolint:staticcheck // alpha1 is deprecated, and under test
			got, err := client.ConverseAlpha1(t.Context(), dapr.NewConversationRequest("echo-nocache", tt.inputs))
			require.NoError(t, err)
			require.Equal(t, &dapr.ConversationResponse{Outputs: []dapr.ConversationResult{{Result: tt.want}}}, got)
		})
	}

	t.Run("scrub outputs, context id, parameters echoed, temperature and metadata", func(t *testing.T) {
		t.Parallel()
		param, err := anypb.New(wrapperspb.Int64(100))
		require.NoError(t, err)
		//nolint:staticcheck // alpha1 is deprecated, and under test
		got, err := client.ConverseAlpha1(t.Context(),
			dapr.NewConversationRequest("echo-nocache", []alpha1Input{{Content: "email test@test.com"}, {Content: "from 10.8.9.1"}}),
			dapr.WithScrubPII(true), dapr.WithContextID("c1"), dapr.WithTemperature(0.5),
			dapr.WithParameters(map[string]*anypb.Any{"p": param}), dapr.WithMetadata(map[string]string{"team": "blue"}))
		require.NoError(t, err)
		require.Equal(t, "c1", got.ContextID)
		require.Len(t, got.Outputs, 1)
		require.Equal(t, "email <EMAIL_ADDRESS>\nfrom <IP>", got.Outputs[0].Result)
		require.Len(t, got.Outputs[0].Parameters, 1)
		require.True(t, proto.Equal(param, got.Outputs[0].Parameters["p"]), "%v", got.Outputs[0].Parameters)
	})
}
