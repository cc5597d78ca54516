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
// do. Two more modes give make bench the floors of Parley's internal crossings:
//
//	parley-floor -server connect-mtls -identity bench-floor -tls-ca ca.crt -tls-cert c.crt -tls-key c.key
//	parley-floor -server nats -nats-url tls://127.0.0.1:PORT -nats-ca ca.crt -nats-seed worker.nk -subject parley.provider.bench-floor
//
// One more serves the crossings a path must keep, composed in one process:
//
//	parley-floor -server kept -nats-url tls://127.0.0.1:PORT -nats-ca ca.crt -nats-seed admin.nk -publish-subject parley.bench.floor -request-subject parley.provider.bench-floor
//
// kept answers ConverseAlpha2 on grpc-go's server as the floor does, but first, for the
// component -request-component, sends the text as a NATS request to -request-subject and
// waits for the answer (the worker dispatch), and then, for every component, publishes an
// event of -publish-bytes with a Nats-Msg-Id to -publish-subject in JetStream and waits
// for its ack (the audit event stored before the reply): the cheapest server that keeps
// those crossings, with nothing else to do. With -store-dsn and -store-stream it also does
// the audit log's kept work: it reads the events back from the stream and stores each
// once in PostgreSQL, in batches (store.go).
//
// connect-mtls serves the same echo over HTTP/2 with mutual TLS as a service does
// (libs/identity: the certificate names spiffe://<trust domain>/<identity>, each call
// needs a verified client certificate whose identity -allow lists), on grpc-go's server
// for a caller that asks for it by ALPN as internal callers do, else on net/http's. nats answers every
// request on -subject with its own payload, in the queue group named like the subject, as
// a provider-worker takes work (libs/bus: TLS and an nkey user); it prints "listening on
// <subject>". Ctrl-C or SIGTERM stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	"github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1/runtimev1connect"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/grpcbridge"
	"github.com/parleyhq/parley/libs/identity"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "parley-floor:", err)
		os.Exit(1)
	}
}

// run serves as args say until ctx ends, writing its "listening on" line to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("parley-floor", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	server := fs.String("server", "grpc", "grpc (grpc-go), connect (connect-go on net/http, as Parley's services), "+
		"connect-mtls (connect-go over mutual TLS, as Parley's internal calls), nats (a NATS responder, as a provider-worker) "+
		"or kept (grpc-go, with a path's kept NATS crossings in each call)")
	var idCfg identity.Config
	fs.StringVar(&idCfg.CAFile, "tls-ca", "", "connect-mtls: the CA bundle trusted for clients")
	fs.StringVar(&idCfg.CertFile, "tls-cert", "", "connect-mtls: the server's certificate")
	fs.StringVar(&idCfg.KeyFile, "tls-key", "", "connect-mtls: the server's key")
	fs.StringVar(&idCfg.TrustDomain, "trust-domain", "parley.local", "connect-mtls: the trust domain of every identity")
	name := fs.String("identity", "bench-floor", "connect-mtls: the identity the certificate names")
	allow := fs.String("allow", identity.Router, "connect-mtls: the identity allowed to call")
	var natsCfg bus.Config
	fs.StringVar(&natsCfg.URL, "nats-url", "", "nats: the server's URL")
	fs.StringVar(&natsCfg.TLSCAFile, "nats-ca", "", "nats: the CA bundle the server's certificate chains to (turns TLS on)")
	fs.StringVar(&natsCfg.NKeySeedFile, "nats-seed", "", "nats: the nkey seed of the user to connect as")
	subject := fs.String("subject", "", "nats: the subject (and queue group) to answer")
	publishSubject := fs.String("publish-subject", "", "kept: the JetStream subject each call publishes to, awaiting the ack")
	requestSubject := fs.String("request-subject", "", "kept: the subject a -request-component call sends its NATS request to")
	requestComponent := fs.String("request-component", "kept-provider", "kept: the component whose calls make the NATS request too")
	publishBytes := fs.Int("publish-bytes", 1024, "kept: the size of each call's JetStream event")
	storeDSN := fs.String("store-dsn", "", "kept: a PostgreSQL URL; when set, every event is also read back from -store-stream and stored there once")
	storeStream := fs.String("store-stream", "", "kept: the stream holding -publish-subject, read by the -store-dsn storage")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var serve func(context.Context) error
	switch *server {
	case "grpc":
		serve = func(ctx context.Context) error { return serveGRPC(ctx, *addr, out) }
	case "connect":
		serve = func(ctx context.Context) error { return serveConnect(ctx, *addr, out, nil) }
	case "connect-mtls":
		idCfg.Mode, idCfg.ReloadInterval = identity.ModeOn, time.Hour
		id, err := identity.NewSource(idCfg, *name, slog.New(slog.NewTextHandler(os.Stderr, nil)))
		if err != nil {
			return err
		}
		serve = func(ctx context.Context) error { return serveConnect(ctx, *addr, out, &mtls{id: id, allow: *allow}) }
	case "kept":
		if natsCfg.URL == "" || *publishSubject == "" || *requestSubject == "" {
			return errors.New("-server kept needs -nats-url, -publish-subject and -request-subject")
		}
		if (*storeDSN == "") != (*storeStream == "") {
			return errors.New("-store-dsn and -store-stream go together")
		}
		natsCfg.ConnectTimeout = 5 * time.Second
		serve = func(ctx context.Context) error {
			return serveKept(ctx, *addr, natsCfg, keptCrossings{
				publish: *publishSubject, publishBytes: *publishBytes, request: *requestSubject, requestComponent: *requestComponent,
				storeDSN: *storeDSN, storeStream: *storeStream,
			}, out)
		}
	case "nats":
		if natsCfg.URL == "" || *subject == "" {
			return errors.New("-server nats needs -nats-url and -subject")
		}
		natsCfg.ConnectTimeout = 5 * time.Second
		serve = func(ctx context.Context) error { return serveNATS(ctx, natsCfg, *subject, out) }
	default:
		return fmt.Errorf("-server must be grpc, connect, connect-mtls, nats or kept, got %q", *server)
	}
	return serve(ctx)
}

// serveGRPC serves the echo on grpc-go at addr until ctx ends.
func serveGRPC(ctx context.Context, addr string, out io.Writer) error {
	return serveGRPCWith(ctx, addr, out, func(_ context.Context, req *runtimev1.ConversationRequestAlpha2) (*runtimev1.ConversationResponseAlpha2, error) {
		return echo(req), nil
	})
}

// serveGRPCWith serves ConverseAlpha2 with handle on grpc-go at addr until ctx ends.
func serveGRPCWith(ctx context.Context, addr string, out io.Writer,
	handle func(context.Context, *runtimev1.ConversationRequestAlpha2) (*runtimev1.ConversationResponseAlpha2, error),
) error {
	ln, err := listen(ctx, addr, out)
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: runtimev1connect.DaprName,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "ConverseAlpha2", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			req := &runtimev1.ConversationRequestAlpha2{}
			if err := dec(req); err != nil {
				return nil, err
			}
			return handle(ctx, req)
		}}},
	}, struct{}{})
	return serveUntil(ctx, func() error { return s.Serve(ln) }, func(context.Context) error { s.GracefulStop(); return nil })
}

// keptCrossings are the kept server's crossings: the JetStream subject every call
// publishes an event of publishBytes to, and the subject requestComponent's calls send
// their NATS request to first; with storeDSN, the events' storage in PostgreSQL
// (keptStore), reading them from storeStream.
type keptCrossings struct {
	publish          string
	publishBytes     int
	request          string
	requestComponent string
	storeDSN         string
	storeStream      string
}

// serveKept serves ConverseAlpha2 on grpc-go at addr, each call making the NATS
// crossings of a path that Parley keeps before it echoes (see the package comment).
func serveKept(ctx context.Context, addr string, cfg bus.Config, kept keptCrossings, out io.Writer) error {
	nc, err := bus.Connect(cfg, "parley-floor", slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc.Conn)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stored := make(chan error, 1)
	if kept.storeDSN == "" {
		stored <- nil
	} else {
		db, err := pgx.Connect(ctx, kept.storeDSN)
		if err != nil {
			return fmt.Errorf("connect to PostgreSQL: %w", err)
		}
		defer func() { _ = db.Close(context.Background()) }()
		store, err := newKeptStore(ctx, js, kept.storeStream, kept.publish, db)
		if err != nil {
			return err
		}
		go func() {
			err := store.run(ctx)
			if err != nil {
				cancel() // the server stops: its rows would measure less than they say
			}
			stored <- err
		}()
	}
	payload := []byte(strings.Repeat("x", kept.publishBytes))
	// Message ids unique across runs of the benchmark against one stream.
	prefix := strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	var seq atomic.Int64
	err = serveGRPCWith(ctx, addr, out, func(ctx context.Context, req *runtimev1.ConversationRequestAlpha2) (*runtimev1.ConversationResponseAlpha2, error) {
		res := echo(req)
		if req.GetName() == kept.requestComponent {
			text := res.GetOutputs()[0].GetChoices()[0].GetMessage().GetContent()
			if _, err := nc.RequestWithContext(ctx, kept.request, []byte(text)); err != nil {
				return nil, fmt.Errorf("request %s: %w", kept.request, err)
			}
		}
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: kept.publish, Data: payload},
			jetstream.WithMsgID(prefix+strconv.FormatInt(seq.Add(1), 10))); err != nil {
			return nil, fmt.Errorf("publish %s: %w", kept.publish, err)
		}
		return res, nil
	})
	cancel()
	if serr := <-stored; serr != nil {
		return fmt.Errorf("store: %w", serr)
	}
	return err
}

// mtls is what connect-mtls adds: the server's identity and the one identity it admits.
type mtls struct {
	id    *identity.Source
	allow string
}

// serveConnect serves the echo on connect-go at addr until ctx ends: over cleartext
// HTTP/2 (and HTTP/1.1), or with tls over HTTP/2 and mutual TLS, the identity checks of
// Parley's services included (libs/identity's Peers and Authorize).
func serveConnect(ctx context.Context, addr string, out io.Writer, tls *mtls) error {
	ln, err := listen(ctx, addr, out)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	var opts []connect.HandlerOption
	if tls != nil {
		opts = append(opts, tls.id.Authorize(identity.Policy{runtimev1connect.DaprConverseAlpha2Procedure: {tls.allow}}))
	}
	mux.Handle(runtimev1connect.NewDaprHandler(floor{}, opts...))
	p := new(http.Protocols)
	srv := &http.Server{Handler: mux, Protocols: p, ReadHeaderTimeout: 10 * time.Second}
	if tls == nil {
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		return serveUntil(ctx, func() error { return srv.Serve(ln) }, srv.Shutdown)
	}
	// As a service's port (libs/rpcserver): the handshake is the split's, a caller choosing
	// identity.GRPCProtocol (rpcclient's RPC) reaches grpc-go's server through the bridge,
	// any other net/http's.
	p.SetHTTP2(true)
	srv.Handler = tls.id.Peers(mux)
	srv.TLSConfig = tls.id.GRPCServerTLS()
	split := grpcbridge.NewSplit(ln, srv.TLSConfig, identity.GRPCProtocol, 0, nil)
	g := grpc.NewServer(append(grpcbridge.New(srv.Handler, grpcbridge.Options{}).ServerOptions(), grpc.Creds(grpcbridge.Handshaken()))...)
	go split.Run()
	go func() { _ = g.Serve(split.GRPC()) }()
	return serveUntil(ctx, func() error { return srv.Serve(split.HTTP()) }, func(ctx context.Context) error {
		_ = split.Close()
		g.GracefulStop()
		return srv.Shutdown(ctx)
	})
}

// serveNATS answers every request on subject with its payload, in the queue group named
// like the subject, until ctx ends.
func serveNATS(ctx context.Context, cfg bus.Config, subject string, out io.Writer) error {
	nc, err := bus.Connect(cfg, "parley-floor", slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return err
	}
	defer nc.Close()
	sub, err := nc.QueueSubscribe(subject, subject, func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The server has the subscription once it answered a flush: a request sent after the
	// line below is served.
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	_, _ = fmt.Fprintf(out, "listening on %s\n", subject)
	<-ctx.Done()
	return nil
}

func listen(ctx context.Context, addr string, out io.Writer) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	_, _ = fmt.Fprintf(out, "listening on %s\n", ln.Addr())
	return ln, nil
}

// serveUntil runs serve until it fails or ctx ends, then shuts down within 5 s.
func serveUntil(ctx context.Context, serve func() error, shutdown func(context.Context) error) error {
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
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
