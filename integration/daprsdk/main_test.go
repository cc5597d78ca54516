package daprsdk_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"testing"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/parleyhq/parley/integration/stack"
)

// The suite's constellation and API token, set once by TestMain.
var (
	st       *stack.Stack
	apiToken string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("daprsdk: end-to-end tests need the services; skipped under -short")
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var b [16]byte
	_, _ = rand.Read(b[:])
	apiToken = hex.EncodeToString(b[:])
	// The SDK reads DAPR_API_TOKEN when a client is created, as applications configure it.
	// Set here, before any test runs, never in a parallel test.
	if err := os.Setenv("DAPR_API_TOKEN", apiToken); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return stack.Suite{
		Name:          "daprsdk",
		ComponentsDir: "integration/testdata/components",
		Env: map[string]string{
			"DAPR_API_TOKEN":             apiToken,
			"WORKER_COMPONENTS":          "echo,echo-nocache",
			"WORKER_HEARTBEAT_INTERVAL":  "200ms",
			"ROUTER_WORKER_IDLE_TIMEOUT": "2s",
			"LOG_LEVEL":                  "debug",
		},
	}.Run(func(s *stack.Stack, _ string) int {
		st = s
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

// headerKey holds, in a call's context, where to store the response header.
type headerKey struct{}

// withHeader makes the call made with the returned context store its response header
// (gRPC metadata) in md: the SDK hides it, a dial option recovers it.
func withHeader(ctx context.Context, md *metadata.MD) context.Context {
	return context.WithValue(ctx, headerKey{}, md)
}

func captureHeader(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if md, ok := ctx.Value(headerKey{}).(*metadata.MD); ok {
		opts = append(opts, grpc.Header(md))
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// newClient connects the SDK to addr (default: Dapr's gRPC port of the router) the way
// applications do; the token comes from DAPR_API_TOKEN.
func newClient(t *testing.T, addr string) dapr.Client {
	t.Helper()
	if addr == "" {
		addr = st.RouterGRPCAddr()
	}
	c, err := dapr.NewClientWithAddressContext(t.Context(), addr, grpc.WithChainUnaryInterceptor(captureHeader))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// nonce makes a request unique, so cache entries of other tests never answer it.
func nonce(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return "n" + hex.EncodeToString(b[:])
}

func ptr[T any](v T) *T { return &v }
