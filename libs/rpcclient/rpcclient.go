// Package rpcclient builds the HTTP/2 client and Connect options that services use to
// call each other: cleartext HTTP/2 with prior knowledge, trace propagation, and the
// Connect protocol with binary protobuf.
package rpcclient

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/telemetry"
)

// Factory hands out the shared client and options for generated Connect clients:
//
//	cachev1connect.NewCacheServiceClient(f.HTTPClient(), url, f.Options()...)
type Factory struct {
	client *http.Client
	opts   []connect.ClientOption
}

// New builds a Factory.
func New(tel *telemetry.Telemetry) (*Factory, error) {
	otel, err := otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(tel.TracerProvider),
		otelconnect.WithMeterProvider(tel.MeterProvider),
		otelconnect.WithPropagator(tel.Propagator),
	)
	if err != nil {
		return nil, fmt.Errorf("otel interceptor: %w", err)
	}
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	transport := &http.Transport{
		Protocols:           protocols,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 15 * time.Second,
			PingTimeout:     5 * time.Second,
		},
	}
	return &Factory{
		client: &http.Client{Transport: transport},
		opts:   []connect.ClientOption{connect.WithInterceptors(otel)},
	}, nil
}

// HTTPClient is the shared HTTP/2 client.
func (f *Factory) HTTPClient() *http.Client { return f.client }

// Options are the client options every internal call uses.
func (f *Factory) Options() []connect.ClientOption { return f.opts }

// Module provides *Factory and closes idle connections on stop.
var Module = fx.Module("rpcclient",
	fx.Provide(func(lc fx.Lifecycle, tel *telemetry.Telemetry) (*Factory, error) {
		f, err := New(tel)
		if err != nil {
			return nil, err
		}
		lc.Append(fx.StopHook(f.client.CloseIdleConnections))
		return f, nil
	}),
)
