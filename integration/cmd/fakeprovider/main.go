// Command fakeprovider serves Parley's OpenAI-compatible fake provider
// (integration/fakeprovider) on a port, for trying components and for benchmarks without
// a real LLM:
//
//	go run ./integration/cmd/fakeprovider -addr 127.0.0.1:8090 -latency 300ms -tokens 64
//
// Point an OpenAI-compatible component at it with `endpoint: http://127.0.0.1:8090/v1`
// (any key, unless -key is set). Ctrl-C stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/parleyhq/parley/integration/fakeprovider"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "fakeprovider:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("fakeprovider", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address (port 0 picks a free port)")
	var opts fakeprovider.Options
	fs.DurationVar(&opts.Latency, "latency", 0, "wait before each answer (streaming: before the first chunk)")
	fs.DurationVar(&opts.TokenInterval, "token-interval", 0, "wait between streamed tokens")
	fs.IntVar(&opts.Tokens, "tokens", fakeprovider.DefaultTokens, "completion tokens per answer (a smaller max_tokens in the request wins)")
	fs.IntVar(&opts.FailEvery, "fail-every", 0, "fail every n-th chat request (0: never)")
	fs.IntVar(&opts.FailStatus, "fail-status", fakeprovider.DefaultFailStatus, "HTTP status of injected failures")
	fs.DurationVar(&opts.RetryAfter, "retry-after", 0, "Retry-After sent with injected failures (0: none)")
	fs.StringVar(&opts.Key, "key", "", "API key requests must carry (empty: any)")
	fs.StringVar(&opts.Model, "model", fakeprovider.DefaultModel, "model reported when a request names none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if opts.Tokens == 0 {
		opts.Tokens = -1 // -tokens 0 means an empty answer, not the default
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: fakeprovider.New(opts), ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("fakeprovider listening on http://%s (OpenAI base URL http://%s/v1)\n", ln.Addr(), ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
