// Package logging builds the service's JSON slog.Logger and fx's event logger.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
)

// Config selects the log level.
type Config struct {
	// Level is debug, info, warn or error.
	Level slog.Level `env:"LOG_LEVEL, default=info"`
}

// New returns a JSON logger writing to w, tagged with the service name, that adds the
// trace and span ids of the context's span to every record logged with a context.
func New(w io.Writer, service string, cfg Config) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: cfg.Level})
	return slog.New(traceHandler{h}).With("service", service)
}

// Module provides *slog.Logger (to stderr) and routes fx's own events to it at debug level.
var Module = fx.Module("logging",
	fx.Provide(func(name ServiceName, cfg Config) *slog.Logger { return New(os.Stderr, string(name), cfg) }),
)

// ServiceName is the name of the running service, e.g. "router".
type ServiceName string

// FxLogger returns fx's event logger, logging at debug level except for failures.
func FxLogger(l *slog.Logger) fxevent.Logger {
	sl := &fxevent.SlogLogger{Logger: l}
	sl.UseLogLevel(slog.LevelDebug)
	return sl
}

// traceHandler adds trace_id and span_id from the record's context.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
