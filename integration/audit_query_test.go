package integration_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
)

// TestAuditQueriesThroughRouter runs conversations, then finds them through the router's
// AuditService by text, latency and usage statistics, and with the parley CLI.
func TestAuditQueriesThroughRouter(t *testing.T) {
	need(t)
	t.Parallel()
	n := nonce(t)
	var ids []string
	for i := range 3 {
		res := post(t, "/v1.0-alpha1/conversation/echo-nocache/converse",
			fmt.Sprintf(`{"inputs":[{"content":"quarterly report %s part %d, mail alice@example.com"}],"scrubPII":true}`, n, i))
		require.Equal(t, http.StatusOK, res.status, res.body)
		ids = append(ids, res.header.Get("Parley-Request-Id"))
	}
	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, st.URL("router"))
	for _, id := range ids {
		auditRow(t, audit, id)
	}

	t.Run("text search", func(t *testing.T) {
		resp, err := audit.ListConversations(t.Context(), &auditv1.ListConversationsRequest{TextQuery: "REPORT " + n})
		require.NoError(t, err)
		require.Equal(t, []string{ids[2], ids[1], ids[0]}, requestIDs(resp))

		// The scrubbed text is what is searched: the placeholder, not the address.
		resp, err = audit.ListConversations(t.Context(), &auditv1.ListConversationsRequest{TextQuery: n + " email_address"})
		require.NoError(t, err)
		require.Len(t, resp.GetConversations(), 3)
		resp, err = audit.ListConversations(t.Context(), &auditv1.ListConversationsRequest{TextQuery: n + " alice"})
		require.NoError(t, err)
		require.Empty(t, resp.GetConversations())
	})

	t.Run("min latency", func(t *testing.T) {
		resp, err := audit.ListConversations(t.Context(), &auditv1.ListConversationsRequest{TextQuery: n, MinLatency: durationpb.New(time.Hour)})
		require.NoError(t, err)
		require.Empty(t, resp.GetConversations())
		resp, err = audit.ListConversations(t.Context(), &auditv1.ListConversationsRequest{TextQuery: n, MinLatency: durationpb.New(0)})
		require.NoError(t, err)
		require.Len(t, resp.GetConversations(), 3)
	})

	t.Run("usage stats", func(t *testing.T) {
		for _, b := range []auditv1.UsageBucket{auditv1.UsageBucket_USAGE_BUCKET_HOUR, auditv1.UsageBucket_USAGE_BUCKET_DAY} {
			resp, err := audit.GetUsageStats(t.Context(), &auditv1.GetUsageStatsRequest{Bucket: b, Component: "echo-nocache"})
			require.NoError(t, err)
			var requests int64
			for _, s := range resp.GetStats() {
				require.Equal(t, "default", s.GetTenant())
				requests += s.GetRequests()
			}
			require.GreaterOrEqual(t, requests, int64(3), "bucket %v", b)
		}
	})

	t.Run("cli", func(t *testing.T) {
		run := func(args ...string) string {
			res := runParley(t, map[string]string{}, "", append([]string{"-router", st.URL("router")}, args...)...)
			require.Equal(t, 0, res.code, res.stderr)
			return res.stdout
		}
		var list struct {
			Conversations []struct {
				RequestID string `json:"requestId"`
			} `json:"conversations"`
		}
		require.NoError(t, json.Unmarshal([]byte(run("-o", "json", "audit", "list", "-search", n, "-since", "1h")), &list))
		require.Len(t, list.Conversations, 3)

		table := run("-grpc", "audit", "list", "-search", n, "-component", "echo-nocache")
		for _, id := range ids {
			require.Contains(t, table, id)
		}
		require.Contains(t, run("audit", "get", ids[0]), "<EMAIL_ADDRESS>")
		stats := run("audit", "stats", "-bucket", "hour", "-group-by", "component")
		require.True(t, strings.Contains(stats, "echo-nocache"), stats)
	})
}

func requestIDs(resp *auditv1.ListConversationsResponse) []string {
	var ids []string
	for _, c := range resp.GetConversations() {
		ids = append(ids, c.GetRequestId())
	}
	return ids
}
