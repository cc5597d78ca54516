// Command parley-floor serves the one-hop floor that `make bench` measures every path
// against: Dapr's ConverseAlpha2 answered by a handler that only echoes the first input
// text, in a process of its own, over cleartext HTTP/2. The same load generator calls it
// with the same messages as the router, so the difference between the two is what
// Parley adds beyond the cheapest crossing this machine allows (a Dapr sidecar costs
// about that).
//
//	parley-floor -addr 127.0.0.1:0 -server grpc   # prints "listening on 127.0.0.1:PORT"
//
// -server grpc (the default, and make bench's floor) uses grpc-go's server, the cheapest
// this machine allows; -server connect uses connect-go on net/http, as Parley's services
// do. Ctrl-C or SIGTERM stops it.
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

	"google.golang.org/grpc"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	"github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1/runtimev1connect"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "parley-floor:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("parley-floor", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	server := fs.String("server", "grpc", "server library: grpc (grpc-go) or connect (connect-go on net/http, as Parley's services)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *server != "connect" && *server != "grpc" {
		return fmt.Errorf("-server must be connect or grpc, got %q", *server)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())

	errc := make(chan error, 1)
	var shutdown func(context.Context) error
	if *server == "grpc" {
		s := grpc.NewServer()
		s.RegisterService(&grpc.ServiceDesc{
			ServiceName: runtimev1connect.DaprName,
			HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{{MethodName: "ConverseAlpha2", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				req := &runtimev1.ConversationRequestAlpha2{}
				if err := dec(req); err != nil {
					return nil, err
				}
				return echo(req), nil
			}}},
		}, struct{}{})
		go func() { errc <- s.Serve(ln) }()
		shutdown = func(context.Context) error { s.GracefulStop(); return nil }
	} else {
		mux := http.NewServeMux()
		mux.Handle(runtimev1connect.NewDaprHandler(floor{}))
		p := new(http.Protocols)
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		srv := &http.Server{Handler: mux, Protocols: p, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- srv.Serve(ln) }()
		shutdown = srv.Shutdown
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return shutdown(shutdownCtx)
}

// floor answers ConverseAlpha2; every other Dapr method is unimplemented.
type floor struct {
	runtimev1connect.UnimplementedDaprHandler
}

func (floor) ConverseAlpha2(_ context.Context, req *runtimev1.ConversationRequestAlpha2) (*runtimev1.ConversationResponseAlpha2, error) {
	return echo(req), nil
}

// echo answers with the first input's first text, as the echo component does.
func echo(req *runtimev1.ConversationRequestAlpha2) *runtimev1.ConversationResponseAlpha2 {
	text := ""
	if in := req.GetInputs(); len(in) > 0 {
		if msgs := in[0].GetMessages(); len(msgs) > 0 {
			if c := msgs[0].GetOfUser().GetContent(); len(c) > 0 {
				text = c[0].GetText()
			}
		}
	}
	return &runtimev1.ConversationResponseAlpha2{Outputs: []*runtimev1.ConversationResultAlpha2{{
		Choices: []*runtimev1.ConversationResultChoices{{FinishReason: "stop", Message: &runtimev1.ConversationResultMessage{Content: text}}},
	}}}
}
