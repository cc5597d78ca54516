package integration_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
)

// TestNativeTokenize: with scrub mode TOKENIZE the provider (echo) sees numbered tokens,
// the caller gets its own values back, and the audit log keeps the tokens, not the values.
func TestNativeTokenize(t *testing.T) {
	need(t)
	t.Parallel()
	client := conversationv1connect.NewConversationServiceClient(h2cClient(), st.URL("router"))
	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, st.URL("router"))
	for _, outputs := range []bool{false, true} {
		t.Run(fmt.Sprintf("outputs=%v", outputs), func(t *testing.T) {
			t.Parallel()
			n := nonce(t)
			text := "mail dave@example.net about " + n
			req := &conversationv1.ConverseRequest{
				Component: "echo",
				Messages:  []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: text}},
				Scrub:     &conversationv1.Scrub{Inputs: true, Outputs: outputs, Mode: conversationv1.ScrubMode_SCRUB_MODE_TOKENIZE},
			}
			for _, wantHit := range []bool{false, true} {
				res, err := client.Converse(t.Context(), req)
				require.NoError(t, err)
				require.Len(t, res.GetChoices(), 1)
				require.Equal(t, text, res.GetChoices()[0].GetMessage().GetContent(), "the answer is restored")
				require.Equal(t, wantHit, res.GetCacheHit())

				row := auditRow(t, audit, res.GetRequestId())
				for _, s := range []string{jsonText(t, row.GetRequest()), jsonText(t, row.GetResponse())} {
					require.Contains(t, s, "mail <EMAIL_ADDRESS_1> about "+n)
					require.NotContains(t, s, "dave@example.net")
				}
			}
		})
	}
}
