// Command parley is Parley's command line (docs/cli.md):
//
//	parley components
//	parley converse -c echo "hello"
//	parley audit list -since 1h -status error
//	parley -o json audit get 0195f0c4-...
//	parley audit stats -bucket hour -group-by component,model
//
// Install it with `make install`, or `go install ./cmd/parley` inside the cli module.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/parleyhq/parley/cli/internal/command"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := command.Main(ctx, os.Args[1:], command.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
