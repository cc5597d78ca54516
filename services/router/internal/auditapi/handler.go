// Package auditapi serves parley.audit.v1.AuditService on the router by forwarding to
// the audit service with the caller's tenant, so a caller only ever sees its own rows.
package auditapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

// Handler forwards AuditService calls.
type Handler struct {
	client auditv1connect.AuditServiceClient
	logger *slog.Logger
}

var _ auditv1connect.AuditServiceHandler = (*Handler)(nil)

// New returns a Handler over a client of the audit service.
func New(client auditv1connect.AuditServiceClient, logger *slog.Logger) *Handler {
	return &Handler{client: client, logger: logger}
}

// forward passes the audit service's answers to the caller: its results and the errors
// it coded for the caller (a bad request, a conversation not found). Anything else (the
// audit service unreachable, an answer that did not decode, an internal error of its
// own) may carry internals: the caller gets a fixed message with an error id, and the
// log line with the cause the same id.
func forward[T any](ctx context.Context, h *Handler, res *T, err error) (*T, error) {
	if err == nil {
		return res, nil
	}
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodeFailedPrecondition,
		connect.CodePermissionDenied, connect.CodeUnauthenticated, connect.CodeCanceled, connect.CodeDeadlineExceeded:
		return nil, err
	case connect.CodeUnavailable:
		id := rpcserver.LogError(ctx, h.logger, "audit query failed", err)
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("the audit log is unavailable (id %s)", id))
	}
	id := rpcserver.LogError(ctx, h.logger, "audit query failed", err)
	return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("internal error (id %s)", id))
}

// TenantHeader lets an admin API key query another tenant's audit rows; any other caller
// naming a tenant not its own is refused with PermissionDenied.
// It is the header the router sets for the audit service, which the router always
// overwrites.
const TenantHeader = auditevent.TenantHeader

// tenantContext sets the tenant header the audit service enforces: the caller's own
// (package tenant: its API key's, or the default tenant without API keys), or the one an
// admin key names.
func tenantContext(ctx context.Context) (context.Context, error) {
	caller := tenant.From(ctx)
	want := caller.Tenant
	if ci, ok := connect.CallInfoForHandlerContext(ctx); ok {
		if named := ci.RequestHeader().Get(TenantHeader); named != "" && named != want {
			if !caller.Admin {
				return nil, connect.NewError(connect.CodePermissionDenied, errors.New("only an admin API key may query another tenant"))
			}
			want = named
		}
	}
	out, ci := connect.NewClientContext(ctx)
	ci.RequestHeader().Set(auditevent.TenantHeader, want)
	return out, nil
}

// ListConversations lists the caller's conversations.
func (h *Handler) ListConversations(ctx context.Context, req *auditv1.ListConversationsRequest) (*auditv1.ListConversationsResponse, error) {
	tctx, err := tenantContext(ctx)
	if err != nil {
		return nil, err
	}
	res, err := h.client.ListConversations(tctx, req)
	return forward(ctx, h, res, err)
}

// GetConversation returns one of the caller's conversations.
func (h *Handler) GetConversation(ctx context.Context, req *auditv1.GetConversationRequest) (*auditv1.GetConversationResponse, error) {
	tctx, err := tenantContext(ctx)
	if err != nil {
		return nil, err
	}
	res, err := h.client.GetConversation(tctx, req)
	return forward(ctx, h, res, err)
}

// GetUsageStats returns usage statistics over the caller's conversations.
func (h *Handler) GetUsageStats(ctx context.Context, req *auditv1.GetUsageStatsRequest) (*auditv1.GetUsageStatsResponse, error) {
	tctx, err := tenantContext(ctx)
	if err != nil {
		return nil, err
	}
	res, err := h.client.GetUsageStats(tctx, req)
	return forward(ctx, h, res, err)
}
