// Package command implements the parley command line: `parley converse` runs one
// conversation turn on a component, `parley components` lists what the router serves, and
// `parley audit list|get|stats` query the audit log through the router's AuditService, and
// `parley keys create|list|revoke` edit the router's API keys file.
// Results print as text or tables, or as JSON.
package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
)

// Exit codes of Main.
const (
	ExitOK    = 0
	ExitError = 1 // the call failed
	ExitUsage = 2 // bad arguments
)

// DefaultRouterURL is the router of `make up`.
const DefaultRouterURL = "http://127.0.0.1:3500"

// Environment variables the command line reads.
const (
	// EnvRouterURL overrides DefaultRouterURL.
	EnvRouterURL = "PARLEY_ROUTER_URL"
	// EnvDaprAPIToken is the API token, as Dapr's clients read it.
	EnvDaprAPIToken = "DAPR_API_TOKEN"
	// EnvAPIKey is the API token when EnvDaprAPIToken is unset.
	EnvAPIKey = "PARLEY_API_KEY"
)

// TokenHeader carries the API token on every call, as daprd expects it.
const TokenHeader = "dapr-api-token"

const usage = `usage: parley [global flags] <command> [flags] [arguments]

commands:
  converse [TEXT]  one conversation turn on a component; TEXT, else stdin (parley converse -h)
  components       the conversation components the router serves
  audit list       list conversations, newest first (filters and paging: parley audit list -h)
  audit get ID     show one conversation
  audit stats      usage statistics per hour or day (parley audit stats -h)
  keys create      make an API key: prints it once, writes only its hash (parley keys -h)
  keys list        the API keys of the keys file
  keys revoke ID   revoke an API key

global flags (before or after the command):
  -router URL      the router; else $PARLEY_ROUTER_URL, else http://127.0.0.1:3500
  -token TOKEN     API key or token, sent as dapr-api-token; else $DAPR_API_TOKEN, else $PARLEY_API_KEY
  -o table|json    output format (converse and components also take -json)
  -grpc            call over gRPC instead of Connect
  -timeout D       bound of each command's calls (default 30s)
`

// IO is what Main reads and writes.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads the environment (os.Getenv).
	Getenv func(string) string
	// HTTPClient makes the calls; nil means one that speaks HTTP/1.1 and cleartext
	// HTTP/2, as gRPC needs.
	HTTPClient *http.Client
	// Now is the clock that relative times (-since) count back from; nil means time.Now.
	Now func() time.Time
}

func (io IO) getenv(key string) string {
	if io.Getenv == nil {
		return ""
	}
	return io.Getenv(key)
}

// errUsage marks an error in the arguments.
var errUsage = errors.New("usage")

// global holds the flags every command takes.
type global struct {
	router  string
	token   string
	output  string
	grpc    bool
	timeout time.Duration
}

// register adds the global flags to fs, with their current values as defaults, so that
// they may come before and after the command.
func (g *global) register(fs *flag.FlagSet) {
	fs.StringVar(&g.router, "router", g.router, "router base URL")
	fs.StringVar(&g.token, "token", g.token, "API token, sent as "+TokenHeader)
	fs.StringVar(&g.output, "o", g.output, "output: table or json")
	fs.BoolVar(&g.grpc, "grpc", g.grpc, "call over gRPC instead of Connect")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "bound of each command's calls")
}

// resolve fills what the flags left unset from the environment and checks the values.
func (g *global) resolve(io IO) error {
	if g.router == "" {
		g.router = io.getenv(EnvRouterURL)
	}
	if g.router == "" {
		g.router = DefaultRouterURL
	}
	g.router = strings.TrimSuffix(g.router, "/")
	if g.token == "" {
		g.token = io.getenv(EnvDaprAPIToken)
	}
	if g.token == "" {
		g.token = io.getenv(EnvAPIKey)
	}
	if g.output != "table" && g.output != "json" {
		return fmt.Errorf("%w: -o must be table or json, got %q", errUsage, g.output)
	}
	if g.timeout <= 0 {
		return fmt.Errorf("%w: -timeout must be positive, got %s", errUsage, g.timeout)
	}
	return nil
}

// json reports whether the output is JSON.
func (g *global) json() bool { return g.output == "json" }

// Main runs the command line args (without the program name) and returns the exit code.
func Main(ctx context.Context, args []string, io IO) int {
	if io.Now == nil {
		io.Now = time.Now
	}
	if io.Stdin == nil {
		io.Stdin = strings.NewReader("")
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
	g := &global{output: "table", timeout: 30 * time.Second}
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	fs.Usage = func() { _, _ = fmt.Fprint(io.Stderr, usage) }
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: want a command: converse, components or audit", errUsage)
	}
	switch rest[0] {
	case "converse":
		return converse(ctx, g, rest[1:], io)
	case "components":
		return components(ctx, g, rest[1:], io)
	case "keys":
		if len(rest) < 2 {
			_, _ = fmt.Fprint(io.Stderr, keysUsage)
			return fmt.Errorf("%w: want keys create, keys list or keys revoke", errUsage)
		}
		return keys(g, rest[1], rest[2:], io)
	case "audit":
		if len(rest) < 2 {
			fs.Usage()
			return fmt.Errorf("%w: want audit list, audit get or audit stats", errUsage)
		}
		return audit(ctx, g, rest[1], rest[2:], io)
	default:
		fs.Usage()
		return fmt.Errorf("%w: unknown command %s", errUsage, rest[0])
	}
}

// parseCommand parses a command's flags, which may come before, between and after its
// positional arguments ("--" ends the flags), and the global flags among them. It returns
// the positional arguments. synopsis is the first line of the command's help.
func parseCommand(fs *flag.FlagSet, g *global, synopsis string, args []string, io IO) ([]string, error) {
	fs.SetOutput(io.Stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(io.Stderr, "usage: %s\n\nflags (global flags included):\n", synopsis)
		fs.PrintDefaults()
	}
	g.register(fs)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError(err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	if err := g.resolve(io); err != nil {
		return nil, err
	}
	return positional, nil
}

func usageError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%w: %w", errUsage, err)
}

// httpClient is io's client, or one that speaks HTTP/1.1 and cleartext HTTP/2, sending
// the API token when there is one.
func httpClient(g *global, hc *http.Client) *http.Client {
	if hc == nil {
		protocols := new(http.Protocols)
		protocols.SetHTTP1(true)
		protocols.SetUnencryptedHTTP2(true)
		hc = &http.Client{Transport: &http.Transport{Protocols: protocols}}
	}
	if g.token == "" {
		return hc
	}
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	withToken := *hc
	withToken.Transport = tokenTransport{next: next, token: g.token}
	return &withToken
}

// tokenTransport adds the API token to every request.
type tokenTransport struct {
	next  http.RoundTripper
	token string
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(TokenHeader, t.token)
	return t.next.RoundTrip(r)
}

// connectOptions are the options of every RPC client.
func connectOptions(g *global) []connect.ClientOption {
	if g.grpc {
		return []connect.ClientOption{connect.WithGRPC()}
	}
	return nil
}

// tokenHint says what to do about a refused API token.
func tokenHint(g *global) string {
	if g.token == "" {
		return "the router wants an API token: -token, $" + EnvDaprAPIToken + " or $" + EnvAPIKey
	}
	return "the router refused the API token"
}

// unreachable says what to do when the router cannot be reached, or returns "".
func unreachable(g *global, err error) string {
	if opErr := new(net.OpError); errors.As(err, &opErr) && opErr.Op == "dial" {
		return "is the router running at " + g.router + "? start it with make up, or set -router or $" + EnvRouterURL
	}
	return ""
}

// callError makes an RPC error readable: its code and message, and a hint where one helps.
func callError(g *global, what string, err error) error {
	if ce := new(connect.Error); errors.As(err, &ce) {
		hint := unreachable(g, err)
		if ce.Code() == connect.CodeUnauthenticated {
			hint = tokenHint(g)
		}
		if hint != "" {
			return fmt.Errorf("%s: %s: %s (%s)", what, ce.Code(), ce.Message(), hint)
		}
		return fmt.Errorf("%s: %s: %s", what, ce.Code(), ce.Message())
	}
	return fmt.Errorf("%s: %w", what, err)
}
