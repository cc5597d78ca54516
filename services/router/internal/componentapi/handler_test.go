package componentapi

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	componentv1 "github.com/parleyhq/parley/gen/pb/parley/component/v1"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

type list []conversation.Component

func (l list) List() []conversation.Component { return l }

// TestListComponents: components come sorted by name with model, cache TTL (none when
// not cached) and fallbacks.
func TestListComponents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   list
		want []*componentv1.Component
	}{
		{name: "none", in: nil, want: []*componentv1.Component{}},
		{
			name: "sorted with details",
			in: list{
				{Name: "openai", Type: "conversation.openai", Version: "v1", Model: "gpt-4o-mini", CacheTTL: 10 * time.Minute, Fallbacks: []string{"echo"}},
				{Name: "echo", Type: "conversation.echo"},
			},
			want: []*componentv1.Component{
				{Name: "echo", Type: "conversation.echo"},
				{Name: "openai", Type: "conversation.openai", Version: "v1", Model: "gpt-4o-mini", CacheTtl: durationpb.New(10 * time.Minute), Fallbacks: []string{"echo"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := New(tt.in).ListComponents(t.Context(), &componentv1.ListComponentsRequest{})
			require.NoError(t, err)
			require.Len(t, res.GetComponents(), len(tt.want))
			for i := range tt.want {
				require.True(t, proto.Equal(tt.want[i], res.GetComponents()[i]), "%v != %v", tt.want[i], res.GetComponents()[i])
			}
		})
	}
}
