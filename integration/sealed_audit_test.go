package integration_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	protobuf "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/integration/stack"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/seal"
)

// TestSealedAuditCopyScrubbedByTheRealScrubber: an audit copy sealed to the audit
// service's key, published on the audit stream with the router's NATS credentials as a
// router with ROUTER_AUDIT_SEAL_KEY_FILE would, is opened by the audit process, scrubbed by
// the real pii-scrubber over mutual TLS (identity audit) and stored scrubbed; the sealed
// message is then gone from the stream.
func TestSealedAuditCopyScrubbedByTheRealScrubber(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	t.Parallel()
	privPEM, pubPEM, err := seal.GenerateKey()
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "audit-seal.key")
	require.NoError(t, os.WriteFile(keyFile, privPEM, 0o600))
	echo, err := os.ReadFile(filepath.Join("..", "deploy", "components", "echo.yaml"))
	require.NoError(t, err)
	own := startOwnStack(t, map[string]string{"echo.yaml": string(echo)}, map[string]string{"AUDIT_SEAL_KEY_FILE": keyFile})

	pub, err := seal.ParsePublicKey(pubPEM)
	require.NoError(t, err)
	sealer, err := seal.NewSealer(pub, 0, 0)
	require.NoError(t, err)
	id, err := uuid.NewV7()
	require.NoError(t, err)
	const email = "grace.hopper@example.com"
	msg, err := protobuf.Marshal(&auditv1.AuditCopy{
		Request: &providerv1.Request{Messages: []*providerv1.Message{
			{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "write to " + email}}}},
			{Role: providerv1.Role_ROLE_ASSISTANT, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{
				Id: "c1", Type: "function", Name: "send", Arguments: `{"to":"` + email + `"}`,
			}}}}},
		}},
		Response:     &providerv1.Response{Choices: []*providerv1.Choice{{Content: "sent to " + email, FinishReason: "stop"}}},
		ScrubRequest: true, ScrubResponse: true,
	})
	require.NoError(t, err)
	box, err := sealer.Seal(msg, []byte(id.String()))
	require.NoError(t, err)
	ev := &auditv1.ConversationEvent{
		RequestId: id.String(), Tenant: "default", Api: auditv1.Api_API_NATIVE, Component: "echo",
		Provider: "conversation.echo", Status: auditv1.Status_STATUS_OK, CreatedAt: timestamppb.Now(),
		Sealed: &auditv1.SealedCopy{Enc: box.Enc, Nonce: box.Nonce, Ciphertext: box.Ciphertext},
	}
	data, err := protobuf.Marshal(ev)
	require.NoError(t, err)
	nc, err := own.ConnectNATS("router")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ack, err := js.PublishMsg(t.Context(), &nats.Msg{
		Subject: auditevent.Subject, Data: data,
		Header: nats.Header{jetstream.MsgIDHeader: []string{ev.GetRequestId()}},
	})
	require.NoError(t, err)

	row := auditRow(t, auditv1connect.NewAuditServiceClient(http.DefaultClient, own.URL("router")), ev.GetRequestId())
	stored := jsonText(t, row.GetRequest()) + jsonText(t, row.GetResponse())
	require.NotContains(t, stored, email)
	require.Equal(t, 3, strings.Count(stored, "<EMAIL_ADDRESS>"), stored)
	require.Equal(t, map[string]int64{"EMAIL_ADDRESS": 3}, row.GetPiiFindings())

	admin, err := own.ConnectNATS(stack.AdminUser)
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	ajs, err := jetstream.New(admin)
	require.NoError(t, err)
	s, err := ajs.Stream(t.Context(), auditevent.Stream)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := s.GetMsg(t.Context(), ack.Sequence)
		return errors.Is(err, jetstream.ErrMsgNotFound)
	}, 20*time.Second, 50*time.Millisecond, "sealed message still in the stream")
}

// TestSealedAuditCopy follows one conversation's audit copy with the default settings
// (the router seals what only the audit log needs scrubbed): while the audit service is
// stopped the stream holds the event, and neither the prompt's e-mail address nor the
// nonce is readable in any stored message; once the audit service is back the row holds
// the scrubbed copy with its findings, and the event is gone from the stream.
func TestSealedAuditCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	t.Parallel()
	echo, err := os.ReadFile(filepath.Join("testdata", "components", "echo-nocache.yaml"))
	require.NoError(t, err)
	own := startOwnStack(t, map[string]string{"echo-nocache.yaml": string(echo)}, nil)
	stopCtx, cancel := contextWithTimeout(t, time.Minute)
	defer cancel()
	require.NoError(t, own.StopService(stopCtx, "audit"))

	n := nonce(t)
	client := h2cClient()
	body := fmt.Sprintf(`{"inputs":[{"content":"mail carol@example.net %s"}]}`, n)
	res, err := client.Post(own.URL("router")+"/v1.0-alpha1/conversation/echo-nocache/converse", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "AUDIT_MODE=required answers once the stream has stored the event, audit service or not")
	id := res.Header.Get("Parley-Request-Id")
	require.NotEmpty(t, id)

	nc, err := own.ConnectNATS(stack.AdminUser)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	stream, err := js.Stream(t.Context(), "PARLEY_AUDIT")
	require.NoError(t, err)
	info, err := stream.Info(t.Context())
	require.NoError(t, err)
	var seq uint64
	for s := info.State.FirstSeq; s <= info.State.LastSeq; s++ {
		m, err := stream.GetMsg(t.Context(), s)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err)
		require.NotContains(t, string(m.Data), "carol@example.net", "a raw e-mail address in the stream")
		require.NotContains(t, string(m.Data), n, "raw prompt text in the stream")
		if m.Header.Get("Nats-Msg-Id") == id {
			seq = s
			var ev auditv1.ConversationEvent
			require.NoError(t, protobuf.Unmarshal(m.Data, &ev))
			require.NotNil(t, ev.GetSealed(), "the audit copy is sealed")
			require.Nil(t, ev.GetRequest(), "no clear request beside the sealed copy")
		}
	}
	require.NotZero(t, seq, "the event of %s is not in the stream", id)

	require.NoError(t, own.StartService(t.Context(), "audit"))
	require.NoError(t, own.WaitReady(t.Context(), "audit", time.Minute))
	audit := auditv1connect.NewAuditServiceClient(http.DefaultClient, own.URL("router"))
	row := auditRow(t, audit, id)
	text := jsonText(t, row.GetRequest())
	require.NotContains(t, text, "carol@example.net")
	require.Contains(t, text, "<EMAIL_ADDRESS> "+n)
	require.Contains(t, jsonText(t, row.GetResponse()), "<EMAIL_ADDRESS> "+n, "echo answers the prompt, scrubbed in the row too")
	require.EqualValues(t, 2, row.GetPiiFindings()["EMAIL_ADDRESS"], "the prompt's address and the echoed answer's")

	require.Eventually(t, func() bool {
		_, err := stream.GetMsg(t.Context(), seq)
		return errors.Is(err, jetstream.ErrMsgNotFound)
	}, 20*time.Second, 50*time.Millisecond, "the sealed event outlived its ingestion")
}
