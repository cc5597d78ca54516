package logging_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleyhq/parley/libs/logging"
)

func TestNew(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := logging.New(&buf, "router", logging.Config{Level: slog.LevelInfo})
	l.Debug("hidden")
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("0102030405060708")
	ctx := trace.ContextWithSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	l.InfoContext(ctx, "rpc server listening", "addr", ":3500")

	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec), "exactly one JSON record: %s", buf.String())
	require.Equal(t, "router", rec["service"])
	require.Equal(t, "rpc server listening", rec["msg"])
	require.Equal(t, ":3500", rec["addr"])
	require.Equal(t, "0102030405060708090a0b0c0d0e0f10", rec["trace_id"])
	require.Equal(t, "0102030405060708", rec["span_id"])
}

// TestLineSizeBounded: a caller's 3 MB input in an error text (a component name) made a
// 3 MB log line; every string value is now capped, errors included.
func TestLineSizeBounded(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("é", 1_500_000) // 3 MB, two bytes a rune
	tests := []struct {
		name string
		log  func(*slog.Logger)
	}{
		{name: "string attribute", log: func(l *slog.Logger) { l.Info("rpc failed", "err", "component "+huge+" not found") }},
		{name: "error value", log: func(l *slog.Logger) { l.Info("rpc failed", "err", errors.New(huge)) }},
		{name: "message", log: func(l *slog.Logger) { l.Info(huge) }}, //nolint:sloglint // a caller-sized message, on purpose
		{name: "grouped attribute", log: func(l *slog.Logger) { l.Info("x", slog.Group("req", "name", huge)) }},
		{name: "logger attribute", log: func(l *slog.Logger) { l.With("component", huge).Info("x") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			tt.log(logging.New(&buf, "router", logging.Config{Level: slog.LevelInfo, MaxValueBytes: 1000}))
			require.Less(t, buf.Len(), 2000, "one bounded line")
			var rec map[string]any
			require.NoError(t, json.Unmarshal(buf.Bytes(), &rec), "still one valid JSON record")
			require.Contains(t, buf.String(), "truncated")
			require.True(t, utf8.Valid(buf.Bytes()))
		})
	}

	// Short values are untouched, errors logged as their text.
	var buf bytes.Buffer
	logging.New(&buf, "router", logging.Config{}).Info("rpc failed", "err", errors.New("boom"), "n", 3)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	require.Equal(t, "boom", rec["err"])
	require.InDelta(t, 3, rec["n"], 0)
}
