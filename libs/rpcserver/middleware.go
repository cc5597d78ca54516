package rpcserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleyhq/parley/libs/telemetry"
)

// Middleware holds the handler options every Connect service of the process shares:
// tracing, metrics, one log line per failed call, panic recovery, error masking and the
// message size limit.
type Middleware struct {
	option connect.HandlerOption
}

// NewMiddleware builds the shared handler options.
func NewMiddleware(cfg Config, logger *slog.Logger, reg prometheus.Registerer, tel *telemetry.Telemetry) (*Middleware, error) {
	otel, err := tel.ServerInterceptor()
	if err != nil {
		return nil, err
	}
	obs := &observer{
		logger: logger,
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_rpc_server_handled_total",
			Help: "RPCs completed by the server, by procedure and code.",
		}, []string{"procedure", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_rpc_server_duration_seconds",
			Help:    "Time to handle an RPC, by procedure.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"procedure"}),
	}
	if err := registerAll(reg, obs.handled, obs.duration); err != nil {
		return nil, err
	}
	return &Middleware{option: connect.WithHandlerOptions(
		connect.WithInterceptors(otel, obs, maskInterceptor{logger: logger}),
		connect.WithRecover(func(ctx context.Context, spec connect.Spec, _ http.Header, v any) error {
			return Panicked(ctx, logger, spec.Procedure, v)
		}),
		connect.WithReadMaxBytes(cfg.MaxMessageBytes),
		// Small messages cost more CPU to gzip than they save on the wire.
		connect.WithCompressMinBytes(4096),
	)}, nil
}

// HandlerOption returns the options to pass to a generated New...Handler.
func (m *Middleware) HandlerOption() connect.HandlerOption { return m.option }

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metric: %w", err)
		}
	}
	return nil
}

// observer records metrics for every RPC and logs failed ones once.
type observer struct {
	logger   *slog.Logger
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func (o *observer) observe(ctx context.Context, procedure string, start time.Time, err error) {
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	elapsed := time.Since(start)
	o.handled.WithLabelValues(procedure, code).Inc()
	o.duration.WithLabelValues(procedure).Observe(elapsed.Seconds())
	if err != nil {
		o.logger.InfoContext(ctx, "rpc failed",
			"rpc_method", procedure, "code", code,
			"duration_ms", float64(elapsed.Microseconds())/1000, "err", err.Error())
	}
}

func (o *observer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		start := time.Now()
		res, err := next(ctx, req)
		o.observe(ctx, req.Spec().Procedure, start, err)
		return res, err
	}
}

func (o *observer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (o *observer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		o.observe(ctx, conn.Spec().Procedure, start, err)
		return err
	}
}

// maskInterceptor replaces errors that no handler mapped to a code: their text may carry
// internals, so the client gets a fixed message with an id, and the log gets the error.
// Errors a handler built with connect.NewError pass unchanged.
type maskInterceptor struct{ logger *slog.Logger }

func (m maskInterceptor) mask(ctx context.Context, procedure string, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return Unmapped(ctx, m.logger, procedure, err)
}

// Unmapped logs an error no handler mapped to a code and returns what the caller gets
// instead: Internal, with a fixed message naming the log line's id.
func Unmapped(ctx context.Context, logger *slog.Logger, procedure string, err error) *connect.Error {
	id := LogError(ctx, logger, "unmapped rpc error", err, "rpc_method", procedure)
	return connect.NewError(connect.CodeInternal, fmt.Errorf("internal error (id %s)", id))
}

func (m maskInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if req.Spec().IsClient {
			return res, err
		}
		return res, m.mask(ctx, req.Spec().Procedure, err)
	}
}

func (m maskInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (m maskInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return m.mask(ctx, conn.Spec().Procedure, next(ctx, conn))
	}
}

// LogError logs err's cause at error level under a new error id, with msg and the
// attributes args, and returns the id: the id ties an error a client sees ("internal error
// (id …)") to the log line holding its cause. Every API masks internal errors with one.
func LogError(ctx context.Context, logger *slog.Logger, msg string, err error, args ...any) string {
	id := errorID()
	logger.ErrorContext(ctx, msg, append(args, "error_id", id, "err", err.Error())...) //nolint:sloglint // every caller passes a constant
	return id
}

// Panicked logs a handler's recovered panic value with the stack of the goroutine that
// recovered it and returns what the caller gets instead: Internal, with a fixed message
// naming the log line's id.
func Panicked(ctx context.Context, logger *slog.Logger, procedure string, v any) *connect.Error {
	id := errorID()
	logger.ErrorContext(ctx, "rpc panic", "rpc_method", procedure, "error_id", id, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	return connect.NewError(connect.CodeInternal, fmt.Errorf("internal error (id %s)", id))
}

func errorID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
