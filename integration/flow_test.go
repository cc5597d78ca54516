package integration_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
)

// TestConversationThroughEveryService is the foundation's acceptance test: a Dapr alpha2
// request with scrubbing, to an echo component with responseCacheTTL, travels router →
// pii-scrubber → cache → NATS → provider-worker → back, yields Dapr's exact JSON, is a
// cache hit the second time, and lands in the audit log with scrubbed text.
func TestConversationThroughEveryService(t *testing.T) {
	need(t)
	t.Parallel()
	n := nonce(t)
	body := fmt.Sprintf(`{"contextId":"ctx-%s","inputs":[{"messages":[{"ofUser":{"content":[{"text":"my email is alice@example.com, call +2222222222 %s"}]}}],"scrubPii":true}],"scrubPii":true}`, n, n)
	want := fmt.Sprintf(`{"contextId":"ctx-%s","outputs":[{"choices":[{"finishReason":"stop","message":{"content":"my email is <EMAIL_ADDRESS>, call <PHONE_NUMBER> %s"}}],
		"usage":{"completionTokens":"7","promptTokens":"7","totalTokens":"14"}}]}`, n, n)

	first := post(t, "/v1.0-alpha2/conversation/echo/converse", body)
	require.Equal(t, http.StatusOK, first.status, first.body)
	require.JSONEq(t, want, first.body)
	require.Equal(t, "miss", first.header.Get("Parley-Cache"))

	second := post(t, "/v1.0-alpha2/conversation/echo/converse", body)
	require.Equal(t, http.StatusOK, second.status, second.body)
	require.JSONEq(t, want, second.body)
	require.Equal(t, "hit", second.header.Get("Parley-Cache"))

	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, st.URL("router"))
	firstRow := auditRow(t, audit, first.header.Get("Parley-Request-Id"))
	require.Equal(t, "echo", firstRow.GetComponent())
	require.Equal(t, "conversation.echo", firstRow.GetProvider())
	require.Equal(t, auditv1.Api_API_ALPHA2, firstRow.GetApi())
	require.Equal(t, auditv1.Status_STATUS_OK, firstRow.GetStatus())
	require.Equal(t, "ctx-"+n, firstRow.GetContextId())
	require.Equal(t, "stop", firstRow.GetFinishReason())
	require.EqualValues(t, 7, firstRow.GetUsage().GetPromptTokens())
	require.EqualValues(t, 7, firstRow.GetUsage().GetCompletionTokens())
	require.EqualValues(t, 14, firstRow.GetUsage().GetTotalTokens())
	require.False(t, firstRow.GetCacheHit())
	require.NotEmpty(t, firstRow.GetWorkerId())
	require.EqualValues(t, 1, firstRow.GetAttempts())
	require.EqualValues(t, 1, firstRow.GetPiiFindings()["EMAIL_ADDRESS"])
	require.EqualValues(t, 1, firstRow.GetPiiFindings()["PHONE_NUMBER"])
	for _, text := range []string{jsonText(t, firstRow.GetRequest()), jsonText(t, firstRow.GetResponse())} {
		require.Contains(t, text, "<EMAIL_ADDRESS>")
		require.Contains(t, text, n)
		require.NotContains(t, text, "alice@example.com")
		require.NotContains(t, text, "2222222222")
	}

	secondRow := auditRow(t, audit, second.header.Get("Parley-Request-Id"))
	require.True(t, secondRow.GetCacheHit())
	require.Equal(t, auditv1.Status_STATUS_OK, secondRow.GetStatus())

	// The log lists both, newest first, filtered by context id.
	list, err := audit.ListConversations(t.Context(), &auditv1.ListConversationsRequest{ContextId: "ctx-" + n})
	require.NoError(t, err)
	require.Len(t, list.GetConversations(), 2)
	require.Equal(t, secondRow.GetRequestId(), list.GetConversations()[0].GetRequestId())
}

// TestAuditScrubsWhatTheCallerDidNotAskToScrub: output scrubbing only, yet the audit
// record keeps no PII of the request either.
func TestAuditScrubsWhatTheCallerDidNotAskToScrub(t *testing.T) {
	need(t)
	t.Parallel()
	n := nonce(t)
	res := post(t, "/v1.0-alpha1/conversation/echo-nocache/converse",
		fmt.Sprintf(`{"inputs":[{"content":"reach bob@example.org %s"}],"scrubPII":true}`, n))
	require.Equal(t, http.StatusOK, res.status, res.body)
	require.JSONEq(t, fmt.Sprintf(`{"outputs":[{"result":"reach <EMAIL_ADDRESS> %s"}]}`, n), res.body)
	require.Equal(t, "miss", res.header.Get("Parley-Cache"))

	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, st.URL("router"), connect.WithGRPC())
	row := auditRow(t, audit, res.header.Get("Parley-Request-Id"))
	text := jsonText(t, row.GetRequest())
	require.NotContains(t, text, "bob@example.org")
	require.Contains(t, text, "<EMAIL_ADDRESS> "+n)
	require.Equal(t, auditv1.Api_API_ALPHA1, row.GetApi())
}

// TestAuditRecordsFailures: a call that fails after the component is resolved is in the
// log with its Dapr error code.
func TestAuditRecordsFailures(t *testing.T) {
	need(t)
	t.Parallel()
	n := nonce(t)
	res := post(t, "/v1.0-alpha2/conversation/orphan/converse",
		fmt.Sprintf(`{"contextId":"%s","inputs":[{"messages":[{"ofUser":{"content":[{"text":"x"}]}}]}]}`, n))
	require.Equal(t, http.StatusInternalServerError, res.status, res.body)

	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, st.URL("router"))
	var rows []*auditv1.Conversation
	require.Eventually(t, func() bool {
		list, err := audit.ListConversations(t.Context(), &auditv1.ListConversationsRequest{ContextId: n, Status: auditv1.Status_STATUS_ERROR})
		if err != nil {
			return false
		}
		rows = list.GetConversations()
		return len(rows) == 1
	}, auditWait, 100*time.Millisecond)
	require.Equal(t, "ERR_CONVERSATION_INVOKE", rows[0].GetErrorCode())
	require.True(t, strings.Contains(rows[0].GetErrorMessage(), "no worker"), rows[0].GetErrorMessage())
}

func TestAuditErrors(t *testing.T) {
	need(t)
	t.Parallel()
	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, st.URL("router"))
	_, err := audit.GetConversation(t.Context(), &auditv1.GetConversationRequest{RequestId: "0192f0c4-0000-7000-8000-000000000000"})
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "%v", err)
	_, err = audit.ListConversations(t.Context(), &auditv1.ListConversationsRequest{PageToken: "not-a-token"})
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)

	// The audit service itself refuses a router that does not name a tenant.
	direct := auditv1connect.NewAuditServiceClient(clientAs(t, "router"), st.URL("audit"))
	_, err = direct.ListConversations(t.Context(), &auditv1.ListConversationsRequest{})
	require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "%v", err)
}

// auditWait is how long a test waits for audit rows: on the shared stack a row can queue
// behind TestBodyLimitEndToEnd's, whose 8 MiB of text the race-built audit service scrubs
// for tens of seconds on loaded cores.
const auditWait = time.Minute

// auditRow waits up to auditWait for the audit service to have written request id's row.
func auditRow(t *testing.T, audit auditv1connect.AuditServiceClient, id string) *auditv1.Conversation {
	t.Helper()
	return auditRowWithin(t, audit, id, auditWait)
}

// auditRowWithin is auditRow waiting up to wait: longer for the largest events, which the
// audit service scrubs whole before it stores them.
func auditRowWithin(t *testing.T, audit auditv1connect.AuditServiceClient, id string, wait time.Duration) *auditv1.Conversation {
	t.Helper()
	require.NotEmpty(t, id, "response has no Parley-Request-Id")
	var row *auditv1.Conversation
	require.Eventually(t, func() bool {
		res, err := audit.GetConversation(t.Context(), &auditv1.GetConversationRequest{RequestId: id})
		if err != nil {
			return false
		}
		row = res.GetConversation()
		return true
	}, wait, 50*time.Millisecond, "audit row %s never appeared within %s", id, wait)
	return row
}

// jsonText renders an audit JSON column without HTML escaping, as stored.
func jsonText(t *testing.T, v *structpb.Value) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(v.AsInterface()))
	return b.String()
}

// TestFallbackComponent: a component whose workers cannot answer hands the request to its
// fallbacks, in order, and the audit record names the fallback used.
func TestFallbackComponent(t *testing.T) {
	need(t)
	t.Parallel()
	n := nonce(t)
	res := post(t, "/v1.0-alpha2/conversation/primary-down/converse",
		fmt.Sprintf(`{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"via fallback %s"}]}}]}]}`, n))
	require.Equal(t, http.StatusOK, res.status, res.body)
	require.JSONEq(t, fmt.Sprintf(`{"outputs":[{"choices":[{"finishReason":"stop","message":{"content":"via fallback %s"}}],
		"usage":{"completionTokens":"3","promptTokens":"3","totalTokens":"6"}}]}`, n), res.body)
	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, st.URL("router"))
	row := auditRow(t, audit, res.header.Get("Parley-Request-Id"))
	require.Equal(t, "primary-down", row.GetComponent())
	require.Equal(t, []string{"echo-nocache"}, row.GetFallbacks())
	require.EqualValues(t, 2, row.GetAttempts())
}
