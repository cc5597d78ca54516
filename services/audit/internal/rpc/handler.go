// Package rpc serves parley.audit.v1.AuditService. It is the only place that turns the
// store's domain errors into Connect codes.
package rpc

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// Store is what the handler needs from the audit store. Every query is confined to one
// tenant.
type Store interface {
	Get(ctx context.Context, tenant, requestID string) (*auditv1.Conversation, error)
	List(ctx context.Context, tenant string, req *auditv1.ListConversationsRequest) (*auditv1.ListConversationsResponse, error)
	UsageStats(ctx context.Context, tenant string, req *auditv1.GetUsageStatsRequest) (*auditv1.GetUsageStatsResponse, error)
}

// Policy names who may call each RPC: only routers, which enforce the caller's tenant.
var Policy = identity.Policy{
	auditv1connect.AuditServiceListConversationsProcedure: {identity.Router},
	auditv1connect.AuditServiceGetConversationProcedure:   {identity.Router},
	auditv1connect.AuditServiceGetUsageStatsProcedure:     {identity.Router},
}

// Handler implements AuditService over a Store. The tenant of every call comes from the
// Parley-Tenant header, which router sets from the authenticated caller, and is believed
// only from a router's identity; nothing in the request body can widen a query beyond it.
type Handler struct {
	store Store
}

var _ auditv1connect.AuditServiceHandler = (*Handler)(nil)

// NewHandler returns a handler serving s.
func NewHandler(s Store) *Handler {
	return &Handler{store: s}
}

// ListConversations returns one page of the caller's conversations, newest first.
func (h *Handler) ListConversations(ctx context.Context, req *auditv1.ListConversationsRequest) (*auditv1.ListConversationsResponse, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := h.store.List(ctx, tenant, req)
	if err != nil {
		return nil, toConnect(err)
	}
	return resp, nil
}

// GetConversation returns the caller's conversation with the requested id.
func (h *Handler) GetConversation(ctx context.Context, req *auditv1.GetConversationRequest) (*auditv1.GetConversationResponse, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetRequestId() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("request_id is required"))
	}
	c, err := h.store.Get(ctx, tenant, req.GetRequestId())
	if err != nil {
		return nil, toConnect(err)
	}
	return &auditv1.GetConversationResponse{Conversation: c}, nil
}

// GetUsageStats returns usage statistics over the caller's conversations.
func (h *Handler) GetUsageStats(ctx context.Context, req *auditv1.GetUsageStatsRequest) (*auditv1.GetUsageStatsResponse, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := h.store.UsageStats(ctx, tenant, req)
	if err != nil {
		return nil, toConnect(err)
	}
	return resp, nil
}

var errMissingTenant = errors.New("missing tenant")

var errNotRouter = errors.New("only a router may name a tenant")

// tenantOf returns the tenant named by the call's Parley-Tenant header. Under mutual
// TLS the header counts only from a router (Policy already refuses everyone else; this
// keeps the rule where the header is read). Without TLS (INTERNAL_TLS=off) there is no
// identity and the header is believed.
func tenantOf(ctx context.Context) (string, error) {
	if peer, ok := identity.PeerFrom(ctx); ok && peer.Name != identity.Router {
		return "", connect.NewError(connect.CodePermissionDenied, errNotRouter)
	}
	ci, ok := connect.CallInfoForHandlerContext(ctx)
	if !ok {
		return "", connect.NewError(connect.CodePermissionDenied, errMissingTenant)
	}
	tenant := ci.RequestHeader().Get(auditevent.TenantHeader)
	if tenant == "" {
		return "", connect.NewError(connect.CodePermissionDenied, errMissingTenant)
	}
	return tenant, nil
}

// toConnect maps the store's errors to codes. Anything unmapped is returned as is, and
// the shared middleware masks it as Internal.
func toConnect(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, store.ErrNotFound)
	case errors.Is(err, store.ErrInvalidPageToken), errors.Is(err, store.ErrInvalidRequest):
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	return err
}
