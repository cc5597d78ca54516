// Package componentapi serves parley.component.v1.ComponentService: the components the
// router loaded, with model, cache TTL and fallbacks (what the console's Components page
// shows). Provider secrets are never resolved by the router, so never listed.
package componentapi

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"

	componentv1 "github.com/parleyhq/parley/gen/pb/parley/component/v1"
	"github.com/parleyhq/parley/gen/pb/parley/component/v1/componentv1connect"
	"github.com/parleyhq/parley/services/router/internal/conversation"
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

// ListComponents lists every component by name.
func (h *Handler) ListComponents(context.Context, *componentv1.ListComponentsRequest) (*componentv1.ListComponentsResponse, error) {
	return &componentv1.ListComponentsResponse{Components: h.list}, nil
}
