// Command parley is Parley's command line. `parley audit list|get|stats` query the audit
// log through the router's AuditService (see docs/audit.md):
//
//	go run ./integration/cmd/parley audit list -since 1h -status error
//	go run ./integration/cmd/parley -o json audit get 0195f0c4-...
//	go run ./integration/cmd/parley audit stats -bucket hour -group-by component,model
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/parleyhq/parley/integration/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.IO{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
