package componentapi

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	componentv1 "github.com/parleyhq/parley/gen/pb/parley/component/v1"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/presence"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

type list []conversation.Component

func (l list) List() []conversation.Component { return l }

// TestListComponents: components come sorted by name with model, cache TTL (none when
// not cached) and fallbacks; a caller whose key has a components list sees only those.
func TestListComponents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     list
		caller *tenant.Caller // nil: none in the context (no API keys)
		want   []*componentv1.Component
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
		{
			name:   "only the key's components",
			in:     list{{Name: "openai", Type: "conversation.openai"}, {Name: "echo", Type: "conversation.echo"}, {Name: "anthropic", Type: "conversation.anthropic"}},
			caller: &tenant.Caller{Tenant: "team-a", Components: map[string]bool{"openai": true, "anthropic": true, "not-loaded": true}},
			want:   []*componentv1.Component{{Name: "anthropic", Type: "conversation.anthropic"}, {Name: "openai", Type: "conversation.openai"}},
		},
		{
			name:   "a key without a list sees every one",
			in:     list{{Name: "openai", Type: "conversation.openai"}, {Name: "echo", Type: "conversation.echo"}},
			caller: &tenant.Caller{Tenant: "team-a"},
			want:   []*componentv1.Component{{Name: "echo", Type: "conversation.echo"}, {Name: "openai", Type: "conversation.openai"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if tt.caller != nil {
				ctx = tenant.With(ctx, tt.caller)
			}
			res, err := New(tt.in, nil).ListComponents(ctx, &componentv1.ListComponentsRequest{})
			require.NoError(t, err)
			require.Len(t, res.GetComponents(), len(tt.want))
			for i := range tt.want {
				require.True(t, proto.Equal(tt.want[i], res.GetComponents()[i]), "%v != %v", tt.want[i], res.GetComponents()[i])
			}
		})
	}
}

type counts map[string]presence.Count

func (c counts) Counts() map[string]presence.Count { return c }

// TestListComponentsWithWorkers: each call carries the live workers and slots of each
// component, zero for a component nobody serves, and does not change the next answer.
func TestListComponentsWithWorkers(t *testing.T) {
	t.Parallel()
	live := counts{"echo": {Workers: 2, Slots: 16, SlotsInUse: 3}}
	h := New(list{{Name: "openai", Type: "conversation.openai"}, {Name: "echo", Type: "conversation.echo"}}, live)
	res, err := h.ListComponents(t.Context(), &componentv1.ListComponentsRequest{})
	require.NoError(t, err)
	require.True(t, proto.Equal(&componentv1.Component{Name: "echo", Type: "conversation.echo", Workers: 2, Slots: 16, SlotsInUse: 3}, res.GetComponents()[0]), "%v", res.GetComponents()[0])
	require.True(t, proto.Equal(&componentv1.Component{Name: "openai", Type: "conversation.openai"}, res.GetComponents()[1]), "%v", res.GetComponents()[1])

	live["echo"] = presence.Count{Workers: 1, Slots: 8}
	res, err = h.ListComponents(t.Context(), &componentv1.ListComponentsRequest{})
	require.NoError(t, err)
	require.Equal(t, uint32(1), res.GetComponents()[0].GetWorkers())
	require.Equal(t, uint32(0), res.GetComponents()[0].GetSlotsInUse())
}
