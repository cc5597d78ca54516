// Package componentapi serves parley.component.v1.ComponentService: the components the
// router loaded, with model, cache TTL and fallbacks (what the console's Components page
// shows), limited to those the caller's API key may use. Provider secrets are never
// resolved by the router, so never listed.
package componentapi

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"

	componentv1 "github.com/parleyhq/parley/gen/pb/parley/component/v1"
	"github.com/parleyhq/parley/gen/pb/parley/component/v1/componentv1connect"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

// Lister lists the loaded components.
type Lister interface {
	List() []conversation.Component
}

// Handler answers ComponentService calls.
type Handler struct {
	list []*componentv1.Component
}

var _ componentv1connect.ComponentServiceHandler = (*Handler)(nil)

// New builds the answer once: the component files are read at start only.
func New(l Lister) *Handler {
	list := make([]*componentv1.Component, 0, len(l.List()))
	for _, c := range l.List() {
		pc := &componentv1.Component{
			Name: c.Name, Type: c.Type, Version: c.Version, Model: c.Model,
			Fallbacks: slices.Clone(c.Fallbacks),
		}
		if c.CacheTTL > 0 {
			pc.CacheTtl = durationpb.New(c.CacheTTL)
		}
		list = append(list, pc)
	}
	slices.SortFunc(list, func(a, b *componentv1.Component) int { return strings.Compare(a.GetName(), b.GetName()) })
	return &Handler{list: list}
}

// ListComponents lists the components the caller may use, by name: a caller whose API
// key names its components sees only those (package tenant); with DAPR_API_TOKEN or no
// authentication, every component.
func (h *Handler) ListComponents(ctx context.Context, _ *componentv1.ListComponentsRequest) (*componentv1.ListComponentsResponse, error) {
	caller := tenant.From(ctx)
	if caller.Components == nil {
		return &componentv1.ListComponentsResponse{Components: h.list}, nil
	}
	list := make([]*componentv1.Component, 0, len(caller.Components))
	for _, c := range h.list {
		if caller.MayUse(c.GetName()) {
			list = append(list, c)
		}
	}
	return &componentv1.ListComponentsResponse{Components: list}, nil
}
