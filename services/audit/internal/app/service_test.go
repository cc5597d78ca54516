package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/identity/identitytest"
	"github.com/parleyhq/parley/libs/logging"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/libs/pg"
	"github.com/parleyhq/parley/libs/pgtest"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/services/audit/internal/app"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// databaseURL returns a URL for database name on PG_TEST_DSN's server.
func databaseURL(t *testing.T, name string) string {
	t.Helper()
	dsn := pgtest.DSN(t)
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name
}

// startApp boots the whole audit service in process on a fresh NATS server and database,
// and returns its server and a JetStream context on the same NATS server.
func startApp(t *testing.T) (*rpcserver.Server, jetstream.JetStream) {
	t.Helper()
	return startAppWith(t, func(*app.Config) {})
}

// startAppWith is startApp with the service's configuration changed by set.
func startAppWith(t *testing.T, set func(*app.Config)) (*rpcserver.Server, jetstream.JetStream) {
	t.Helper()
	srv := natstest.RunServer(t)
	pool := pgtest.NewDB(t, store.Migrations())
	var server *rpcserver.Server
	fxApp := fxtest.New(t,
		platform.Module("audit"),
		app.Module,
		fx.Replace(
			rpcserver.Config{Addr: "127.0.0.1:0", MaxMessageBytes: 4 << 20},
			identitytest.For(t).Config(identity.Audit),
			bus.Config{URL: srv.ClientURL(), ConnectTimeout: 5 * time.Second},
			pg.Config{URL: databaseURL(t, pool.Config().ConnConfig.Database), MaxConns: 4},
			logging.Config{Level: slog.LevelError},
		),
		// The events are dated March 2026; keep them whatever the day the test runs.
		fx.Decorate(func(c app.Config) app.Config {
			c.Retention = 0
			set(&c)
			return c
		}),
		fx.Populate(&server),
	)
	fxApp.RequireStart()
	t.Cleanup(fxApp.RequireStop)
	js, err := jetstream.New(natstest.Connect(t, srv))
	require.NoError(t, err)
	return server, js
}

// h2cClient is a router's client of audit: HTTP/2 over mutual TLS with a router
// certificate from the test's CA.
func h2cClient(t *testing.T) *http.Client {
	t.Helper()
	return identitytest.For(t).Client(identity.Router, identity.Audit)
}

var protocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"connect", nil},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
}

// withTenant sets the tenant header as router does; an empty tenant sets none.
func withTenant(ctx context.Context, tenant string) context.Context {
	if tenant == "" {
		return ctx
	}
	ctx, ci := connect.NewClientContext(ctx)
	ci.RequestHeader().Set(auditevent.TenantHeader, tenant)
	return ctx
}

// publishEvents publishes n events of tenant as router does and returns their request ids.
func publishEvents(t *testing.T, js jetstream.JetStream, tenant string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		id, err := uuid.NewV7()
		require.NoError(t, err)
		ev := &auditv1.ConversationEvent{
			RequestId:   id.String(),
			Tenant:      tenant,
			Api:         auditv1.Api_API_NATIVE,
			Component:   "echo",
			Provider:    "conversation.echo",
			RequestJson: []byte(`{"inputs":[{"content":"hi"}]}`),
			Status:      auditv1.Status_STATUS_OK,
			CreatedAt:   timestamppb.New(time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC)),
		}
		b, err := proto.Marshal(ev)
		require.NoError(t, err)
		_, err = js.PublishMsg(t.Context(), &nats.Msg{
			Subject: auditevent.Subject, Data: b,
			Header: nats.Header{jetstream.MsgIDHeader: []string{ev.GetRequestId()}},
		})
		require.NoError(t, err)
		ids[i] = ev.GetRequestId()
	}
	return ids
}

func TestAuditService(t *testing.T) {
	t.Parallel()
	server, js := startApp(t)
	httpClient := h2cClient(t)

	idsA := publishEvents(t, js, "tenant-a", 3)
	idsB := publishEvents(t, js, "tenant-b", 2)
	probe := auditv1connect.NewAuditServiceClient(httpClient, server.URL())
	require.Eventually(t, func() bool {
		a, errA := probe.ListConversations(withTenant(t.Context(), "tenant-a"), &auditv1.ListConversationsRequest{})
		b, errB := probe.ListConversations(withTenant(t.Context(), "tenant-b"), &auditv1.ListConversationsRequest{})
		return errA == nil && errB == nil && len(a.GetConversations()) == 3 && len(b.GetConversations()) == 2
	}, 30*time.Second, 20*time.Millisecond)

	// Issue 11: audit answered any caller and believed its Parley-Tenant header. Only a
	// router's identity may query, and only its header names the tenant.
	for _, caller := range []struct {
		name     string
		client   *http.Client
		wantCode connect.Code
	}{
		{"no certificate", identitytest.For(t).Client("", ""), connect.CodeUnauthenticated},
		{"admin", identitytest.For(t).Client(identity.Admin, identity.Audit), connect.CodePermissionDenied},
		{"another service", identitytest.For(t).Client(identity.Cache, identity.Audit), connect.CodePermissionDenied},
	} {
		for _, p := range protocols {
			direct := auditv1connect.NewAuditServiceClient(caller.client, server.URL(), p.opts...)
			_, err := direct.ListConversations(withTenant(t.Context(), "tenant-a"), &auditv1.ListConversationsRequest{})
			require.Equal(t, caller.wantCode, connect.CodeOf(err), "%s over %s: %v", caller.name, p.name, err)
			_, err = direct.GetUsageStats(withTenant(t.Context(), "tenant-a"), &auditv1.GetUsageStatsRequest{})
			require.Equal(t, caller.wantCode, connect.CodeOf(err), "%s over %s: %v", caller.name, p.name, err)
		}
	}

	for _, p := range protocols {
		client := auditv1connect.NewAuditServiceClient(httpClient, server.URL(), p.opts...)

		listTests := []struct {
			name     string
			tenant   string
			req      *auditv1.ListConversationsRequest
			wantCode connect.Code // 0: success
			wantIDs  []string     // newest first
		}{
			{name: "own rows", tenant: "tenant-a", req: &auditv1.ListConversationsRequest{}, wantIDs: reversed(idsA)},
			{name: "other tenant's own rows", tenant: "tenant-b", req: &auditv1.ListConversationsRequest{}, wantIDs: reversed(idsB)},
			{name: "tenant without rows", tenant: "tenant-c", req: &auditv1.ListConversationsRequest{}, wantIDs: nil},
			{name: "missing tenant", req: &auditv1.ListConversationsRequest{}, wantCode: connect.CodePermissionDenied},
			{name: "bad page token", tenant: "tenant-a", req: &auditv1.ListConversationsRequest{PageToken: "not-a-token"}, wantCode: connect.CodeInvalidArgument},
			{name: "negative page size", tenant: "tenant-a", req: &auditv1.ListConversationsRequest{PageSize: -1}, wantCode: connect.CodeInvalidArgument},
		}
		for _, tt := range listTests {
			t.Run(p.name+"/list/"+tt.name, func(t *testing.T) {
				t.Parallel()
				resp, err := client.ListConversations(withTenant(t.Context(), tt.tenant), tt.req)
				if tt.wantCode != 0 {
					require.Error(t, err)
					require.Equal(t, tt.wantCode, connect.CodeOf(err), "error: %v", err)
					return
				}
				require.NoError(t, err)
				var got []string
				for _, c := range resp.GetConversations() {
					require.Equal(t, tt.tenant, c.GetTenant())
					got = append(got, c.GetRequestId())
				}
				require.Equal(t, tt.wantIDs, got)
			})
		}

		getTests := []struct {
			name      string
			tenant    string
			requestID string
			wantCode  connect.Code // 0: success
			wantMsg   string
		}{
			{name: "own conversation", tenant: "tenant-a", requestID: idsA[1]},
			{name: "other tenant's conversation", tenant: "tenant-b", requestID: idsA[1], wantCode: connect.CodeNotFound, wantMsg: "conversation not found"},
			{name: "unknown id", tenant: "tenant-a", requestID: uuid.NewString(), wantCode: connect.CodeNotFound},
			{name: "id not a uuid", tenant: "tenant-a", requestID: "req-1", wantCode: connect.CodeNotFound},
			{name: "empty id", tenant: "tenant-a", wantCode: connect.CodeInvalidArgument, wantMsg: "request_id"},
			{name: "missing tenant", requestID: idsA[1], wantCode: connect.CodePermissionDenied, wantMsg: "missing tenant"},
		}
		for _, tt := range getTests {
			t.Run(p.name+"/get/"+tt.name, func(t *testing.T) {
				t.Parallel()
				resp, err := client.GetConversation(withTenant(t.Context(), tt.tenant), &auditv1.GetConversationRequest{RequestId: tt.requestID})
				if tt.wantCode != 0 {
					require.Error(t, err)
					require.Equal(t, tt.wantCode, connect.CodeOf(err), "error: %v", err)
					require.Contains(t, err.Error(), tt.wantMsg)
					return
				}
				require.NoError(t, err)
				require.Equal(t, tt.requestID, resp.GetConversation().GetRequestId())
				require.Equal(t, tt.tenant, resp.GetConversation().GetTenant())
			})
		}
	}

	t.Run("usage stats", func(t *testing.T) {
		t.Parallel()
		day := &auditv1.GetUsageStatsRequest{
			StartTime: timestamppb.New(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)),
			EndTime:   timestamppb.New(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)),
		}
		for _, p := range protocols {
			client := auditv1connect.NewAuditServiceClient(httpClient, server.URL(), p.opts...)
			tests := []struct {
				name         string
				tenant       string
				req          *auditv1.GetUsageStatsRequest
				wantCode     connect.Code // 0: success
				wantRequests int64
			}{
				{name: "own rows", tenant: "tenant-a", req: day, wantRequests: 3},
				{name: "other tenant's own rows", tenant: "tenant-b", req: day, wantRequests: 2},
				{name: "missing tenant", req: day, wantCode: connect.CodePermissionDenied},
				{name: "bad bucket", tenant: "tenant-a", req: &auditv1.GetUsageStatsRequest{Bucket: 7}, wantCode: connect.CodeInvalidArgument},
			}
			for _, tt := range tests {
				resp, err := client.GetUsageStats(withTenant(t.Context(), tt.tenant), tt.req)
				if tt.wantCode != 0 {
					require.Equal(t, tt.wantCode, connect.CodeOf(err), "%s %s: %v", p.name, tt.name, err)
					continue
				}
				require.NoError(t, err, "%s %s", p.name, tt.name)
				require.Len(t, resp.GetStats(), 1)
				require.Equal(t, tt.tenant, resp.GetStats()[0].GetTenant())
				require.Equal(t, tt.wantRequests, resp.GetStats()[0].GetRequests())
			}
		}
	})

	t.Run("pages", func(t *testing.T) {
		t.Parallel()
		ctx := withTenant(t.Context(), "tenant-a")
		first, err := probe.ListConversations(ctx, &auditv1.ListConversationsRequest{PageSize: 2})
		require.NoError(t, err)
		require.Len(t, first.GetConversations(), 2)
		require.NotEmpty(t, first.GetNextPageToken())
		second, err := probe.ListConversations(ctx, &auditv1.ListConversationsRequest{PageSize: 2, PageToken: first.GetNextPageToken()})
		require.NoError(t, err)
		require.Len(t, second.GetConversations(), 1)
		require.Empty(t, second.GetNextPageToken())
		require.Equal(t, idsA[0], second.GetConversations()[0].GetRequestId())
	})

	t.Run("ready and metrics", func(t *testing.T) {
		t.Parallel()
		res, err := httpClient.Get(server.URL() + "/readyz")
		require.NoError(t, err)
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		require.Equal(t, http.StatusOK, res.StatusCode, string(body))

		res, err = httpClient.Get(server.URL() + "/metrics")
		require.NoError(t, err)
		body, err = io.ReadAll(res.Body)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		for _, name := range []string{
			"parley_audit_rows_written_total 5", "parley_audit_batches_total", "parley_audit_batch_rows_count",
			"parley_audit_batch_bytes_count", "parley_audit_ingest_delay_seconds_count",
			"parley_audit_dead_letters_total", "parley_audit_ingest_lag",
			"parley_audit_maintenance_runs_total", "parley_audit_partitions_created_total",
		} {
			require.True(t, strings.Contains(string(body), name), "metrics lack %q", name)
		}
	})
}

func reversed(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[len(ids)-1-i] = id
	}
	return out
}

// TestStartFailsOnBadDatabase checks that an unreachable database fails start-up with a
// message naming the setting, instead of a service that serves nothing.
func TestStartFailsOnBadDatabase(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	fxApp := fx.New(
		platform.Module("audit"),
		app.Module,
		fx.Replace(
			rpcserver.Config{Addr: "127.0.0.1:0", MaxMessageBytes: 4 << 20},
			identitytest.For(t).Config(identity.Audit),
			bus.Config{URL: srv.ClientURL(), ConnectTimeout: 5 * time.Second},
			pg.Config{URL: databaseURL(t, fmt.Sprintf("pgtest_absent_%d", time.Now().UnixNano())), MaxConns: 1},
			logging.Config{Level: slog.LevelError + 4},
		),
		fx.NopLogger,
	)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := fxApp.Start(ctx)
	require.ErrorContains(t, err, "DATABASE_URL")
	require.NoError(t, fxApp.Stop(ctx))
}
