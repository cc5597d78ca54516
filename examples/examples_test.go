package examples_test

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGoExamples builds the Go examples and runs each against the stack: each exits
// non-zero when an answer differs from echo's, and prints what its README shows.
func TestGoExamples(t *testing.T) {
	need(t)
	t.Parallel()
	bin := t.TempDir()
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin+string(filepath.Separator), "./go-dapr-sdk", "./go-connect")
	build.Dir = filepath.Join(root, "examples")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build the examples:\n%s", out)
	for _, name := range []string{"go-dapr-sdk", "go-connect"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := runExample(t, filepath.Join(root, "examples", name), nil, filepath.Join(bin, name))
			require.Equal(t, expectedOutput(t, name), got)
		})
	}
}

// TestGrpcurl builds grpcurl (pinned in tools/grpcurl) into .bin with make, as the
// example's README says, and runs the example's script against the stack.
func TestGrpcurl(t *testing.T) {
	need(t)
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skipf("the grpcurl example is a bash script: %v", err)
	}
	mk := exec.CommandContext(t.Context(), "make", "--no-print-directory", "-s", ".bin/grpcurl")
	mk.Dir = root
	out, err := mk.CombinedOutput()
	require.NoError(t, err, "make .bin/grpcurl:\n%s", out)
	got := runExample(t, root, []string{"GRPCURL=" + filepath.Join(root, ".bin", "grpcurl")}, filepath.Join(root, "examples", "grpcurl", "converse.sh"))
	require.Equal(t, expectedOutput(t, "grpcurl"), got)
}
