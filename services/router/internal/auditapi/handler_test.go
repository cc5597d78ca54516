package auditapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/services/router/internal/auditapi"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

// fakeAudit plays the audit service: it records the tenant and request of each call.
type fakeAudit struct {
	mu      sync.Mutex
	tenants []string
	reqs    []proto.Message
}

func (f *fakeAudit) record(h http.Header, req proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tenants = append(f.tenants, h.Get(auditevent.TenantHeader))
	f.reqs = append(f.reqs, req)
}

func (f *fakeAudit) ListConversations(ctx context.Context, req *auditv1.ListConversationsRequest) (*auditv1.ListConversationsResponse, error) {
	f.record(callHeader(ctx), req)
	return &auditv1.ListConversationsResponse{NextPageToken: "next", Conversations: []*auditv1.Conversation{{RequestId: "r1"}}}, nil
}

func (f *fakeAudit) GetConversation(ctx context.Context, req *auditv1.GetConversationRequest) (*auditv1.GetConversationResponse, error) {
	f.record(callHeader(ctx), req)
	return nil, connect.NewError(connect.CodeNotFound, errors.New("conversation not found"))
}

func (f *fakeAudit) GetUsageStats(ctx context.Context, req *auditv1.GetUsageStatsRequest) (*auditv1.GetUsageStatsResponse, error) {
	f.record(callHeader(ctx), req)
	return &auditv1.GetUsageStatsResponse{Stats: []*auditv1.UsageStats{{Tenant: "default", Requests: 7}}}, nil
}

func callHeader(ctx context.Context) http.Header {
	ci, _ := connect.CallInfoForHandlerContext(ctx)
	return ci.RequestHeader()
}

func serve(t *testing.T, h auditv1connect.AuditServiceHandler) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(auditv1connect.NewAuditServiceHandler(h))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestForwardsWithTheCallersTenant checks every RPC: the request reaches the audit service
// unchanged, with the tenant the router sets (a header the caller sends is not passed
// on), and the answer or the error code comes back unchanged, over Connect and gRPC.
func TestForwardsWithTheCallersTenant(t *testing.T) {
	t.Parallel()
	fake := &fakeAudit{}
	router := serve(t, auditapi.New(auditv1connect.NewAuditServiceClient(http.DefaultClient, serve(t, fake)), slog.New(slog.DiscardHandler)))
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	grpcClient := &http.Client{Transport: &http.Transport{Protocols: h2c}}

	for _, p := range []struct {
		name   string
		client auditv1connect.AuditServiceClient
	}{
		{"connect", auditv1connect.NewAuditServiceClient(http.DefaultClient, router)},
		{"grpc", auditv1connect.NewAuditServiceClient(grpcClient, router, connect.WithGRPC())},
	} {
		t.Run(p.name, func(t *testing.T) {
			ctx := t.Context()

			list := &auditv1.ListConversationsRequest{Component: "echo", TextQuery: "invoice", PageSize: 5}
			lresp, err := p.client.ListConversations(ctx, list)
			require.NoError(t, err)
			require.Equal(t, "next", lresp.GetNextPageToken())

			_, err = p.client.GetConversation(ctx, &auditv1.GetConversationRequest{RequestId: "x"})
			require.Equal(t, connect.CodeNotFound, connect.CodeOf(err))

			stats := &auditv1.GetUsageStatsRequest{Bucket: auditv1.UsageBucket_USAGE_BUCKET_HOUR, Model: "m"}
			sresp, err := p.client.GetUsageStats(ctx, stats)
			require.NoError(t, err)
			require.EqualValues(t, 7, sresp.GetStats()[0].GetRequests())

			fake.mu.Lock()
			defer fake.mu.Unlock()
			require.Equal(t, []string{conversation.DefaultTenant, conversation.DefaultTenant, conversation.DefaultTenant}, fake.tenants)
			require.True(t, proto.Equal(list, fake.reqs[0]))
			require.True(t, proto.Equal(stats, fake.reqs[2]))
			fake.tenants, fake.reqs = nil, nil
		})
	}
}

// TestTenantOfTheCaller: every query goes to the audit service with the caller's own
// tenant; naming another tenant is refused unless the caller's key is an admin key.
func TestTenantOfTheCaller(t *testing.T) {
	t.Parallel()
	fake := &fakeAudit{}
	h := auditapi.New(auditv1connect.NewAuditServiceClient(http.DefaultClient, serve(t, fake)), slog.New(slog.DiscardHandler))
	path, handler := auditv1connect.NewAuditServiceHandler(h)
	callers := map[string]*tenant.Caller{"a": {Tenant: "team-a", KeyID: "a1"}, "admin": {Tenant: "ops", KeyID: "root", Admin: true}}
	mux := http.NewServeMux()
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Plays the guard: the key's caller in the context.
		handler.ServeHTTP(w, r.WithContext(tenant.With(r.Context(), callers[r.Header.Get("Who")])))
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	client := auditv1connect.NewAuditServiceClient(http.DefaultClient, srv.URL)

	for _, tc := range []struct {
		name, who, named string
		code             connect.Code
		tenant           string
	}{
		{name: "own tenant", who: "a", tenant: "team-a"},
		{name: "own tenant named", who: "a", named: "team-a", tenant: "team-a"},
		{name: "another tenant named", who: "a", named: "team-b", code: connect.CodePermissionDenied},
		{name: "admin, own tenant", who: "admin", tenant: "ops"},
		{name: "admin names a tenant", who: "admin", named: "team-b", tenant: "team-b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, ci := connect.NewClientContext(t.Context())
			ci.RequestHeader().Set("Who", tc.who)
			if tc.named != "" {
				ci.RequestHeader().Set(auditapi.TenantHeader, tc.named)
			}
			calls := []func() error{
				func() error { _, err := client.ListConversations(ctx, &auditv1.ListConversationsRequest{}); return err },
				func() error {
					_, err := client.GetConversation(ctx, &auditv1.GetConversationRequest{RequestId: "x"})
					if connect.CodeOf(err) == connect.CodeNotFound {
						return nil
					}
					return err
				},
				func() error { _, err := client.GetUsageStats(ctx, &auditv1.GetUsageStatsRequest{}); return err },
			}
			for _, call := range calls {
				err := call()
				if tc.code != 0 {
					require.Equal(t, tc.code, connect.CodeOf(err))
					continue
				}
				require.NoError(t, err)
			}
			fake.mu.Lock()
			defer fake.mu.Unlock()
			if tc.code != 0 {
				require.Empty(t, fake.tenants, "a refused query never reaches the audit service")
				return
			}
			require.Equal(t, []string{tc.tenant, tc.tenant, tc.tenant}, fake.tenants)
			fake.tenants, fake.reqs = nil, nil
		})
	}
}

// TestInternalsMasked: the audit service unreachable, or answering with an error it did
// not code for the caller, gives the caller a fixed message with an error id; the log
// line with the cause carries the same id.
func TestInternalsMasked(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // nothing listens there any more

	for _, tt := range []struct {
		name     string
		upstream string
		code     connect.Code
		internal string
	}{
		{name: "unreachable", upstream: downURL, code: connect.CodeUnavailable, internal: "connect"},
		{name: "uncoded failure", upstream: serve(t, failingAudit{}), code: connect.CodeInternal, internal: "pgx: row 7 is bad"},
	} {
		logs.Reset()
		router := serve(t, auditapi.New(auditv1connect.NewAuditServiceClient(http.DefaultClient, tt.upstream), logger))
		client := auditv1connect.NewAuditServiceClient(http.DefaultClient, router)
		_, err := client.ListConversations(t.Context(), &auditv1.ListConversationsRequest{})
		require.Equal(t, tt.code, connect.CodeOf(err), tt.name)
		var ce *connect.Error
		require.ErrorAs(t, err, &ce)
		require.NotContains(t, ce.Message(), tt.internal, tt.name)
		m := regexp.MustCompile(`\(id ([0-9a-f]+)\)$`).FindStringSubmatch(ce.Message())
		require.Len(t, m, 2, ce.Message())
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(logs.String()), &rec), logs.String())
		require.Equal(t, m[1], rec["error_id"])
		require.Contains(t, rec["err"], tt.internal)
	}
}

// failingAudit fails with a coded Unknown error carrying internals, as a handler without
// masking would.
type failingAudit struct {
	auditv1connect.UnimplementedAuditServiceHandler
}

func (failingAudit) ListConversations(context.Context, *auditv1.ListConversationsRequest) (*auditv1.ListConversationsResponse, error) {
	return nil, connect.NewError(connect.CodeUnknown, errors.New("pgx: row 7 is bad"))
}
