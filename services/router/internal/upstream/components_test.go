package upstream_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/services/router/internal/upstream"
)

func TestLoadComponentsFallbacks(t *testing.T) {
	t.Parallel()
	doc := func(name, fallbacks string) string {
		return "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: " + name +
			"\nspec:\n  type: conversation.echo\n  metadata:\n  - name: fallbacks\n    value: \"" + fallbacks + "\"\n---\n"
	}
	tests := []struct {
		name    string
		yaml    string
		want    []string
		wantErr string
	}{
		{name: "ordered list", yaml: doc("a", "b, c") + doc("b", "") + doc("c", ""), want: []string{"b", "c"}},
		{name: "unknown component", yaml: doc("a", "zz"), wantErr: `component "a": metadata "fallbacks": "zz" is not another loaded component`},
		{name: "itself", yaml: doc("a", "a"), wantErr: `"a" is not another loaded component`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(tt.yaml), 0o600))
			c, err := upstream.LoadComponents(dir)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.ErrorContains(t, err, "COMPONENTS_DIR")
				return
			}
			require.NoError(t, err)
			a, ok := c.Lookup("a")
			require.True(t, ok)
			require.Equal(t, tt.want, a.Fallbacks)
		})
	}
}
