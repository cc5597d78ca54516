package examples_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/integration/stack"
)

// The constellation every example and the quickstart run against, started once by
// TestMain as `make up` starts it (deploy/components, no API token), on free ports; and
// the repository root.
var (
	st   *stack.Stack
	root string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("examples: the examples need the services; skipped under -short")
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	return stack.Suite{
		Name:          "examples",
		ComponentsDir: "deploy/components",
		Env: map[string]string{
			// Race-built services otherwise sleep a second at exit.
			"GORACE": "atexit_sleep_ms=0",
			// Two shared cores: a slow cache call must not turn into a miss mid-test.
			"ROUTER_CACHE_TIMEOUT": "5s",
		},
	}.Run(func(s *stack.Stack, r string) int {
		st, root = s, r
		return m.Run()
	})
}

// need skips a test under -short, where the stack is not started.
func need(t *testing.T) {
	t.Helper()
	if st == nil {
		t.Skip("end-to-end test: needs the stack (not started under -short)")
	}
}

// clientEnv is the environment a client of the stack gets: the variables the examples
// read, pointing at the stack's free ports instead of the defaults.
func clientEnv() []string {
	return append(os.Environ(),
		"DAPR_GRPC_ENDPOINT="+st.RouterGRPCAddr(),
		"PARLEY_ROUTER_URL="+st.URL("router"),
		"PARLEY_GRPC_ADDR=127.0.0.1:"+strconv.Itoa(st.Ports.RouterGRPC),
		"PARLEY_ADDR=127.0.0.1:"+strconv.Itoa(st.Ports.Router),
	)
}

// runExample runs name (an example) with args in dir, with clientEnv and env, and returns
// its standard output; the example failing (it exits non-zero when an answer is wrong)
// fails the test.
func runExample(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(clientEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, err, "%s %s\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), stdout.String(), stderr.String())
	return stdout.String()
}

// fence matches a fenced block: its info string and its body.
var fence = regexp.MustCompile("(?ms)^```([a-z]*)\n(.*?)^```\n")

// expectedOutput is the first ```text block of an example's README.md: what it prints.
func expectedOutput(t *testing.T, example string) string {
	t.Helper()
	return expectedOutputs(t, example)[0]
}

// expectedOutputs are the ```text blocks of an example's README.md, in order.
func expectedOutputs(t *testing.T, example string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "examples", example, "README.md"))
	require.NoError(t, err)
	var out []string
	for _, m := range fence.FindAllStringSubmatch(string(b), -1) {
		if m[1] == "text" {
			out = append(out, m[2])
		}
	}
	require.NotEmpty(t, out, "no ```text block (the expected output) in "+example+"/README.md")
	return out
}
