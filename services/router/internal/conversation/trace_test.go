package conversation

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"

// TestConversationSpan: with a tracer, a conversation is one span under the caller's,
// with the GenAI attributes and never the prompt; the audit event names the trace.
// Without one, no span is made and the caller's trace id still reaches the audit event.
func TestConversationSpan(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name      string
		tracing   bool
		caller    bool
		auditErr  error
		wantError string
	}{
		{name: "on, caller's trace", tracing: true, caller: true},
		{name: "on, new trace", tracing: true},
		{name: "on, failure", tracing: true, caller: true, auditErr: boom, wantError: "audit"},
		{name: "off, caller's trace", caller: true},
		{name: "off, no trace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := tracetest.NewSpanRecorder()
			var opts Options
			opts.AuditRequired = true
			if tt.tracing {
				opts.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
			}
			f := newFixture(t, nil, nil, nil, opts)
			f.audit.err = tt.auditErr
			ctx := t.Context()
			if tt.caller {
				ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": "00-" + callerTrace + "-00f067aa0ba902b7-01"})
			}
			_, err := f.svc.Converse(ctx, request("echo", "a secret prompt", false, false))
			f.svc.bg.Wait()
			if tt.wantError != "" {
				require.Error(t, err)
			} else {
				require.NoError(t, err)
			}

			spans := rec.Ended()
			if !tt.tracing {
				require.Empty(t, spans)
				require.Len(t, f.audit.events, 1)
				require.Equal(t, map[bool]string{true: callerTrace, false: ""}[tt.caller], f.audit.events[0].GetTraceId())
				return
			}
			require.Len(t, spans, 1)
			s := spans[0]
			require.Equal(t, "chat", s.Name())
			require.Equal(t, trace.SpanKindInternal, s.SpanKind())
			if tt.caller {
				require.Equal(t, callerTrace, s.SpanContext().TraceID().String())
				require.Equal(t, "00f067aa0ba902b7", s.Parent().SpanID().String())
			}
			attrs := map[string]string{}
			for _, kv := range s.Attributes() {
				attrs[string(kv.Key)] = kv.Value.String()
				require.NotContains(t, kv.Value.String(), "secret", "attribute %s", kv.Key)
			}
			require.NotContains(t, s.Status().Description, "secret")
			require.Equal(t, "chat", attrs["gen_ai.operation.name"])
			require.Equal(t, "echo", attrs["gen_ai.system"])
			require.Equal(t, "echo", attrs["parley.component"])
			if tt.wantError != "" {
				require.Equal(t, "Error", s.Status().Code.String())
				require.NotEmpty(t, attrs["error.type"])
				return
			}
			require.Equal(t, `["stop"]`, attrs["gen_ai.response.finish_reasons"])
			require.NotEmpty(t, attrs["gen_ai.usage.input_tokens"])
			require.Len(t, f.audit.events, 1)
			require.Equal(t, s.SpanContext().TraceID().String(), f.audit.events[0].GetTraceId())
			require.Equal(t, f.audit.events[0].GetRequestId(), attrs["parley.request_id"])
		})
	}
}
