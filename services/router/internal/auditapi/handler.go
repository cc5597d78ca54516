// Package auditapi serves parley.audit.v1.AuditService on the router by forwarding to
// the audit service with the caller's tenant, so a caller only ever sees its own rows.
package auditapi

import (
	"context"

	"connectrpc.com/connect"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// Handler forwards AuditService calls.
type Handler struct {
	client auditv1connect.AuditServiceClient
}

var _ auditv1connect.AuditServiceHandler = (*Handler)(nil)

// New returns a Handler over a client of the audit service.
func New(client auditv1connect.AuditServiceClient) *Handler { return &Handler{client: client} }

// tenantContext sets the tenant header the audit service enforces. Every caller is the
// default tenant until API keys exist.
func tenantContext(ctx context.Context) context.Context {
	ctx, ci := connect.NewClientContext(ctx)
	ci.RequestHeader().Set(auditevent.TenantHeader, conversation.DefaultTenant)
	return ctx
}

// ListConversations lists the caller's conversations.
func (h *Handler) ListConversations(ctx context.Context, req *auditv1.ListConversationsRequest) (*auditv1.ListConversationsResponse, error) {
	return h.client.ListConversations(tenantContext(ctx), req)
}

// GetConversation returns one of the caller's conversations.
func (h *Handler) GetConversation(ctx context.Context, req *auditv1.GetConversationRequest) (*auditv1.GetConversationResponse, error) {
	return h.client.GetConversation(tenantContext(ctx), req)
}

// GetUsageStats returns usage statistics over the caller's conversations.
func (h *Handler) GetUsageStats(ctx context.Context, req *auditv1.GetUsageStatsRequest) (*auditv1.GetUsageStatsResponse, error) {
	return h.client.GetUsageStats(tenantContext(ctx), req)
}
