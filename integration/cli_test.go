package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/integration/stack"
)

var (
	parleyOnce sync.Once
	parleyPath string
	parleyErr  error
)

// parleyBinary builds the parley command line (the cli module) once, next to the stack's
// service binaries, and returns its path.
func parleyBinary(t *testing.T) string {
	t.Helper()
	parleyOnce.Do(func() {
		root, err := stack.RepoRoot()
		if err != nil {
			parleyErr = err
			return
		}
		path := filepath.Join(filepath.Dir(st.Binary("router")), "parley")
		cmd := exec.CommandContext(t.Context(), "go", "build", "-o", path, "./cli/cmd/parley")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			parleyErr = errors.New("go build ./cli/cmd/parley: " + err.Error() + "\n" + string(out))
			return
		}
		parleyPath = path
	})
	require.NoError(t, parleyErr)
	return parleyPath
}

// cliResult is what one run of the parley binary did.
type cliResult struct {
	code           int
	stdout, stderr string
}

// runParley runs the parley binary with args, only env as its environment and stdin.
func runParley(t *testing.T, env map[string]string, stdin string, args ...string) cliResult {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), parleyBinary(t), args...)
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if exit := new(exec.ExitError); err != nil && !errors.As(err, &exit) {
		require.NoError(t, err)
	}
	return cliResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// routerEnv points the command line at the stack's router.
func routerEnv() map[string]string {
	return map[string]string{"PARLEY_ROUTER_URL": st.URL("router")}
}

// TestCLIComponentsAndConverse runs `parley components` and `parley converse` against the
// running constellation.
func TestCLIComponentsAndConverse(t *testing.T) {
	need(t)
	t.Parallel()
	env := routerEnv()

	t.Run("components", func(t *testing.T) {
		res := runParley(t, env, "", "components")
		require.Equal(t, 0, res.code, res.stderr)
		lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
		require.Equal(t, []string{"NAME", "TYPE", "VERSION", "CAPABILITIES"}, strings.Fields(lines[0]))
		var names []string
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			require.Equal(t, "conversation.echo", f[1], l)
			names = append(names, f[0])
		}
		require.Equal(t, []string{"echo", "echo-nocache", "orphan", "primary-down"}, names)

		res = runParley(t, env, "", "components", "-json")
		require.Equal(t, 0, res.code, res.stderr)
		var doc struct {
			Components []struct{ Name, Type string } `json:"components"`
		}
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &doc))
		require.Len(t, doc.Components, 4)
		require.Equal(t, "echo", doc.Components[0].Name)
	})

	t.Run("converse text", func(t *testing.T) {
		n := nonce(t)
		res := runParley(t, env, "", "converse", "-c", "echo", "hello", n)
		require.Equal(t, 0, res.code, res.stderr)
		require.Equal(t, "hello "+n+"\n", res.stdout)
		require.Contains(t, res.stderr, "cache miss")

		// The same text again is answered from the cache, unless it is bypassed.
		res = runParley(t, env, "", "converse", "hello "+n, "-c", "echo")
		require.Equal(t, "hello "+n+"\n", res.stdout)
		require.Contains(t, res.stderr, "cache hit")
		res = runParley(t, env, "", "converse", "-c", "echo", "--bypass-cache", "hello "+n)
		require.Equal(t, "hello "+n+"\n", res.stdout)
		require.Contains(t, res.stderr, "cache miss")
	})

	t.Run("converse stdin, system and scrub", func(t *testing.T) {
		n := nonce(t)
		res := runParley(t, env, "mail "+n+" to alice@example.com\n",
			"converse", "-c", "echo-nocache", "--system", "be brief", "--scrub", "inputs", "--temperature", "0.2")
		require.Equal(t, 0, res.code, res.stderr)
		// echo answers every message's text, one per line.
		require.Equal(t, "be brief\nmail "+n+" to <EMAIL_ADDRESS>\n", res.stdout)
	})

	t.Run("converse json", func(t *testing.T) {
		n := nonce(t)
		res := runParley(t, env, "", "converse", "-c", "echo-nocache", "--json", "json "+n)
		require.Equal(t, 0, res.code, res.stderr)
		var doc struct {
			RequestID string `json:"requestId"`
			Choices   []struct {
				FinishReason string `json:"finishReason"`
				Message      struct {
					Content string `json:"content"`
				} `json:"message"`
			} `json:"choices"`
			Usage struct {
				TotalTokens string `json:"totalTokens"`
			} `json:"usage"`
		}
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &doc), res.stdout)
		require.NotEmpty(t, doc.RequestID)
		require.Len(t, doc.Choices, 1)
		require.Equal(t, "json "+n, doc.Choices[0].Message.Content)
		require.Equal(t, "stop", doc.Choices[0].FinishReason)
		require.Equal(t, "4", doc.Usage.TotalTokens)

		// The request id leads to the audit row.
		auditRow(t, auditv1connect.NewAuditServiceClient(http.DefaultClient, st.URL("router")), doc.RequestID)
		res = runParley(t, env, "", "audit", "get", doc.RequestID)
		require.Equal(t, 0, res.code, res.stderr)
		require.Contains(t, res.stdout, "json "+n)
	})

	t.Run("converse stream", func(t *testing.T) {
		n := nonce(t)
		res := runParley(t, env, "", "converse", "-c", "echo-nocache", "--stream", "stream "+n)
		require.Equal(t, 0, res.code, res.stderr)
		require.Equal(t, "stream "+n+"\n", res.stdout)

		res = runParley(t, env, "", "-grpc", "converse", "-c", "echo-nocache", "--stream", "--json", "stream "+n)
		require.Equal(t, 0, res.code, res.stderr)
		var chunk struct {
			ContentDelta string `json:"contentDelta"`
			FinishReason string `json:"finishReason"`
		}
		// echo streams word by word, then the finish message.
		lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
		require.Len(t, lines, 3)
		var content strings.Builder
		for _, line := range lines {
			chunk.ContentDelta = ""
			require.NoError(t, json.Unmarshal([]byte(line), &chunk))
			content.WriteString(chunk.ContentDelta)
		}
		require.Equal(t, "stream "+n, content.String())
		require.Equal(t, "stop", chunk.FinishReason)
	})

	t.Run("errors", func(t *testing.T) {
		res := runParley(t, env, "", "converse", "-c", "nope", "hi")
		require.Equal(t, 1, res.code)
		require.Empty(t, res.stdout)
		require.Contains(t, res.stderr, "parley: converse: not_found:")

		res = runParley(t, env, "", "converse", "-c", "orphan", "--stream", "hi")
		require.Equal(t, 1, res.code)
		require.Contains(t, res.stderr, "parley: converse: unavailable:")

		res = runParley(t, env, "", "converse", "hi")
		require.Equal(t, 2, res.code)
		require.Contains(t, res.stderr, "-c COMPONENT is required")

		res = runParley(t, map[string]string{"PARLEY_ROUTER_URL": "http://127.0.0.1:1"}, "", "components")
		require.Equal(t, 1, res.code)
		require.Contains(t, res.stderr, "parley: components:")
		require.Contains(t, res.stderr, "is the router running at http://127.0.0.1:1?")
	})
}

// TestCLIAPIToken runs the command line against a router that wants an API token.
func TestCLIAPIToken(t *testing.T) {
	need(t)
	t.Parallel()
	const name, token = "router-token", "cli-test-token"
	require.NoError(t, st.StartInstance(t.Context(), "router", name, map[string]string{"DAPR_API_TOKEN": token}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		require.NoError(t, st.StopService(ctx, name))
	})
	url := st.URL(name)

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantErr  string
	}{
		{name: "no token", env: map[string]string{}, wantCode: 1, wantErr: "the router wants an API token"},
		{name: "wrong token", env: map[string]string{"DAPR_API_TOKEN": "wrong"}, wantCode: 1, wantErr: "the router refused the API token"},
		{name: "DAPR_API_TOKEN", env: map[string]string{"DAPR_API_TOKEN": token}},
		{name: "PARLEY_API_KEY", env: map[string]string{"PARLEY_API_KEY": token}},
		{name: "flag over env", env: map[string]string{"DAPR_API_TOKEN": "wrong"}, args: []string{"-token", token}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["PARLEY_ROUTER_URL"] = url
			for _, cmd := range [][]string{{"components"}, {"converse", "-c", "echo-nocache", "token"}, {"audit", "list", "-page-size", "1"}} {
				res := runParley(t, tt.env, "", append(tt.args, cmd...)...)
				require.Equal(t, tt.wantCode, res.code, "%v: %s", cmd, res.stderr)
				require.Contains(t, res.stderr, tt.wantErr, cmd)
				require.NotContains(t, res.stderr, token, cmd)
			}
		})
	}
}
