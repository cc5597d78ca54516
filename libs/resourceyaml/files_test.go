package resourceyaml_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/resourceyaml"
)

func TestReadDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, body := range map[string]string{"b.yaml": "b", "a.YML": "a", "notes.txt": "x", "target": "t"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
	}
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(dir, "target"), filepath.Join(dir, "c.yaml")))
	require.NoError(t, os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "d.yaml")))

	files, problems, err := resourceyaml.ReadDir(dir, "component")
	require.NoError(t, err)
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f.Path)+"="+string(f.Data))
	}
	require.Equal(t, []string{"a.YML=a", "b.yaml=b", "c.yaml=t"}, got)
	require.Len(t, problems, 1)
	require.ErrorContains(t, problems[0], "stat component file: ")

	_, _, err = resourceyaml.ReadDir(filepath.Join(dir, "nope"), "component")
	require.ErrorIs(t, err, os.ErrNotExist)
}
