// Package rpcserver runs a service's single HTTP server: Connect, gRPC and gRPC-Web
// handlers plus grpc.health.v1, gRPC reflection, /healthz, /readyz and /metrics, with a
// graceful shutdown. An internal service serves mutual TLS with the service's identity:
// a connection whose client chose identity.GRPCProtocol by ALPN (internal callers,
// libs/rpcclient) reaches grpc-go's server, which runs the same handlers through
// libs/grpcbridge; any other (h2, HTTP/1.1) reaches net/http's. The public edge (router)
// and INTERNAL_TLS=off serve HTTP/1.1 and cleartext HTTP/2 (h2c).
package rpcserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/parleyhq/parley/libs/grpcbridge"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/metrics"
)

// Config configures the listener. Each service supplies its own default address.
type Config struct {
	// Addr is the main listen address, e.g. "127.0.0.1:3500" (0.0.0.0 for every interface).
	Addr string `env:"RPC_ADDR"`
	// ExtraAddrs are more addresses serving the same handlers.
	ExtraAddrs []string `env:"RPC_EXTRA_ADDRS"`
	// GRPCAddrs are addresses serving the same handlers' gRPC calls, and nothing else, on
	// grpc-go's server (router: Dapr's gRPC port). Cleartext only: the public edge, or
	// INTERNAL_TLS=off.
	GRPCAddrs []string `env:"RPC_GRPC_ADDRS"`
	// MaxMessageBytes caps a Connect/gRPC request message.
	MaxMessageBytes int `env:"RPC_MAX_MESSAGE_BYTES, default=4194304"`
	// ReadHeaderTimeout bounds how long a client may take to send headers.
	ReadHeaderTimeout time.Duration `env:"RPC_READ_HEADER_TIMEOUT, default=5s"`
	// ReadTimeout bounds how long a client may take to send a request's whole body,
	// counted from its start. Client- and bidi-streaming RPCs are exempt (their body lasts
	// as long as the stream); nothing bounds the response, so server streams run as long
	// as their handler.
	ReadTimeout time.Duration `env:"RPC_READ_TIMEOUT, default=30s"`
	// IdleTimeout closes a keep-alive HTTP/1.1 or HTTP/2 connection with no request in
	// flight for this long. Above rpcclient's 90 s, so internal clients close theirs first.
	IdleTimeout time.Duration `env:"RPC_IDLE_TIMEOUT, default=120s"`
	// MaxConcurrentStreams caps the requests in flight on one HTTP/2 connection.
	MaxConcurrentStreams int `env:"RPC_MAX_CONCURRENT_STREAMS, default=250"`
}

// Validate checks the limits.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxMessageBytes <= 0 {
		errs = append(errs, fmt.Errorf("RPC_MAX_MESSAGE_BYTES must be positive, got %d", c.MaxMessageBytes))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"RPC_READ_HEADER_TIMEOUT", c.ReadHeaderTimeout}, {"RPC_READ_TIMEOUT", c.ReadTimeout}, {"RPC_IDLE_TIMEOUT", c.IdleTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", d.name, d.v))
		}
	}
	if c.MaxConcurrentStreams <= 0 {
		errs = append(errs, fmt.Errorf("RPC_MAX_CONCURRENT_STREAMS must be positive, got %d", c.MaxConcurrentStreams))
	}
	return errors.Join(errs...)
}

// Defaults of the limits, as the environment's defaults above.
const (
	DefaultReadHeaderTimeout    = 5 * time.Second
	DefaultReadTimeout          = 30 * time.Second
	DefaultIdleTimeout          = 120 * time.Second
	DefaultMaxConcurrentStreams = 250
)

// Defaults are a service's default addresses, used where the environment sets none.
type Defaults struct {
	Addr       string
	ExtraAddrs []string
	GRPCAddrs  []string
	// Public marks the listener as the public edge: callers have no certificates, so it
	// serves without TLS and authenticates them otherwise (router).
	Public bool
}

// Route is an HTTP handler mounted on the server. Service, when set, is a gRPC service
// name announced through health checks and reflection.
type Route struct {
	Pattern string
	Handler http.Handler
	Service string
}

// Check is a readiness check run by /readyz.
type Check struct {
	Name  string
	Check func(context.Context) error
}

// AsRoute annotates a constructor of Route so that its result joins the server.
func AsRoute(f any) any {
	return fx.Annotate(f, fx.ResultTags(`group:"rpc_routes"`))
}

// AsCheck annotates a constructor of Check so that /readyz runs it.
func AsCheck(f any) any {
	return fx.Annotate(f, fx.ResultTags(`group:"readiness_checks"`))
}

// Server is the service's HTTP server.
type Server struct {
	cfg    Config
	logger *slog.Logger
	srv    *http.Server
	grpc   *grpc.Server
	// internal serves, on each TLS port, the connections whose client chose
	// identity.GRPCProtocol: internal callers' gRPC calls, on grpc-go's transport.
	internal *grpc.Server
	splits   []*grpcbridge.Split
	warm     *warmHandler
	// grpcWarm is the warm pool of the gRPC calls grpc-go serves (grpc or internal).
	grpcWarm  *warmHandler
	health    *grpchealth.StaticChecker
	services  []string
	checks    []Check
	listeners []net.Listener
	grpcLns   []net.Listener
	tls       bool
	stopping  atomic.Bool
	wg        sync.WaitGroup
}

// Params are New's dependencies.
type Params struct {
	fx.In

	Config   Config
	Defaults Defaults `optional:"true"`
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Identity *identity.Source
	Routes   []Route `group:"rpc_routes"`
	Checks   []Check `group:"readiness_checks"`
}

// New builds the server; it listens only when Start is called.
func New(p Params) (*Server, error) {
	cfg := p.Config
	if cfg.Addr == "" {
		cfg.Addr = p.Defaults.Addr
	}
	if len(cfg.ExtraAddrs) == 0 {
		cfg.ExtraAddrs = p.Defaults.ExtraAddrs
	}
	if len(cfg.GRPCAddrs) == 0 {
		cfg.GRPCAddrs = p.Defaults.GRPCAddrs
	}
	if cfg.Addr == "" {
		return nil, errors.New("RPC_ADDR is not set and the service has no default")
	}
	// A Config built in code (tests) may leave the limits unset: they take the defaults.
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxConcurrentStreams <= 0 {
		cfg.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	s := &Server{cfg: cfg, logger: p.Logger, checks: p.Checks}
	mux := http.NewServeMux()
	for _, r := range p.Routes {
		mux.Handle(r.Pattern, r.Handler)
		if r.Service != "" {
			s.services = append(s.services, r.Service)
		}
	}
	slices.Sort(s.services)
	s.services = slices.Compact(s.services)
	s.health = grpchealth.NewStaticChecker(s.services...)
	mux.Handle(grpchealth.NewHandler(s.health))
	reflector := grpcreflect.NewStaticReflector(s.services...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.ready)
	mux.Handle("GET /metrics", metrics.Handler(p.Registry))

	var handler http.Handler = mux
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	if s.tls = !p.Defaults.Public && p.Identity.Enabled(); s.tls {
		protocols.SetHTTP2(true)
		handler = p.Identity.Peers(requirePeer(handler))
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	streaming := streamingBodies(s.services)
	switch {
	case len(cfg.GRPCAddrs) > 0 && s.tls:
		return nil, errors.New("RPC_GRPC_ADDRS serve cleartext gRPC: set them only on the public edge (router) or with INTERNAL_TLS=off")
	case len(cfg.GRPCAddrs) > 0:
		s.grpcWarm = newWarmHandler(handler)
		s.grpc = newGRPCServer(cfg, streaming, s.grpcWarm, p.Logger)
	case s.tls:
		s.grpcWarm = newWarmHandler(handler)
		s.internal = newGRPCServer(cfg, streaming, s.grpcWarm, p.Logger, grpc.Creds(grpcbridge.Handshaken()))
	}
	// The gRPC port's calls run on grpc-go's stream workers; the HTTP server's on the warm
	// pool's.
	s.warm = newWarmHandler(bodyDeadline(cfg.ReadTimeout, streaming, recoverHandler(p.Logger, handler)))
	s.srv = &http.Server{
		Handler:           s.warm,
		Protocols:         protocols,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		// No ReadTimeout: it bounds every request body, so it would cut client- and
		// bidi-streaming RPCs (ScrubStream); bodyDeadline bounds the other bodies.
		// No WriteTimeout: it would cut server streams (ConverseStream) and slow answers.
		IdleTimeout: cfg.IdleTimeout,
		HTTP2:       &http.HTTP2Config{MaxConcurrentStreams: cfg.MaxConcurrentStreams},
		ErrorLog:    slog.NewLogLogger(p.Logger.Handler(), slog.LevelWarn),
	}
	if s.tls {
		s.srv.TLSConfig = p.Identity.GRPCServerTLS()
	}
	return s, nil
}

// streamingBodies returns the paths of the client- and bidi-streaming RPCs of services,
// as the protobuf registry describes them.
func streamingBodies(services []string) map[string]bool {
	paths := map[string]bool{
		// The reflection handlers' own bidi streams (grpcurl holds one per session).
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      true,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": true,
	}
	for _, name := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			continue
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		for i := range sd.Methods().Len() {
			if m := sd.Methods().Get(i); m.IsStreamingClient() {
				paths["/"+name+"/"+string(m.Name())] = true
			}
		}
	}
	return paths
}

// bodyDeadline gives a request's body timeout from the request's start to arrive whole;
// a slower body fails its reads (the handler answers with its error, and an HTTP/1.1
// connection is closed). Once the body has ended the deadline is lifted, so a slow
// handler or a long response is not affected. Paths in exempt (streaming request
// bodies) get no deadline.
func bodyDeadline(timeout time.Duration, exempt map[string]bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exempt[r.URL.Path] || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline when the body has been read to its end.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err //nolint:wrapcheck // a body's errors pass through unchanged (io.EOF must stay io.EOF)
}

// openPath reports whether a request may come without a client certificate: the probes
// and the metrics scrape, which carry no identity (Kubernetes probes and most scrapers
// present none). They reveal nothing a caller could use and change nothing.
func openPath(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return r.Method == http.MethodGet || r.Method == http.MethodHead
	}
	return strings.HasPrefix(r.URL.Path, "/"+grpchealth.HealthV1ServiceName+"/")
}

// requirePeer refuses every request but the open ones that came without a verified
// identity of the trust domain, before any handler runs. HTTP 401 reaches Connect, gRPC
// and gRPC-Web clients as Unauthenticated. The per-RPC policy (identity.Policy) then
// decides which identities may call what.
func requirePeer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := identity.PeerFrom(r.Context()); ok || openPath(r) {
			next.ServeHTTP(w, r)
			return
		}
		// A Connect unary error body; gRPC and gRPC-Web clients map the status alone.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"code":"unauthenticated","message":"` + identity.ErrNoPeer.Error() + `"}` + "\n"))
	})
}

// Start binds every address synchronously, so a bind error fails start-up, then serves.
func (s *Server) Start(_ context.Context) error {
	lns, err := listen(append([]string{s.cfg.Addr}, s.cfg.ExtraAddrs...), "RPC_ADDR/RPC_EXTRA_ADDRS")
	if err != nil {
		return err
	}
	grpcLns, err := listen(s.cfg.GRPCAddrs, "RPC_GRPC_ADDRS")
	if err != nil {
		closeAll(lns)
		return err
	}
	s.listeners, s.grpcLns = lns, grpcLns
	for _, ln := range s.grpcLns {
		s.logger.Info("rpc server listening", "addr", ln.Addr().String(), "mtls", false, "protocols", "grpc")
		s.wg.Go(func() {
			if err := s.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				s.logger.Error("rpc server stopped", "addr", ln.Addr().String(), "err", err)
			}
		})
	}
	for _, ln := range s.listeners {
		s.logger.Info("rpc server listening", "addr", ln.Addr().String(), "mtls", s.tls)
		if s.tls {
			s.serveTLS(ln)
			continue
		}
		s.wg.Go(func() {
			if err := s.srv.Serve(bufferedListener{ln}); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.logger.Error("rpc server stopped", "addr", ln.Addr().String(), "err", err)
			}
		})
	}
	return nil
}

// serveTLS serves a TLS port: the handshake is the split's, then a connection whose client
// chose identity.GRPCProtocol goes to the internal grpc-go server and any other to the
// HTTP server, which serves the handshaken *tls.Conn as ServeTLS would.
func (s *Server) serveTLS(ln net.Listener) {
	split := grpcbridge.NewSplit(ln, s.srv.TLSConfig, identity.GRPCProtocol, s.cfg.ReadHeaderTimeout, s.logger)
	s.splits = append(s.splits, split)
	s.wg.Go(split.Run)
	s.wg.Go(func() {
		if err := s.internal.Serve(split.GRPC()); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, net.ErrClosed) {
			s.logger.Error("rpc server stopped", "addr", ln.Addr().String(), "err", err)
		}
	})
	s.wg.Go(func() {
		if err := s.srv.Serve(split.HTTP()); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.logger.Error("rpc server stopped", "addr", ln.Addr().String(), "err", err)
		}
	})
}

// listen binds every address of addrs, or none: when one fails, those bound are closed
// and the error names the setting.
func listen(addrs []string, setting string) ([]net.Listener, error) {
	lns := make([]net.Listener, 0, len(addrs))
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll(lns)
			return nil, fmt.Errorf("listen on %s (%s): %w", addr, setting, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func closeAll(lns []net.Listener) {
	for _, l := range lns {
		_ = l.Close()
	}
}

// Stop reports NOT_SERVING, then drains in-flight requests until ctx ends.
func (s *Server) Stop(ctx context.Context) error {
	s.stopping.Store(true)
	for _, svc := range s.services {
		s.health.SetStatus(svc, grpchealth.StatusNotServing)
	}
	s.health.SetStatus("", grpchealth.StatusNotServing)
	for _, split := range s.splits {
		_ = split.Close() // no more connections; those served drain below
	}
	var drained []func()
	for _, g := range []*grpc.Server{s.grpc, s.internal} {
		if g != nil {
			drained = append(drained, gracefulStop(ctx, g))
		}
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	s.warm.close()
	if s.grpcWarm != nil {
		s.grpcWarm.close()
	}
	for _, wait := range drained {
		wait()
	}
	s.wg.Wait()
	return err
}

// gracefulStop starts g's graceful stop; the function it returns waits for it, cutting
// the calls still running once ctx ends, as Close cuts the HTTP server's.
func gracefulStop(ctx context.Context, g *grpc.Server) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.GracefulStop()
	}()
	return func() {
		select {
		case <-done:
		case <-ctx.Done():
			g.Stop()
			<-done
		}
	}
}

// Addr is the main listener's address once started.
func (s *Server) Addr() string {
	if len(s.listeners) == 0 {
		return s.cfg.Addr
	}
	return s.listeners[0].Addr().String()
}

// GRPCAddr is the first gRPC-only listener's address once started ("" without one).
func (s *Server) GRPCAddr() string {
	if len(s.grpcLns) == 0 {
		return ""
	}
	return s.grpcLns[0].Addr().String()
}

// URL is the base URL of the main listener once started: https:// under mutual TLS.
func (s *Server) URL() string {
	if s.tls {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// CheckTimeout bounds one round of readiness checks.
const CheckTimeout = 2 * time.Second

// Failing runs every check within CheckTimeout and returns the failing ones' errors by
// name (nil when all pass): what /readyz reports, and what the router's Dapr health API
// answers from.
func Failing(ctx context.Context, checks []Check) map[string]error {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	var failing map[string]error
	for _, c := range checks {
		if err := c.Check(ctx); err != nil {
			if failing == nil {
				failing = map[string]error{}
			}
			failing[c.Name] = err
		}
	}
	return failing
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	failures := map[string]string{}
	if s.stopping.Load() {
		failures["server"] = "shutting down"
	}
	for name, err := range Failing(r.Context(), s.checks) {
		failures[name] = err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	if len(failures) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "not ready", "failures": failures})
		return
	}
	_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
}

// recoverHandler turns a panic in any handler into a logged 500 instead of a dropped
// connection. Connect handlers recover on their own first (see Middleware).
func recoverHandler(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as http does
					panic(v) //nolint:forbidigo // re-raise http.ErrAbortHandler: net/http expects it to abort the response silently
				}
				logger.ErrorContext(r.Context(), "handler panic", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Module provides *Server and its Middleware and runs the server for the app's lifetime.
var Module = fx.Module("rpcserver",
	fx.Provide(New, NewMiddleware),
	fx.Invoke(func(lc fx.Lifecycle, s *Server) { lc.Append(fx.StartStopHook(s.Start, s.Stop)) }),
)
