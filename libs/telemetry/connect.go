package telemetry

import (
	"context"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/propagation"
)

// ServerInterceptor is the Connect interceptor of a service's handlers: spans and RPC
// metrics (otelconnect, continuing the caller's trace) when tracing is on; otherwise it
// only moves the caller's W3C trace context from the request headers into the context.
func (t *Telemetry) ServerInterceptor() (connect.Interceptor, error) {
	if !t.Tracing {
		return propagator{prop: t.Propagator}, nil
	}
	i, err := otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(t.TracerProvider),
		otelconnect.WithMeterProvider(t.MeterProvider),
		otelconnect.WithPropagator(t.Propagator),
		otelconnect.WithTrustRemote(),
		otelconnect.WithoutServerPeerAttributes(),
	)
	if err != nil {
		return nil, fmt.Errorf("otel interceptor: %w", err)
	}
	return i, nil
}

// ClientInterceptor is the Connect interceptor of calls to other services: client spans
// when tracing is on; otherwise it only writes the context's trace context (a caller's,
// passed through) into the request headers.
func (t *Telemetry) ClientInterceptor() (connect.Interceptor, error) {
	if !t.Tracing {
		return propagator{prop: t.Propagator}, nil
	}
	i, err := otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(t.TracerProvider),
		otelconnect.WithMeterProvider(t.MeterProvider),
		otelconnect.WithPropagator(t.Propagator),
	)
	if err != nil {
		return nil, fmt.Errorf("otel interceptor: %w", err)
	}
	return i, nil
}

// propagator carries trace context without recording spans: extracted from a handler's
// request headers, injected into a client's.
type propagator struct{ prop propagation.TextMapPropagator }

func (p propagator) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			p.prop.Inject(ctx, propagation.HeaderCarrier(req.Header()))
		} else {
			ctx = extract(ctx, p.prop, req.Header())
		}
		return next(ctx, req)
	}
}

func (p propagator) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		p.prop.Inject(ctx, propagation.HeaderCarrier(conn.RequestHeader()))
		return conn
	}
}

func (p propagator) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(extract(ctx, p.prop, conn.RequestHeader()), conn)
	}
}

// extract reads h's trace context into ctx; a request without one costs a header lookup.
func extract(ctx context.Context, prop propagation.TextMapPropagator, h http.Header) context.Context {
	if len(h.Values(traceparentHeader)) == 0 {
		return ctx
	}
	return prop.Extract(ctx, propagation.HeaderCarrier(h))
}

const traceparentHeader = "Traceparent"
