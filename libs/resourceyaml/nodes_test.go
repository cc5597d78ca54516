package resourceyaml_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/parleyhq/parley/libs/resourceyaml"
)

func TestNodes(t *testing.T) {
	t.Parallel()
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte("a: &x 1\nb: *x\nc: null\nd: [1]\n"), &doc))
	root := doc.Content[0]
	tests := []struct {
		key     string
		want    string
		wantErr string
	}{
		{key: "a", want: "1"},
		{key: "b", want: "1"},
		{key: "c", want: ""},
		{key: "missing", want: ""},
		{key: "d", wantErr: "must be a scalar, got a list"},
	}
	for _, tt := range tests {
		got, err := resourceyaml.Scalar(resourceyaml.Lookup(root, tt.key))
		if tt.wantErr != "" {
			require.EqualError(t, err, tt.wantErr)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.want, got, tt.key)
	}
	require.True(t, resourceyaml.IsNull(resourceyaml.Lookup(root, "c")))
	require.Nil(t, resourceyaml.Lookup(resourceyaml.Lookup(root, "a"), "x"), "lookup in a scalar")
	m := map[string]*yaml.Node{"name": nil, "zeta": nil, "alpha": nil}
	require.EqualError(t, resourceyaml.OnlyKeys(m, "name"), `unknown field "alpha" (want name)`)
	require.NoError(t, resourceyaml.OnlyKeys(map[string]*yaml.Node{"name": nil}, "name", "value"))
}
