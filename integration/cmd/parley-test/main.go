// Command parley-test runs `go test` with the PostgreSQL server the tests need: the one
// in PG_TEST_DSN, else 127.0.0.1:5432 if it answers, else a private instance under
// .data/test-postgres (installing PostgreSQL with apt-get when missing and run as root).
// NATS needs nothing: tests embed nats-server. Arguments go to `go test` unchanged. When
// something fails, the lines naming what failed are printed again at the end of the output.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/parleyhq/parley/integration/stack"
)

func main() {
	code, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley-test:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run() (int, error) {
	root, err := stack.RepoRoot()
	if err != nil {
		return 0, err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	dsn := os.Getenv("PG_TEST_DSN")
	if dsn == "" {
		var stop func(context.Context) error
		dsn, stop, err = stack.PostgresServer(ctx, filepath.Join(root, ".data", "test-postgres"), true, os.Stdout)
		if err != nil {
			return 0, err
		}
		defer func() {
			stopCtx, stopCancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer stopCancel()
			if err := stop(stopCtx); err != nil {
				fmt.Fprintln(os.Stderr, "parley-test: stop postgres:", err)
			}
		}()
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"test"}, os.Args[1:]...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PG_TEST_DSN="+dsn)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("go test: %w", err)
	}
	failed, copyErr := copyFailures(out, os.Stdout)
	if copyErr != nil {
		// Keep reading so that go test is not blocked writing to a full pipe.
		_, _ = io.Copy(io.Discard, out)
	}
	err = cmd.Wait()
	if len(failed) > 0 {
		fmt.Println("parley-test: what failed, again (the output above has each one's log):")
		for _, line := range failed {
			fmt.Println("  " + line)
		}
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("go test: %w", err)
	}
	return 0, nil
}
