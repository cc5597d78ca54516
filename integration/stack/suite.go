package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Suite is the constellation a test binary shares, as its TestMain starts it: every
// service on free ports, with a fresh database on PG_TEST_DSN (or a private server),
// the NATS server of NATS_TEST_URL (or an embedded one), race-built binaries unless
// PARLEY_E2E_RACE=0.
type Suite struct {
	// Name prefixes the messages and names the data directory ("integration").
	Name string
	// ComponentsDir holds the Dapr component files, relative to the repository root.
	ComponentsDir string
	// Env is added to every service's environment.
	Env map[string]string
	// CheckLog, when set, reads the services' output once they stopped; an error fails
	// the run.
	CheckLog func(log []byte) error
}

// Run starts the stack, calls tests with it and the repository root, stops the stack
// and returns the exit code for os.Exit: tests' code, or 1 when the stack cannot start
// or stop or CheckLog fails. A failed run prints the tail of the services' output.
func (s Suite) Run(tests func(st *Stack, root string) int) int {
	root, err := RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	data, err := os.MkdirTemp("", "parley-"+s.Name+"-")
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
	ports, err := FreePorts()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := Start(ctx, Options{
		RepoRoot:      root,
		DataDir:       data,
		ComponentsDir: filepath.Join(root, filepath.FromSlash(s.ComponentsDir)),
		Ports:         ports,
		NATSURL:       os.Getenv("NATS_TEST_URL"),
		Postgres:      PostgresOptions{URL: os.Getenv("PG_TEST_DSN"), FreshDatabase: true, Install: true},
		Race:          os.Getenv("PARLEY_E2E_RACE") != "0",
		Env:           s.Env,
		Log:           logFile,
		Progress:      os.Stdout,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: the stack could not be started: %v\n", s.Name, err)
		return 1
	}
	code := tests(st, root)
	// Why the run failed, said again after the services' log tail, which a CI log's tail
	// would otherwise end with.
	var failures []string
	if code != 0 {
		failures = append(failures, "a test failed (its --- FAIL line and log are above)")
	}
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer stopCancel()
	if err := st.Stop(stopCtx); err != nil {
		failures = append(failures, fmt.Sprintf("stopping the stack: %v", err))
	}
	if s.CheckLog != nil {
		if b, err := os.ReadFile(logFile.Name()); err == nil {
			if err := s.CheckLog(b); err != nil {
				failures = append(failures, err.Error())
			}
		}
	}
	if len(failures) == 0 {
		return code
	}
	if b, err := os.ReadFile(logFile.Name()); err == nil {
		const tail = 40000
		if len(b) > tail {
			b = b[len(b)-tail:]
		}
		fmt.Fprintf(os.Stderr, "---- service logs (tail) ----\n%s\n---- end of service logs ----\n", b)
	}
	for _, f := range failures {
		fmt.Fprintf(os.Stderr, "SUITE FAIL: %s: %s\n", s.Name, f)
	}
	return 1
}
