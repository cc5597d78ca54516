// Package componentapi serves parley.component.v1.ComponentService: the components the
// router loaded, with model, cache TTL, fallbacks and live workers (what the console's
// Components page shows), limited to those the caller's API key may use. Provider secrets
// are never resolved by the router, so never listed.
package componentapi

import (
	"context"
	"math"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	componentv1 "github.com/parleyhq/parley/gen/pb/parley/component/v1"
	"github.com/parleyhq/parley/gen/pb/parley/component/v1/componentv1connect"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/presence"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

// Lister lists the loaded components.
type Lister interface {
	List() []conversation.Component
}

// Presence counts each component's live workers; nil leaves the counts zero.
type Presence interface {
	Counts() map[string]presence.Count
}

// Handler answers ComponentService calls.
type Handler struct {
	list     []*componentv1.Component
	presence Presence
}

var _ componentv1connect.ComponentServiceHandler = (*Handler)(nil)

// New builds the static part of the answer once (the component files are read at start
// only); each call adds the live worker counts of p.
func New(l Lister, p Presence) *Handler {
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
	return &Handler{list: list, presence: p}
}

// ListComponents lists the components the caller may use, by name, with their live
// workers: a caller whose API key names its components sees only those (package tenant);
// with DAPR_API_TOKEN or no authentication, every component.
func (h *Handler) ListComponents(ctx context.Context, _ *componentv1.ListComponentsRequest) (*componentv1.ListComponentsResponse, error) {
	caller := tenant.From(ctx)
	var counts map[string]presence.Count
	if h.presence != nil {
		counts = h.presence.Counts()
	}
	out := make([]*componentv1.Component, 0, len(h.list))
	for _, c := range h.list {
		if !caller.MayUse(c.GetName()) {
			continue
		}
		if counts != nil {
			n := counts[c.GetName()]
			c = proto.CloneOf(c)
			c.Workers, c.Slots, c.SlotsInUse = clamp(n.Workers), clamp(n.Slots), clamp(n.SlotsInUse)
		}
		out = append(out, c)
	}
	return &componentv1.ListComponentsResponse{Components: out}, nil
}

func clamp(n int) uint32 { return uint32(min(max(n, 0), math.MaxUint32)) } //nolint:gosec // clamped
