package examples_test

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/integration/stack"
)

// TestTypeScriptConnect installs the TypeScript example's pinned packages (npm ci from its
// package-lock.json into .data/ts-connect, once per lock file), compiles it with tsc and
// runs it with the machine's Node.js against the stack. Where .bin/buf is built (make
// tools) it also regenerates the example's TypeScript and compares it with the committed
// src/gen.
func TestTypeScriptConnect(t *testing.T) {
	need(t)
	t.Parallel()
	project := filepath.Join(root, "examples", "ts-connect")
	installCtx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	dir, err := stack.NodeProject(installCtx, project, filepath.Join(root, ".data", "ts-connect"), t.Output())
	if errors.Is(err, stack.ErrNoNode) {
		t.Skipf("the TypeScript example needs Node.js: %v", err)
	}
	require.NoError(t, err)
	// NodeProject copies the project's top-level files; the sources are a tree.
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "src")))
	require.NoError(t, os.CopyFS(filepath.Join(dir, "src"), os.DirFS(filepath.Join(project, "src"))))

	tsc := exec.CommandContext(t.Context(), "node", filepath.Join("node_modules", "typescript", "bin", "tsc"), "-p", ".")
	tsc.Dir = dir
	out, err := tsc.CombinedOutput()
	require.NoError(t, err, "tsc:\n%s", out)
	got := runExample(t, dir, nil, "node", filepath.Join("dist", "main.js"))
	require.Equal(t, expectedOutput(t, "ts-connect"), got)

	t.Run("generated code is current", func(t *testing.T) {
		buf := filepath.Join(root, ".bin", "buf")
		if _, err := os.Stat(buf); err != nil {
			t.Skipf("needs %s (make tools): %v", buf, err)
		}
		gen := exec.CommandContext(t.Context(), buf, "generate", filepath.Join(root, "proto"), "--template", "buf.gen.yaml",
			"--path", filepath.Join(root, "proto", "parley", "conversation", "v1"))
		gen.Dir = dir
		gen.Env = append(os.Environ(), "PATH="+filepath.Join(dir, "node_modules", ".bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := gen.CombinedOutput()
		require.NoError(t, err, "buf generate:\n%s", out)
		const stale = "examples/ts-connect/src/gen is stale: cd examples/ts-connect && npm ci && npm run generate, and commit it"
		want, got := readTree(t, filepath.Join(project, "src", "gen")), readTree(t, filepath.Join(dir, "src", "gen"))
		require.ElementsMatch(t, slices.Collect(maps.Keys(want)), slices.Collect(maps.Keys(got)), stale)
		for name, text := range want {
			require.True(t, text == got[name], "%s: %s differs", stale, name)
		}
	})
}

// readTree maps every file under dir, by its path relative to dir, to its content.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		files[rel] = string(b)
		return err
	}))
	return files
}
