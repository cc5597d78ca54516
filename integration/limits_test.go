package integration_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
)

// maxBody is the router's default ROUTER_MAX_BODY_BYTES, the documented body limit.
const maxBody = 4 << 20

// TestBodyLimitEndToEnd: a request of the documented body limit works through every hop,
// audit included (a 700 KB prompt used to reach the provider and then fail on the audit
// publish, NATS's default max_payload being 1 MB, with internal text for the caller);
// one byte more gets Dapr's error and no internal text.
func TestBodyLimitEndToEnd(t *testing.T) {
	need(t)
	t.Parallel()
	n := nonce(t)
	envelope := func(text string) string {
		return `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"` + text + `"}]}}]}],"metadata":{"parley.cache":"bypass"}}`
	}
	filler := maxBody - len(envelope(n+" "))
	body := envelope(n + " " + strings.Repeat("lorem ipsum ", filler/12) + strings.Repeat("x", filler%12))
	require.Len(t, body, maxBody)

	res := post(t, "/v1.0-alpha2/conversation/echo-nocache/converse", body)
	require.Equal(t, http.StatusOK, res.status, "%.300s", res.body)
	var out struct {
		Outputs []struct {
			Choices []struct {
				Message struct{ Content string }
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(res.body), &out))
	require.Len(t, out.Outputs[0].Choices[0].Message.Content, maxBody-len(envelope("")), "the echo of the whole prompt")

	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, st.URL("router"))
	// The audit service scrubs this event's 8 MiB of text before it stores the row: tens
	// of seconds for race-built services on two shared cores.
	row := auditRowWithin(t, audit, res.header.Get("Parley-Request-Id"), 2*time.Minute)
	require.Equal(t, auditv1.Status_STATUS_OK, row.GetStatus())
	require.Contains(t, jsonText(t, row.GetRequest()), n)

	over := post(t, "/v1.0-alpha2/conversation/echo-nocache/converse", body+" ")
	require.Equal(t, http.StatusBadRequest, over.status)
	require.JSONEq(t, `{"errorCode":"ERR_BODY_READ","message":"failed to read request body: http: request body too large"}`, over.body)
}

// TestDeepJSONRefusedAtEdge: a request nested ~4,900 levels deep used to be answered and
// recorded, and its row then made every audit page holding it fail for everyone
// ("exceeded maximum recursion depth"). It is refused at the edge with each API's own
// error, and the audit log stays readable.
func TestDeepJSONRefusedAtEdge(t *testing.T) {
	need(t)
	t.Parallel()
	n := nonce(t)
	deep := func(levels int) string {
		return strings.Repeat(`{"a":`, levels-1) + `{}` + strings.Repeat(`}`, levels-1)
	}
	dapr := func(levels int) string {
		return `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"` + n + `"}]}}]}],` +
			`"tools":[{"function":{"name":"f","parameters":` + deep(levels) + `}}]}`
	}

	res := post(t, "/v1.0-alpha2/conversation/echo-nocache/converse", dapr(4900))
	require.Equal(t, http.StatusBadRequest, res.status, res.body)
	require.Contains(t, res.body, `"errorCode":"ERR_MALFORMED_REQUEST"`)

	res = post(t, "/v1.0-alpha2/conversation/echo-nocache/converse", dapr(65))
	require.Equal(t, http.StatusBadRequest, res.status, res.body)
	require.JSONEq(t, `{"errorCode":"ERR_CONVERSATION_INVALID_PARMS","message":"failed conversing with component echo-nocache: invalid params: tools[0].parameters nest deeper than 64 levels"}`, res.body)

	native := conversationv1connect.NewConversationServiceClient(h2cClient(), st.URL("router"), connect.WithGRPC())
	params := &structpb.Struct{}
	require.NoError(t, params.UnmarshalJSON([]byte(deep(2000))))
	_, err := native.Converse(t.Context(), &conversationv1.ConverseRequest{
		Component: "echo-nocache",
		Messages:  []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: n}},
		Tools:     []*conversationv1.Tool{{Name: "f", Parameters: params}},
	})
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
	require.ErrorContains(t, err, "nest deeper than 64 levels")

	// At the limit, the request works and its row reads back.
	res = post(t, "/v1.0-alpha2/conversation/echo-nocache/converse", dapr(64))
	require.Equal(t, http.StatusOK, res.status, res.body)
	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, st.URL("router"))
	auditRow(t, audit, res.header.Get("Parley-Request-Id"))
	page, err := audit.ListConversations(t.Context(), &auditv1.ListConversationsRequest{TextQuery: n})
	require.NoError(t, err)
	require.Len(t, page.GetConversations(), 1, "only the request at the limit was recorded")
}

// TestTooManyTextsRefused: more texts than the scrubber takes in one call used to be
// answered with the audit copy fully redacted (audit evasion); they are refused.
func TestTooManyTextsRefused(t *testing.T) {
	need(t)
	t.Parallel()
	parts := make([]string, 4097)
	for i := range parts {
		parts[i] = `{"text":"t"}`
	}
	body := `{"inputs":[{"messages":[{"ofUser":{"content":[` + strings.Join(parts, ",") + `]}}]}]}`
	res := post(t, "/v1.0-alpha2/conversation/echo-nocache/converse", body)
	require.Equal(t, http.StatusBadRequest, res.status, res.body)
	require.Contains(t, res.body, `"errorCode":"ERR_CONVERSATION_INVALID_PARMS"`)
	require.Contains(t, res.body, "the request has 4097 texts")

	res = post(t, "/v1.0-alpha2/conversation/echo-nocache/converse", strings.Replace(body, `{"text":"t"},`, "", 1))
	require.Equal(t, http.StatusOK, res.status, "%.300s", res.body)
}
