package daprapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/rpcserver"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("nats RECONNECTING") }
	// waits for its context: the round of checks must end at the health timeout, not hang.
	stuck := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	tests := []struct {
		name       string
		checks     []rpcserver.Check
		path       string
		wantStatus int
		wantBody   string
	}{
		{"ready", []rpcserver.Check{{Name: "nats", Check: ok}}, "/v1.0/healthz", 204, ""},
		{"outbound ready", []rpcserver.Check{{Name: "nats", Check: ok}}, "/v1.0/healthz/outbound", 204, ""},
		{"not ready names the targets, sorted", []rpcserver.Check{{Name: "nats", Check: down}, {Name: "cache", Check: ok}, {Name: "audit-stream", Check: down}}, "/v1.0/healthz", 500,
			`{"errorCode":"ERR_HEALTH_NOT_READY","message":"dapr is not ready: [audit-stream nats]"}`},
		{"outbound not ready", []rpcserver.Check{{Name: "nats", Check: down}}, "/v1.0/healthz/outbound", 500,
			`{"errorCode":"ERR_OUTBOUND_HEALTH_NOT_READY","message":"dapr outbound is not ready"}`},
		{"a check past its deadline is not ready", []rpcserver.Check{{Name: "nats", Check: stuck}}, "/v1.0/healthz", 500,
			`{"errorCode":"ERR_HEALTH_NOT_READY","message":"dapr is not ready: [nats]"}`},
		{"appid of the router", []rpcserver.Check{{Name: "nats", Check: ok}}, "/v1.0/healthz?appid=parley", 204, ""},
		{"appid of another app", []rpcserver.Check{{Name: "nats", Check: ok}}, "/v1.0/healthz?appid=orders", 500,
			`{"errorCode":"ERR_HEALTH_APPID_NOT_MATCH","message":"dapr app-id does not match"}`},
		{"not ready wins over appid", []rpcserver.Check{{Name: "nats", Check: down}}, "/v1.0/healthz?appid=orders", 500,
			`{"errorCode":"ERR_HEALTH_NOT_READY","message":"dapr is not ready: [nats]"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := NewHealth(tt.checks)
			mux := http.NewServeMux()
			mux.HandleFunc("GET /v1.0/healthz", h.Healthz)
			mux.HandleFunc("GET /v1.0/healthz/outbound", h.Outbound)
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, tt.path, nil))
			require.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			if tt.wantBody == "" {
				require.Empty(t, rec.Body.String())
				return
			}
			// daprd writes json.Marshal's bytes: compact, no trailing newline.
			require.Equal(t, tt.wantBody, rec.Body.String())
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		})
	}
}
