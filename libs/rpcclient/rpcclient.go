// Package rpcclient builds the clients and Connect options that services use to call
// each other. Under mutual TLS (the default) a call is gRPC on grpc-go's client transport
// (libs/grpcbridge), over a connection that presents the service's identity, verifies the
// server's and asks for its grpc-go server by ALPN (identity.GRPCProtocol); under
// INTERNAL_TLS=off it is the Connect protocol over cleartext HTTP/2 with prior knowledge.
// Both carry binary protobuf and propagate the trace.
package rpcclient

import (
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/fx"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/parleyhq/parley/libs/grpcbridge"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/telemetry"
)

// Factory hands out the clients and options for generated Connect clients (RPC) and plain
// HTTP requests (HTTPClient); each client accepts only the service it is for.
type Factory struct {
	id   *identity.Source
	opts []connect.ClientOption
	mu   sync.Mutex
	// clients and transports hold, per called service, the RPC client and the HTTP
	// transport: each verifies its own server identity and keeps its connections (one TLS
	// handshake per connection, resumed from a cached session when it reconnects).
	clients    map[string]*grpcbridge.Client
	transports map[string]*http.Transport
}

// New builds a Factory.
func New(tel *telemetry.Telemetry, id *identity.Source) (*Factory, error) {
	otel, err := tel.ClientInterceptor()
	if err != nil {
		return nil, err
	}
	opts := []connect.ClientOption{connect.WithInterceptors(otel)}
	if id.Enabled() {
		opts = append(opts, connect.WithGRPC())
	}
	return &Factory{id: id, opts: opts, clients: map[string]*grpcbridge.Client{}, transports: map[string]*http.Transport{}}, nil
}

// Secure reports whether calls use mutual TLS, so URLs must be https://.
func (f *Factory) Secure() bool { return f.id.Enabled() }

// CheckURL fails when raw's scheme does not match the transport: https:// under mutual
// TLS, http:// without. setting names the variable the URL came from.
func (f *Factory) CheckURL(setting, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", setting, err)
	}
	want := "http"
	if f.Secure() {
		want = "https"
	}
	if u.Scheme != want || u.Host == "" {
		return fmt.Errorf("%s must be a %s:// URL while INTERNAL_TLS=%s, got %q", setting, want, map[bool]string{true: "on", false: "off"}[f.Secure()], raw)
	}
	return nil
}

// RPC is the shared client of calls to service (e.g. "cache") for a Connect client built
// with Options:
//
//	cachev1connect.NewCacheServiceClient(f.RPC("cache"), url, f.Options()...)
//
// Under mutual TLS it carries gRPC on grpc-go's transport; under INTERNAL_TLS=off it is
// HTTPClient's.
func (f *Factory) RPC(service string) connect.HTTPClient {
	if !f.Secure() {
		return f.HTTPClient(service)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.clients[service]
	if !ok {
		creds := credentials.NewTLS(f.grpcTLS(service))
		c = grpcbridge.NewClient(func(host string) (*grpc.ClientConn, error) { return dial(host, creds) })
		f.clients[service] = c
	}
	return c
}

// HTTPClient is the shared HTTP/2 client of plain requests to service (its /metrics, a
// Connect client using the Connect or gRPC-Web protocol), with the same identity checks.
func (f *Factory) HTTPClient(service string) *http.Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := service
	if !f.Secure() {
		key = "" // one cleartext transport serves every service
	}
	t, ok := f.transports[key]
	if !ok {
		t = f.transport(service)
		f.transports[key] = t
	}
	return &http.Client{Transport: t}
}

func (f *Factory) transport(service string) *http.Transport {
	protocols := new(http.Protocols)
	t := &http.Transport{
		Protocols:           protocols,
		DialContext:         (&net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: pingInterval,
			PingTimeout:     pingTimeout,
		},
	}
	if f.Secure() {
		protocols.SetHTTP2(true)
		t.TLSClientConfig = f.id.ClientTLS(service)
		t.TLSHandshakeTimeout = connectTimeout
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	return t
}

// grpcTLS is the TLS configuration of calls to service: the identity's, asking for the
// server's grpc-go transport first (grpc-go's credentials add h2 after it).
func (f *Factory) grpcTLS(service string) *tls.Config {
	cfg := f.id.ClientTLS(service)
	cfg.NextProtos = []string{identity.GRPCProtocol}
	return cfg
}

// Connection settings of internal calls: a dial or handshake gives up after connectTimeout;
// a lost connection is dialled again after a backoff that grows to reconnectMax, not
// grpc-go's default of two minutes, since a restarted service is back within seconds; an
// idle connection is pinged every pingInterval and dropped when a ping goes unanswered for
// pingTimeout, as the HTTP/2 transport before it did.
const (
	connectTimeout = 5 * time.Second
	reconnectBase  = 100 * time.Millisecond
	reconnectMax   = 2 * time.Second
	pingInterval   = 15 * time.Second
	pingTimeout    = 5 * time.Second
)

// dial builds the connection to host ("host:port"). It dials on the first call and
// whenever the connection is lost.
func dial(host string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient("passthrough:///"+host,
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: reconnectBase, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMax},
			MinConnectTimeout: connectTimeout,
		}),
		// Idle connections are pinged too, so a dead one is found before a call waits on it;
		// the servers permit it (rpcserver's enforcement policy).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: pingInterval, Timeout: pingTimeout, PermitWithoutStream: true}),
		// The Connect client applies the message limits; the transport passes what it gets.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)),
		grpc.WithNoProxy(), // as the HTTP transport: internal calls go straight to the service
		// Fixed windows, as the servers' (grpcbridge.ServerOptions): no bandwidth-estimating
		// PING after each answer.
		grpc.WithInitialWindowSize(grpcbridge.StreamWindow),
		grpc.WithInitialConnWindowSize(grpcbridge.ConnWindow),
	)
	if err != nil {
		return nil, fmt.Errorf("rpcclient: %s: %w", host, err)
	}
	return cc, nil
}

// Options are the client options every internal call uses.
func (f *Factory) Options() []connect.ClientOption { return f.opts }

// CloseIdleConnections closes the RPC clients' connections and the HTTP transports' idle
// ones (the clients dial again if called).
func (f *Factory) CloseIdleConnections() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.clients {
		c.Close()
	}
	for _, t := range f.transports {
		t.CloseIdleConnections()
	}
}

// Module provides *Factory and closes idle connections on stop.
var Module = fx.Module("rpcclient",
	fx.Provide(func(lc fx.Lifecycle, tel *telemetry.Telemetry, id *identity.Source) (*Factory, error) {
		f, err := New(tel, id)
		if err != nil {
			return nil, err
		}
		lc.Append(fx.StopHook(f.CloseIdleConnections))
		return f, nil
	}),
)
