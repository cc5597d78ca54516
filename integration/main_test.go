// Package integration_test drives the real service processes, started by the same
// launcher as `make up`, over HTTP, Connect and plain gRPC.
package integration_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"

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
	return stack.Suite{
		Name:          "integration",
		ComponentsDir: "integration/testdata/components",
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
			// The same for the audit publish: the largest event (TestBodyLimitEndToEnd's, a
			// 4 MiB prompt and its 4 MiB echo) takes the race-built NATS server embedded in the
			// test process more than the production attempt of 1 s to store, and every
			// attempt sends it again.
			"ROUTER_AUDIT_PUBLISH_ATTEMPT_TIMEOUT": "5s",
			"ROUTER_AUDIT_PUBLISH_TIMEOUT":         "20s",
			// Race-built services otherwise sleep a second at exit.
			"GORACE": "atexit_sleep_ms=0",
		},
		// Every service runs within its NATS permissions: a refused subscription or publish
		// would only show up as a service's "nats async error".
		CheckLog: func(log []byte) error {
			if bytes.Contains(log, []byte("Permissions Violation")) {
				return errors.New("a service hit a NATS permissions violation (see the service logs)")
			}
			return nil
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
