package daprapi

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/parleyhq/parley/libs/rpcserver"
)

// Health serves Dapr's health API (GET /v1.0/healthz and GET /v1.0/healthz/outbound)
// with daprd's statuses and bodies (dapr/dapr pkg/api/http/healthz.go): 204 and no body
// when ready, else 500 with daprd's JSON error. The Python, Java and .NET SDKs poll
// /v1.0/healthz/outbound before their first call. Like daprd's (AlwaysAllowed), these
// routes need no API token.
type Health struct {
	checks []rpcserver.Check
}

// NewHealth returns the health API over the router's readiness checks (the ones its
// /readyz runs).
func NewHealth(checks []rpcserver.Check) *Health {
	return &Health{checks: checks}
}

// unready runs every check, as /readyz does, and names the failing ones, sorted.
func (h *Health) unready(ctx context.Context) []string {
	return slices.Sorted(maps.Keys(rpcserver.Failing(ctx, h.checks)))
}

// Healthz serves GET /v1.0/healthz. Not ready: daprd's ERR_HEALTH_NOT_READY with the
// unready targets in its message ("dapr is not ready: [nats]"). With an appid query that
// is not the router's id: ERR_HEALTH_APPID_NOT_MATCH, as daprd answers for another app.
func (h *Health) Healthz(w http.ResponseWriter, r *http.Request) {
	if names := h.unready(r.Context()); len(names) > 0 {
		writeJSON(w, http.StatusInternalServerError, errorBody{"ERR_HEALTH_NOT_READY", fmt.Sprintf("dapr is not ready: %v", names)})
		return
	}
	if q := r.URL.Query(); q.Has("appid") && q.Get("appid") != AppID {
		writeJSON(w, http.StatusInternalServerError, errorBody{"ERR_HEALTH_APPID_NOT_MATCH", "dapr app-id does not match"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Outbound serves GET /v1.0/healthz/outbound: ready when the router can reach what a
// conversation needs; not ready: daprd's ERR_OUTBOUND_HEALTH_NOT_READY.
func (h *Health) Outbound(w http.ResponseWriter, r *http.Request) {
	if names := h.unready(r.Context()); len(names) > 0 {
		writeJSON(w, http.StatusInternalServerError, errorBody{"ERR_OUTBOUND_HEALTH_NOT_READY", "dapr outbound is not ready"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// errorBody is daprd's JSON error (dapr/dapr pkg/messages/api_error.go, JSONErrorValue).
type errorBody struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}
