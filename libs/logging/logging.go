// Package logging builds the service's JSON slog.Logger and fx's event logger.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
)

// Config selects the log level and bounds log lines.
type Config struct {
	// Level is debug, info, warn or error.
	Level slog.Level `env:"LOG_LEVEL, default=info"`
	// MaxValueBytes caps every string value of a record (the message, error texts, any
	// attribute); longer ones are cut at a UTF-8 boundary and marked. Zero or less means
	// DefaultMaxValueBytes.
	MaxValueBytes int `env:"LOG_MAX_VALUE_BYTES, default=8192"`
}

// DefaultMaxValueBytes is the cap of a logged string value unless configured otherwise.
// It keeps a whole panic stack and bounds what a caller's input (a 3 MB component name
// in an error text) can make a log line cost.
const DefaultMaxValueBytes = 8192

// New returns a JSON logger writing to w, tagged with the service name, that adds the
// trace and span ids of the context's span to every record logged with a context and
// truncates every string value longer than cfg.MaxValueBytes.
func New(w io.Writer, service string, cfg Config) *slog.Logger {
	maxBytes := cfg.MaxValueBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxValueBytes
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: cfg.Level, ReplaceAttr: truncate(maxBytes)})
	return slog.New(traceHandler{h}).With("service", service)
}

// truncate returns a ReplaceAttr function that cuts string values (and errors, logged as
// their text) to maxBytes, on a UTF-8 boundary, noting how much was dropped.
func truncate(maxBytes int) func([]string, slog.Attr) slog.Attr {
	return func(_ []string, a slog.Attr) slog.Attr {
		var s string
		switch a.Value.Kind() {
		case slog.KindString:
			s = a.Value.String()
		case slog.KindAny:
			err, ok := a.Value.Any().(error)
			if !ok {
				return a
			}
			s = err.Error()
		default:
			return a
		}
		if len(s) <= maxBytes {
			if a.Value.Kind() == slog.KindAny {
				a.Value = slog.StringValue(s)
			}
			return a
		}
		cut := maxBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		a.Value = slog.StringValue(s[:cut] + "…[truncated " + strconv.Itoa(len(s)-cut) + " bytes]")
		return a
	}
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
