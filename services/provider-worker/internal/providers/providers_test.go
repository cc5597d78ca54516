package providers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/internal/providers"
)

// writeComponent writes a component file of type typ named name into dir.
func writeComponent(t *testing.T, dir, name, typ string) {
	t.Helper()
	doc := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: %s
spec:
  type: %s
  version: v1
  metadata:
  - name: key
    value: not-a-real-key
`, name, typ)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(doc), 0o600))
}

// load writes one component per name→type entry and loads the directory.
func load(t *testing.T, types map[string]string) []component.Component {
	t.Helper()
	dir := t.TempDir()
	for name, typ := range types {
		writeComponent(t, dir, name, typ)
	}
	comps, err := component.LoadDir(dir, component.Options{})
	require.NoError(t, err)
	return comps
}

func TestBuild(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		give      map[string]string
		wantNames []string
	}{
		{"one echo", map[string]string{"chat": "conversation.echo"}, []string{"chat"}},
		{"several echo, sorted", map[string]string{"b": "conversation.echo", "a": "conversation.echo"}, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg, err := providers.Build(load(t, tt.give))
			require.NoError(t, err)
			require.Equal(t, tt.wantNames, reg.Names())
			var seen []string
			for name, p := range reg.All() {
				seen = append(seen, name)
				resp, err := p.Converse(t.Context(), &providerv1.Request{Messages: []*providerv1.Message{{
					Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "hi"}}},
				}}})
				require.NoError(t, err)
				require.Equal(t, "hi", resp.GetChoices()[0].GetContent())
			}
			require.Equal(t, tt.wantNames, seen)
			_, ok := reg.Provider("missing")
			require.False(t, ok)
		})
	}
}

func TestBuildRejectsUnimplementedTypes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give map[string]string
		want []string
	}{
		{
			name: "openai",
			give: map[string]string{"openai": "conversation.openai", "chat": "conversation.echo"},
			want: []string{`component "openai": type conversation.openai is not implemented by this worker yet`},
		},
		{
			name: "every problem is reported",
			give: map[string]string{"claude": "conversation.anthropic", "local": "conversation.ollama"},
			want: []string{
				`component "claude": type conversation.anthropic is not implemented by this worker yet`,
				`component "local": type conversation.ollama is not implemented by this worker yet`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := providers.Build(load(t, tt.give))
			for _, want := range tt.want {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func TestSelect(t *testing.T) {
	t.Parallel()
	comps := load(t, map[string]string{"a": "conversation.echo", "b": "conversation.echo", "c": "conversation.openai"})
	names := func(cs []component.Component) []string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.Name
		}
		return out
	}
	tests := []struct {
		name string
		give []string
		want []string
	}{
		{"empty means all", nil, []string{"a", "b", "c"}},
		{"subset in the given order", []string{"b", "a"}, []string{"b", "a"}},
		{"repeats served once", []string{"a", "a"}, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := providers.Select(comps, tt.give)
			require.NoError(t, err)
			require.Equal(t, tt.want, names(got))
		})
	}

	t.Run("unknown name", func(t *testing.T) {
		t.Parallel()
		_, err := providers.Select(comps, []string{"a", "nope"})
		require.ErrorIs(t, err, providers.ErrNotLoaded)
		require.ErrorContains(t, err, `"nope": component is not loaded (loaded: a, b, c)`)
	})
}

func TestErrorCarriesCode(t *testing.T) {
	t.Parallel()
	cause := context.DeadlineExceeded
	var err error = &providers.Error{Code: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, Err: cause}
	var coded interface{ ErrorCode() providerv1.ErrorCode }
	require.ErrorAs(t, fmt.Errorf("call: %w", err), &coded)
	require.Equal(t, providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, coded.ErrorCode())
	require.True(t, errors.Is(err, cause))
	require.Equal(t, cause.Error(), err.Error())
}
