// Package integration_test drives the real service processes, started by the same
// launcher as `make up`, over HTTP, Connect and plain gRPC.
package integration_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/integration/stack"
)

// st is the constellation shared by every test of the package.
var st *stack.Stack

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration: end-to-end tests need the services; skipped under -short")
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	root, err := stack.FindRepoRoot(wd)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	data, err := os.MkdirTemp("", "parley-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(data) }()
	logFile, err := os.Create(filepath.Join(data, "services.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ports, err := stack.FreePorts()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pgURL := os.Getenv("PG_TEST_DSN")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err = stack.Start(ctx, stack.Options{
		RepoRoot:      root,
		DataDir:       data,
		ComponentsDir: filepath.Join(wd, "testdata", "components"),
		Ports:         ports,
		NATSURL:       os.Getenv("NATS_TEST_URL"),
		Postgres:      stack.PostgresOptions{URL: pgURL, FreshDatabase: true, Install: true},
		Race:          os.Getenv("PARLEY_E2E_RACE") != "0",
		Env: map[string]string{
			"WORKER_COMPONENTS":          "echo,echo-nocache",
			"WORKER_HEARTBEAT_INTERVAL":  "200ms",
			"ROUTER_WORKER_IDLE_TIMEOUT": "2s",
			// As in startOwnStack: a tolerance of 2 s, for race-built services on shared cores.
			"ROUTER_WORKER_HEARTBEAT_MISSES": "10",
			"LOG_LEVEL":                      "debug",
			// Certificate reloads are tested end to end; poll the files often.
			"TLS_RELOAD_INTERVAL": "250ms",
			// The suite runs on 2 shared cores with everything else: a cache call slower than
			// the production default of 250ms must not turn a single-flight wait into a miss.
			"ROUTER_CACHE_TIMEOUT": "5s",
			// Race-built services otherwise sleep a second at exit.
			"GORACE": "atexit_sleep_ms=0",
		},
		Log:      logFile,
		Progress: os.Stdout,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: the stack could not be started: %v\n", err)
		return 1
	}
	code := m.Run()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer stopCancel()
	if err := st.Stop(stopCtx); err != nil {
		fmt.Fprintf(os.Stderr, "integration: stopping the stack: %v\n", err)
		code = 1
	}
	// Every service runs within its NATS permissions: a refused subscription or publish
	// would only show up as a service's "nats async error".
	if b, err := os.ReadFile(logFile.Name()); err == nil && strings.Contains(string(b), "Permissions Violation") {
		fmt.Fprintln(os.Stderr, "integration: a service hit a NATS permissions violation (see the service logs)")
		code = 1
	}
	if code != 0 {
		if b, err := os.ReadFile(logFile.Name()); err == nil {
			const tail = 40000
			if len(b) > tail {
				b = b[len(b)-tail:]
			}
			fmt.Fprintf(os.Stderr, "---- service logs (tail) ----\n%s\n", b)
		}
	}
	return code
}

// need skips a test under -short, where the stack is not started.
func need(t *testing.T) {
	t.Helper()
	if st == nil {
		t.Skip("end-to-end test: needs the stack (not started under -short)")
	}
}
