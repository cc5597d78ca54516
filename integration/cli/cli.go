// Package cli implements the parley command line: `parley audit list|get|stats`, which
// query the audit log through the router's AuditService and print a table or JSON.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
)

// Exit codes of Main.
const (
	ExitOK    = 0
	ExitError = 1 // the call failed
	ExitUsage = 2 // bad arguments
)

// DefaultRouterURL is the router of `make up`.
const DefaultRouterURL = "http://127.0.0.1:3500"

// EnvRouterURL names the variable that overrides DefaultRouterURL.
const EnvRouterURL = "PARLEY_ROUTER_URL"

const usage = `usage: parley [-router URL] [-o table|json] [-grpc] [-timeout D] audit <command> [flags]

commands:
  audit list    list conversations, newest first (filters and paging: parley audit list -h)
  audit get ID  show one conversation
  audit stats   usage statistics per hour or day (parley audit stats -h)

The router is -router, else $PARLEY_ROUTER_URL, else http://127.0.0.1:3500.
`

// IO is what Main reads and writes.
type IO struct {
	Stdout, Stderr io.Writer
	// Getenv reads the environment (os.Getenv).
	Getenv func(string) string
	// HTTPClient makes the calls; nil means one that speaks HTTP/1.1 and cleartext
	// HTTP/2, as gRPC needs.
	HTTPClient *http.Client
	// Now is the clock that relative times (-since) count back from; nil means time.Now.
	Now func() time.Time
}

// errUsage marks an error in the arguments.
var errUsage = errors.New("usage")

// global holds the flags before the command.
type global struct {
	router  string
	output  string
	grpc    bool
	timeout time.Duration
}

// Main runs the command line args (without the program name) and returns the exit code.
func Main(ctx context.Context, args []string, io IO) int {
	if io.Now == nil {
		io.Now = time.Now
	}
	err := run(ctx, args, io)
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, errUsage):
		_, _ = fmt.Fprintln(io.Stderr, "parley:", strings.TrimPrefix(err.Error(), "usage: "))
		return ExitUsage
	default:
		_, _ = fmt.Fprintln(io.Stderr, "parley:", err)
		return ExitError
	}
}

func run(ctx context.Context, args []string, io IO) error {
	g := global{}
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	fs.Usage = func() { _, _ = fmt.Fprint(io.Stderr, usage) }
	fs.StringVar(&g.router, "router", "", "router base URL")
	fs.StringVar(&g.output, "o", "table", "output: table or json")
	fs.BoolVar(&g.grpc, "grpc", false, "call over gRPC instead of Connect")
	fs.DurationVar(&g.timeout, "timeout", 30*time.Second, "bound of each call")
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if g.router == "" && io.Getenv != nil {
		g.router = io.Getenv(EnvRouterURL)
	}
	if g.router == "" {
		g.router = DefaultRouterURL
	}
	if g.output != "table" && g.output != "json" {
		return fmt.Errorf("%w: -o must be table or json, got %q", errUsage, g.output)
	}
	rest := fs.Args()
	if len(rest) < 2 || rest[0] != "audit" {
		fs.Usage()
		return fmt.Errorf("%w: want audit list, audit get or audit stats", errUsage)
	}
	client := newClient(g, io.HTTPClient)
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	p := printer{w: io.Stdout, json: g.output == "json"}
	switch rest[1] {
	case "list":
		return list(ctx, client, rest[2:], p, io)
	case "get":
		return get(ctx, client, rest[2:], p, io)
	case "stats":
		return stats(ctx, client, rest[2:], p, io)
	default:
		fs.Usage()
		return fmt.Errorf("%w: unknown command audit %s", errUsage, rest[1])
	}
}

func usageError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%w: %w", errUsage, err)
}

func newClient(g global, hc *http.Client) auditv1connect.AuditServiceClient {
	if hc == nil {
		protocols := new(http.Protocols)
		protocols.SetHTTP1(true)
		protocols.SetUnencryptedHTTP2(true)
		hc = &http.Client{Transport: &http.Transport{Protocols: protocols}}
	}
	var opts []connect.ClientOption
	if g.grpc {
		opts = append(opts, connect.WithGRPC())
	}
	return auditv1connect.NewAuditServiceClient(hc, strings.TrimSuffix(g.router, "/"), opts...)
}

// callError makes an RPC error readable: its code and message.
func callError(what string, err error) error {
	if ce := new(connect.Error); errors.As(err, &ce) {
		return fmt.Errorf("%s: %s: %s", what, ce.Code(), ce.Message())
	}
	return fmt.Errorf("%s: %w", what, err)
}
