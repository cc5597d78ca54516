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

func TestMappingAndPairs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		give     string
		wantKeys []string
		wantErr  string
	}{
		{name: "in document order", give: "z: 1\na: &x 2\nm: *x\n", wantKeys: []string{"z", "a", "m"}},
		{name: "null", give: "null\n", wantKeys: nil},
		{name: "not a mapping", give: "[1, 2]\n", wantErr: "must be a mapping, got a list"},
		{name: "duplicate key", give: "a: 1\na: 2\n", wantErr: `line 2: key "a" defined twice`},
		{name: "key not a scalar", give: "? [a]\n: 1\n", wantErr: "line 1: keys must be scalars"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var doc yaml.Node
			require.NoError(t, yaml.Unmarshal([]byte(tt.give), &doc))
			ps, err := resourceyaml.Pairs(doc.Content[0])
			m, merr := resourceyaml.Mapping(doc.Content[0])
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				require.EqualError(t, merr, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.NoError(t, merr)
			var keys []string
			for _, p := range ps {
				keys = append(keys, p.Key)
				require.Same(t, p.Value, m[p.Key])
			}
			require.Equal(t, tt.wantKeys, keys)
			require.Len(t, m, len(tt.wantKeys))
		})
	}
	m, err := resourceyaml.Mapping(nil)
	require.NoError(t, err)
	require.Empty(t, m)
}

func TestScalarList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give    string
		wantErr string
	}{
		{give: "[a, 1, true]\n"},
		{give: "null\n"},
		{give: "[]\n"},
		{give: "a\n", wantErr: `must be a list, got !!str "a"`},
		{give: "[a, [b]]\n", wantErr: "item 1: must be a scalar, got a list"},
	}
	for _, tt := range tests {
		var doc yaml.Node
		require.NoError(t, yaml.Unmarshal([]byte(tt.give), &doc))
		err := resourceyaml.ScalarList(doc.Content[0])
		if tt.wantErr != "" {
			require.EqualError(t, err, tt.wantErr, tt.give)
			continue
		}
		require.NoError(t, err, tt.give)
	}
	require.NoError(t, resourceyaml.ScalarList(nil))
}
