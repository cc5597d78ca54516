package logging_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

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
