package telemetry

import (
	"errors"
	"net"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

const instrumentation = "github.com/parleyhq/parley/libs/telemetry"

// HTTPHandler wraps a plain HTTP route (the Dapr HTTP API) like ServerInterceptor a
// Connect one: with tracing on, a server span named "METHOD route" continuing the
// caller's trace; otherwise only the caller's trace context is moved into the request's
// context. route is the route pattern, never the path, so no request data lands in the
// span.
func (t *Telemetry) HTTPHandler(method, route string, h http.Handler) http.Handler {
	if !t.Tracing {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ctx := extract(r.Context(), t.Propagator, r.Header); ctx != r.Context() {
				r = r.WithContext(ctx)
			}
			h.ServeHTTP(w, r)
		})
	}
	tracer := t.TracerProvider.Tracer(instrumentation)
	name := method + " " + route
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", method),
		attribute.String("http.route", route),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := t.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
		if sw.status >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(sw.status))
		}
	})
}

// statusWriter remembers the response status for the span.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// HTTPTransport wraps an HTTP client transport (the workers' provider calls) with a client
// span per request when tracing is on, and returns rt itself when it is off. The span
// names the method and the server only: no path, query or header of the call (they may
// carry a key) and no body. The trace context is not sent to the provider.
func (t *Telemetry) HTTPTransport(rt http.RoundTripper) http.RoundTripper {
	if !t.Tracing {
		return rt
	}
	return &tracedTransport{next: rt, tracer: t.TracerProvider.Tracer(instrumentation)}
}

type tracedTransport struct {
	next   http.RoundTripper
	tracer trace.Tracer
}

func (t *tracedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	host, port := r.URL.Hostname(), r.URL.Port()
	if port == "" {
		port = "80"
		if r.URL.Scheme == "https" {
			port = "443"
		}
	}
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", r.Method),
		attribute.String("server.address", host),
	}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, attribute.Int("server.port", p))
	}
	ctx, span := t.tracer.Start(r.Context(), r.Method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	resp, err := t.next.RoundTrip(r.WithContext(ctx))
	switch {
	case err != nil:
		span.SetStatus(codes.Error, "transport error")
		span.SetAttributes(attribute.String("error.type", errorType(err)))
	default:
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if resp.StatusCode >= http.StatusBadRequest {
			span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
			span.SetAttributes(attribute.String("error.type", strconv.Itoa(resp.StatusCode)))
		}
	}
	// The span ends with the headers: a streamed body is read later by the provider, whose
	// own span covers it.
	span.End()
	return resp, err
}

// errorType is a bounded description of a transport error: no address or URL.
func errorType(err error) string {
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return "timeout"
	}
	return "transport"
}
