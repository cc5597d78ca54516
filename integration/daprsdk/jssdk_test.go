package daprsdk_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/integration/stack"
)

// jsStep is one line integration/jssdk/start.cjs prints.
type jsStep struct {
	Step        string          `json:"step"`
	Port        string          `json:"port"`
	Initialized bool            `json:"initialized"`
	Response    json.RawMessage `json:"response"`
	Message     string          `json:"message"`
}

// TestJavaScriptSDK starts the official Dapr JavaScript SDK (@dapr/dapr, pinned in
// integration/jssdk/package-lock.json) against the router: its HTTP client (which waits
// for the sidecar with GET /v1.0/metadata) and its gRPC client on both gRPC ports (which
// waits with the GetMetadata RPC) start, and the gRPC client converses with the echo
// component through the SDK's own generated client, alpha1 and alpha2. The SDK reads
// DAPR_API_TOKEN from the environment, as applications configure it.
func TestJavaScriptSDK(t *testing.T) {
	need(t)
	t.Parallel()
	root, err := stack.RepoRoot()
	require.NoError(t, err)
	installCtx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	dir, err := stack.NodeProject(installCtx, filepath.Join(root, "integration", "jssdk"), filepath.Join(root, ".data", "jssdk"), t.Output())
	if errors.Is(err, stack.ErrNoNode) {
		t.Skipf("the JavaScript SDK check needs Node.js: %v", err)
	}
	require.NoError(t, err)

	text := "hello from javascript " + nonce(t)
	runCtx, cancelRun := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancelRun()
	cmd := exec.CommandContext(runCtx, "node", "start.cjs")
	cmd.Dir = dir
	grpcPorts := []string{strconv.Itoa(st.Ports.RouterGRPC), strconv.Itoa(st.Ports.Router)}
	cmd.Env = append(os.Environ(),
		"PARLEY_HOST=127.0.0.1",
		"PARLEY_HTTP_PORT="+strconv.Itoa(st.Ports.Router),
		"PARLEY_GRPC_PORTS="+strings.Join(grpcPorts, ","),
		"PARLEY_COMPONENT=echo",
		"PARLEY_TEXT="+text,
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	require.NoError(t, runErr, "node start.cjs\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())

	var steps []jsStep
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "{") {
			continue // the SDK's own log lines
		}
		var s jsStep
		require.NoError(t, json.Unmarshal(sc.Bytes(), &s), sc.Text())
		steps = append(steps, s)
	}

	// What Dapr's echo component answers: the input back. The router also sends alpha2's
	// usage, but the SDK's generated client (proto/dapr/proto/runtime/v1/dapr_pb.js in
	// @dapr/dapr 3.18.0) predates that field and drops it as unknown.
	want := []struct{ step, port, response string }{
		{step: "http-start"},
	}
	for _, p := range grpcPorts {
		want = append(want,
			struct{ step, port, response string }{step: "grpc-start", port: p},
			struct{ step, port, response string }{step: "alpha1", port: p, response: `{"outputs":[{"result":"` + text + `"}]}`},
			struct{ step, port, response string }{step: "alpha2", port: p, response: `{"outputs":[{"choices":[{"finishReason":"stop",` +
				`"message":{"content":"` + text + `"}}]}]}`},
		)
	}
	require.Len(t, steps, len(want), "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	for i, w := range want {
		got := steps[i]
		require.Equal(t, w.step, got.Step, "step %d", i)
		require.Equal(t, w.port, got.Port, "step %d", i)
		if strings.HasSuffix(w.step, "start") {
			require.True(t, got.Initialized, "%s on %s", w.step, w.port)
			continue
		}
		require.JSONEq(t, w.response, string(got.Response), "%s on %s", w.step, w.port)
	}
}
