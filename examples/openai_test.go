package examples_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/integration/stack"
)

// TestOpenAISDKs runs the OpenAI SDK examples against the router's OpenAI-compatible API:
// the Go program (openai-go) and the Node.js one (the openai npm package, npm ci into
// .data/openai-node once per lock file). Each prints what the README's ```text blocks
// show, the Go one first.
func TestOpenAISDKs(t *testing.T) {
	need(t)
	t.Parallel()
	want := expectedOutputs(t, "openai-sdks")
	require.Len(t, want, 2, "examples/openai-sdks/README.md: one output block for Go, one for Node.js")
	env := []string{"OPENAI_BASE_URL=" + st.URL("router") + "/v1", "OPENAI_API_KEY=parley"}

	t.Run("go", func(t *testing.T) {
		t.Parallel()
		bin := filepath.Join(t.TempDir(), "openai-go")
		build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./openai-sdks/go")
		build.Dir = filepath.Join(root, "examples")
		out, err := build.CombinedOutput()
		require.NoError(t, err, "go build:\n%s", out)
		require.Equal(t, want[0], runExample(t, filepath.Join(root, "examples"), env, bin))
	})
	t.Run("node", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		dir, err := stack.NodeProject(ctx, filepath.Join(root, "examples", "openai-sdks", "node"), filepath.Join(root, ".data", "openai-node"), t.Output())
		if errors.Is(err, stack.ErrNoNode) {
			t.Skipf("the Node.js example needs Node.js: %v", err)
		}
		require.NoError(t, err)
		require.Equal(t, want[1], runExample(t, dir, env, "node", "chat.mjs"))
	})
}
