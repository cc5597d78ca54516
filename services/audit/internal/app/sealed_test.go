package app_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
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
	"github.com/parleyhq/parley/libs/seal"
	"github.com/parleyhq/parley/services/audit/internal/app"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// upperScrubber stands for pii-scrubber: it answers each text upper-cased with one
// PERSON finding, so a stored row shows the text went through it. It serves over mutual
// TLS as pii-scrubber and admits only the audit identity to Scrub, as pii-scrubber's
// policy does.
type upperScrubber struct {
	piiv1connect.UnimplementedScrubberServiceHandler
	calls atomic.Int64
}

func (u *upperScrubber) Scrub(_ context.Context, req *piiv1.ScrubRequest) (*piiv1.ScrubResponse, error) {
	u.calls.Add(1)
	res := &piiv1.ScrubResponse{}
	for _, text := range req.GetTexts() {
		res.Results = append(res.Results, &piiv1.ScrubResult{
			Text:     strings.ToUpper(text),
			Findings: []*piiv1.Finding{{Entity: "PERSON", Start: 0, End: int64(len(text))}},
		})
	}
	return res, nil
}

func startScrubber(t *testing.T, h *upperScrubber) string {
	t.Helper()
	id := identitytest.For(t).Source(identity.Scrubber)
	path, handler := piiv1connect.NewScrubberServiceHandler(h, id.Authorize(identity.Policy{
		piiv1connect.ScrubberServiceScrubProcedure: {identity.Audit},
	}))
	mux := http.NewServeMux()
	mux.Handle(path, handler)
	srv := httptest.NewUnstartedServer(id.Peers(mux))
	srv.EnableHTTP2 = true
	srv.TLS = id.ServerTLS()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// writeKeys writes a new seal key pair to files and returns their paths.
func writeKeys(t *testing.T) (privFile, pubFile string) {
	t.Helper()
	privPEM, pubPEM, err := seal.GenerateKey()
	require.NoError(t, err)
	dir := t.TempDir()
	privFile, pubFile = filepath.Join(dir, "seal.key"), filepath.Join(dir, "seal.pub")
	require.NoError(t, os.WriteFile(privFile, privPEM, 0o600))
	require.NoError(t, os.WriteFile(pubFile, pubPEM, 0o600))
	return privFile, pubFile
}

// TestSealedCopyThroughTheService: with its key file and the scrubber's URL, the audit
// service opens a router's sealed copy, has it scrubbed over mutual TLS as audit, and
// serves the scrubbed row; the sealed message is gone from the stream. An older key
// (AUDIT_SEAL_OLD_KEY_FILES) still opens what was sealed to it.
func TestSealedCopyThroughTheService(t *testing.T) {
	t.Parallel()
	scrubber := &upperScrubber{}
	url := startScrubber(t, scrubber)
	currentKey, currentPub := writeKeys(t)
	oldKey, oldPub := writeKeys(t)
	server, js := startAppWith(t, func(c *app.Config) {
		c.SealKeyFile, c.SealOldKeyFiles, c.ScrubberURL = currentKey, []string{oldKey}, url
	})

	var ids []string
	var seqs []uint64
	for i, pubFile := range []string{currentPub, oldPub} {
		pub, err := seal.ReadPublicKeyFile(pubFile)
		require.NoError(t, err)
		sealer, err := seal.NewSealer(pub, 0, 0)
		require.NoError(t, err)
		id, err := uuid.NewV7()
		require.NoError(t, err)
		msg, err := proto.Marshal(&auditv1.AuditCopy{
			Request: &providerv1.Request{Messages: []*providerv1.Message{{
				Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "call ada lovelace"}}},
			}}},
			Response:     &providerv1.Response{Choices: []*providerv1.Choice{{Content: "calling ada", FinishReason: "stop"}}},
			ScrubRequest: true, ScrubResponse: true,
		})
		require.NoError(t, err)
		box, err := sealer.Seal(msg, []byte(id.String()))
		require.NoError(t, err)
		ev := &auditv1.ConversationEvent{
			RequestId: id.String(), Tenant: "tenant-a", Api: auditv1.Api_API_NATIVE, Component: "echo",
			Provider: "conversation.echo", Status: auditv1.Status_STATUS_OK,
			CreatedAt: timestamppb.New(time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC)),
			Sealed:    &auditv1.SealedCopy{Enc: box.Enc, Nonce: box.Nonce, Ciphertext: box.Ciphertext},
		}
		b, err := proto.Marshal(ev)
		require.NoError(t, err)
		ack, err := js.PublishMsg(t.Context(), &nats.Msg{
			Subject: auditevent.Subject, Data: b,
			Header: nats.Header{jetstream.MsgIDHeader: []string{ev.GetRequestId()}},
		})
		require.NoError(t, err)
		ids, seqs = append(ids, ev.GetRequestId()), append(seqs, ack.Sequence)
	}

	client := auditv1connect.NewAuditServiceClient(h2cClient(t), server.URL())
	for _, id := range ids {
		var got *auditv1.Conversation
		require.Eventually(t, func() bool {
			res, err := client.GetConversation(withTenant(t.Context(), "tenant-a"), &auditv1.GetConversationRequest{RequestId: id})
			if err != nil {
				return false
			}
			got = res.GetConversation()
			return true
		}, 30*time.Second, 20*time.Millisecond)
		req, err := got.GetRequest().MarshalJSON()
		require.NoError(t, err)
		resp, err := got.GetResponse().MarshalJSON()
		require.NoError(t, err)
		require.Contains(t, string(req), "CALL ADA LOVELACE")
		require.Contains(t, string(resp), "CALLING ADA")
		require.NotContains(t, string(req)+string(resp), "ada")
		require.Equal(t, map[string]int64{"PERSON": 2}, got.GetPiiFindings())
	}
	require.Positive(t, scrubber.calls.Load())

	s, err := js.Stream(t.Context(), auditevent.Stream)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		for _, seq := range seqs {
			if _, err := s.GetMsg(t.Context(), seq); err == nil {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond)
}

// TestScrubberRefusesOtherIdentities: the stand-in scrubber's policy is pii-scrubber's
// for Scrub, so the test above proves audit calls as identity audit.
func TestScrubberRefusesOtherIdentities(t *testing.T) {
	t.Parallel()
	url := startScrubber(t, &upperScrubber{})
	_, err := piiv1connect.NewScrubberServiceClient(identitytest.For(t).Client(identity.Cache, identity.Scrubber), url).
		Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"x"}})
	require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "err: %v", err)
}

func TestStartFailsOnBadSealKey(t *testing.T) {
	t.Parallel()
	_, pubFile := writeKeys(t)
	tests := []struct {
		name    string
		set     func(*app.Config)
		wantErr string
	}{
		{name: "missing file", set: func(c *app.Config) { c.SealKeyFile = filepath.Join(t.TempDir(), "absent.key") }, wantErr: "AUDIT_SEAL_KEY_FILE"},
		{name: "public key given", set: func(c *app.Config) { c.SealKeyFile = pubFile }, wantErr: "AUDIT_SEAL_KEY_FILE"},
		{name: "bad old key", set: func(c *app.Config) {
			c.SealKeyFile, _ = writeKeys(t)
			c.SealOldKeyFiles = []string{pubFile}
		}, wantErr: "AUDIT_SEAL_OLD_KEY_FILES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := startErr(t, tt.set)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// startErr starts the service with its configuration changed by set and returns the
// start-up error.
func startErr(t *testing.T, set func(*app.Config)) error {
	t.Helper()
	srv := natstest.RunServer(t)
	pool := pgtest.NewDB(t, store.Migrations())
	fxApp := fx.New(
		platform.Module("audit"),
		app.Module,
		fx.Replace(
			rpcserver.Config{Addr: "127.0.0.1:0", MaxMessageBytes: 4 << 20},
			identitytest.For(t).Config(identity.Audit),
			bus.Config{URL: srv.ClientURL(), ConnectTimeout: 5 * time.Second},
			pg.Config{URL: databaseURL(t, pool.Config().ConnConfig.Database), MaxConns: 1},
			logging.Config{Level: slog.LevelError + 4},
		),
		fx.Decorate(func(c app.Config) app.Config {
			set(&c)
			return c
		}),
		fx.NopLogger,
	)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := fxApp.Start(ctx)
	require.Error(t, err)
	_ = fxApp.Stop(ctx)
	return err
}
