// Package rpcclient builds the HTTP/2 clients and Connect options that services use to
// call each other: HTTP/2 over mutual TLS with the service's identity (or cleartext
// HTTP/2 with prior knowledge under INTERNAL_TLS=off), trace propagation, and the
// Connect protocol with binary protobuf.
package rpcclient

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/telemetry"
)

// Factory hands out the client and options for generated Connect clients; each client
// accepts only the service it is for:
//
//	cachev1connect.NewCacheServiceClient(f.HTTPClient("cache"), url, f.Options()...)
type Factory struct {
	id   *identity.Source
	opts []connect.ClientOption
	mu   sync.Mutex
	// transports holds one transport per called service: each verifies its own server
	// identity and keeps its connections (one TLS handshake per connection, resumed
	// from a cached session when it reconnects).
	transports map[string]*http.Transport
}

// New builds a Factory.
func New(tel *telemetry.Telemetry, id *identity.Source) (*Factory, error) {
	otel, err := tel.ClientInterceptor()
	if err != nil {
		return nil, err
	}
	return &Factory{id: id, opts: []connect.ClientOption{connect.WithInterceptors(otel)}, transports: map[string]*http.Transport{}}, nil
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

// HTTPClient is the shared client for calls to service (e.g. "cache").
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
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 15 * time.Second,
			PingTimeout:     5 * time.Second,
		},
	}
	if f.Secure() {
		protocols.SetHTTP2(true)
		t.TLSClientConfig = f.id.ClientTLS(service)
		t.TLSHandshakeTimeout = 5 * time.Second
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	return t
}

// Options are the client options every internal call uses.
func (f *Factory) Options() []connect.ClientOption { return f.opts }

// CloseIdleConnections closes every idle connection.
func (f *Factory) CloseIdleConnections() {
	f.mu.Lock()
	defer f.mu.Unlock()
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
