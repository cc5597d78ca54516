// Package telemetry builds OpenTelemetry tracer and meter providers, the interceptors
// and HTTP wrappers that carry trace context across services, and the GenAI
// semantic-convention attributes the services put on their spans.
//
// Without OTEL_EXPORTER_OTLP_ENDPOINT tracing is off: the tracer provider is a no-op, so
// no span is recorded, and only a caller's W3C trace context is carried along (it still
// reaches the logs, the workers and the audit log's trace id). With it, every hop records
// spans and exports them over OTLP/HTTP.
package telemetry

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/metric"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/logging"
)

// Config holds the standard OpenTelemetry variables Parley reads itself; the exporters
// read the other OTEL_EXPORTER_OTLP_* variables.
type Config struct {
	// Endpoint turns OTLP/HTTP export of traces and metrics on.
	Endpoint string `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	// SampleRatio is the share of root traces sampled, 0 to 1.
	SampleRatio float64 `env:"OTEL_TRACES_SAMPLER_ARG, default=1"`
}

// Validate checks the sample ratio.
func (c *Config) Validate() error {
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		return fmt.Errorf("OTEL_TRACES_SAMPLER_ARG must be between 0 and 1, got %v", c.SampleRatio)
	}
	return nil
}

// Telemetry bundles the providers and the propagator every instrumented hop uses.
type Telemetry struct {
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
	// Tracing is true when spans are recorded and exported (an endpoint is configured);
	// otherwise TracerProvider is a no-op.
	Tracing  bool
	shutdown []func(context.Context) error
}

// New builds the providers for service.
func New(ctx context.Context, service string, cfg Config) (*Telemetry, error) {
	res := resource.NewSchemaless(semconv.ServiceName(service))
	t := &Telemetry{
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	if cfg.Endpoint == "" {
		// Tracing off: nothing is recorded; a caller's span context still passes through
		// the no-op tracer unchanged.
		t.TracerProvider = nooptrace.NewTracerProvider()
		t.MeterProvider = noopmetric.NewMeterProvider()
		return t, nil
	}
	texp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	mexp, err := otlpmetrichttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp metric exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp)))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithBatcher(texp),
	)
	t.TracerProvider, t.MeterProvider, t.Tracing = tp, mp, true
	t.shutdown = append(t.shutdown, tp.Shutdown, mp.Shutdown)
	return t, nil
}

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// Module provides *Telemetry and shuts it down last.
var Module = fx.Module("telemetry",
	fx.Provide(func(lc fx.Lifecycle, name logging.ServiceName, cfg Config) (*Telemetry, error) {
		t, err := New(context.Background(), string(name), cfg)
		if err != nil {
			return nil, err
		}
		lc.Append(fx.StopHook(t.Shutdown))
		return t, nil
	}),
)

// Tracer returns the named tracer when tracing is on, and nil when it is off: the
// services skip every span (names, attributes) on nil, so tracing off costs nothing.
func (t *Telemetry) Tracer(name string) trace.Tracer {
	if !t.Tracing {
		return nil
	}
	return t.TracerProvider.Tracer(name)
}
