package daprapi

import (
	"context"
	"net/http"
	"slices"
	"strings"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

// AppID is the id the router reports where daprd reports its app id (metadata, and the
// appid query of GET /v1.0/healthz).
const AppID = "parley"

// RuntimeVersion is what the router reports as runtimeVersion, where daprd reports its
// build version.
const RuntimeVersion = "parley"

// metadata is the one answer of gRPC GetMetadata and HTTP GET /v1.0/metadata, built as
// daprd builds it (dapr/dapr pkg/api/universal/metadata.go, GetMetadata): the id, the
// runtime version, the registered components with type and version, and the extended
// metadata, where daprd always adds daprRuntimeVersion. Parley has no actors,
// subscriptions, HTTP endpoints, app channel or scheduler, so those stay empty. A caller
// whose API key names its components sees only those (package tenant); with
// DAPR_API_TOKEN or no authentication every component is listed.
func (h *Handler) metadata(ctx context.Context) *runtimev1.GetMetadataResponse {
	list := h.components.List()
	caller := tenant.From(ctx)
	comps := make([]*runtimev1.RegisteredComponents, 0, len(list))
	for _, c := range list {
		if !caller.MayUse(c.Name) {
			continue
		}
		// daprd lists capabilities as an empty list when a component declares none.
		comps = append(comps, &runtimev1.RegisteredComponents{Name: c.Name, Type: c.Type, Version: c.Version, Capabilities: []string{}})
	}
	slices.SortFunc(comps, func(a, b *runtimev1.RegisteredComponents) int { return strings.Compare(a.GetName(), b.GetName()) })
	return &runtimev1.GetMetadataResponse{
		Id:                   AppID,
		RuntimeVersion:       RuntimeVersion,
		RegisteredComponents: comps,
		ExtendedMetadata:     map[string]string{"daprRuntimeVersion": RuntimeVersion},
	}
}

// GetMetadata is the gRPC metadata method. Dapr's SDKs call it to learn that the sidecar
// is up: the JavaScript SDK's gRPC client polls it before its first call.
func (h *Handler) GetMetadata(ctx context.Context, _ *runtimev1.GetMetadataRequest) (*runtimev1.GetMetadataResponse, error) {
	return h.metadata(ctx), nil
}

// Metadata serves GET /v1.0/metadata with the same data as GetMetadata, in daprd's JSON
// (dapr/dapr pkg/api/http/metadata.go, metadataResponse: encoding/json with the protobuf
// structs' own json tags, so empty fields are left out).
func (h *Handler) Metadata(w http.ResponseWriter, r *http.Request) {
	md := h.metadata(r.Context())
	writeJSON(w, http.StatusOK, struct {
		ID                   string                            `json:"id,omitempty"`
		RuntimeVersion       string                            `json:"runtimeVersion,omitempty"`
		RegisteredComponents []*runtimev1.RegisteredComponents `json:"components,omitempty"`
		Extended             map[string]string                 `json:"extended,omitempty"`
	}{md.GetId(), md.GetRuntimeVersion(), md.GetRegisteredComponents(), md.GetExtendedMetadata()})
}
