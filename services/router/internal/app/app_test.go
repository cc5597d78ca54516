package app_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/identity/identitytest"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/libs/seal"
	"github.com/parleyhq/parley/services/router/internal/app"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// TestAppStartsAndStops boots the router in process against a real NATS server, serves a
// Dapr HTTP conversation through a worker that answers over NATS, checks that its audit
// event reached the stream, sealed to the audit service's key (ROUTER_AUDIT_SEAL_KEY_FILE:
// no scrubber runs here, none is called), and stops the app.
func TestAppStartsAndStops(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chat.yaml"), []byte(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: chat
spec:
  type: conversation.echo
  version: v1
`), 0o600))
	privPEM, pubPEM, err := seal.GenerateKey()
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "audit-seal.pub")
	require.NoError(t, os.WriteFile(keyFile, pubPEM, 0o600))
	cfg, err := config.LoadFrom[app.Config](t.Context(), envconfig.MapLookuper(map[string]string{
		"COMPONENTS_DIR": dir, "ROUTER_AUDIT_SEAL_KEY_FILE": keyFile,
	}))
	require.NoError(t, err)

	// A worker of component chat: it answers every request with "pong".
	nc := natstest.Connect(t, srv)
	sub, err := nc.QueueSubscribe("parley.provider.chat", "parley.provider.chat", func(m *nats.Msg) {
		data, err := proto.Marshal(&providerv1.Reply{Kind: &providerv1.Reply_Response{Response: &providerv1.Response{
			WorkerId: "w-test", Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "pong"}},
		}}})
		if err == nil {
			_ = m.Respond(data)
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())

	var rpc *rpcserver.Server
	fxApp := fxtest.New(t, platform.Module("router"), app.Module,
		fx.Replace(
			rpcserver.Config{Addr: "127.0.0.1:0", GRPCAddrs: []string{"127.0.0.1:0"}, MaxMessageBytes: 4 << 20, ReadHeaderTimeout: 5 * time.Second},
			bus.Config{URL: srv.ClientURL(), ConnectTimeout: 5 * time.Second},
			cfg,
			// The router's own identity, for its calls to the internal services; its
			// public port stays plain HTTP.
			identitytest.For(t).Config(identity.Router),
		),
		fx.Populate(&rpc))
	fxApp.RequireStart()

	tests := []struct {
		name, method, path, body string
		wantStatus               int
		want                     string
	}{
		{"ready", http.MethodGet, "/readyz", "", http.StatusOK, "ready"},
		{"metadata lists the component", http.MethodGet, "/v1.0/metadata", "", http.StatusOK, `"name":"chat","type":"conversation.echo"`},
		{"conversation through the worker", http.MethodPost, "/v1.0-alpha2/conversation/chat/converse",
			`{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"ping"}]}}]}]}`, http.StatusOK, `"content":"pong"`},
		{"unknown component", http.MethodPost, "/v1.0-alpha2/conversation/nope/converse", `{}`,
			http.StatusBadRequest, `"errorCode":"ERR_CONVERSATION_NOT_FOUND"`},
	}
	for _, tt := range tests {
		req, err := http.NewRequestWithContext(t.Context(), tt.method, rpc.URL()+tt.path, strings.NewReader(tt.body))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err, tt.name)
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.NoError(t, err, tt.name)
		require.Equal(t, tt.wantStatus, resp.StatusCode, "%s: %s", tt.name, body)
		require.Contains(t, string(body), tt.want, tt.name)
	}

	// The served conversation's audit event is in the stream.
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	stream, err := js.Stream(t.Context(), auditevent.Stream)
	require.NoError(t, err)
	msg, err := stream.GetLastMsgForSubject(t.Context(), auditevent.Subject)
	require.NoError(t, err)
	var ev auditv1.ConversationEvent
	require.NoError(t, proto.Unmarshal(msg.Data, &ev))
	require.Equal(t, "chat", ev.GetComponent())
	require.Equal(t, auditv1.Status_STATUS_OK, ev.GetStatus())
	require.Equal(t, "w-test", ev.GetWorkerId())
	require.Nil(t, ev.GetRequest(), "the audit copy travels sealed")
	priv, err := seal.ParsePrivateKey(privPEM)
	require.NoError(t, err)
	opener, err := seal.NewOpener(priv)
	require.NoError(t, err)
	sc := ev.GetSealed()
	raw, err := opener.Open(seal.Box{Enc: sc.GetEnc(), Nonce: sc.GetNonce(), Ciphertext: sc.GetCiphertext()}, []byte(ev.GetRequestId()))
	require.NoError(t, err)
	var cp auditv1.AuditCopy
	require.NoError(t, proto.Unmarshal(raw, &cp))
	require.True(t, cp.GetScrubRequest())
	require.Equal(t, "pong", cp.GetResponse().GetChoices()[0].GetContent())

	fxApp.RequireStop()
}

// TestAuditSealKeyFileChecked: a seal key file that cannot be read, or holds no X25519
// public key, fails the router's start with an error naming the setting.
func TestAuditSealKeyFileChecked(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	dir := t.TempDir()
	privPEM, _, err := seal.GenerateKey()
	require.NoError(t, err)
	privFile := filepath.Join(dir, "audit-seal.key")
	require.NoError(t, os.WriteFile(privFile, privPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chat.yaml"), []byte(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: chat
spec:
  type: conversation.echo
`), 0o600))
	tests := []struct{ name, file, want string }{
		{name: "missing", file: filepath.Join(dir, "nope.pub"), want: "no such file"},
		{name: "the private key instead", file: privFile, want: `no PEM "PUBLIC KEY" block`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.LoadFrom[app.Config](t.Context(), envconfig.MapLookuper(map[string]string{
				"COMPONENTS_DIR": dir, "ROUTER_AUDIT_SEAL_KEY_FILE": tt.file,
			}))
			require.NoError(t, err)
			fxApp := fx.New(platform.Module("router"), app.Module, fx.NopLogger,
				fx.Replace(
					rpcserver.Config{Addr: "127.0.0.1:0", MaxMessageBytes: 4 << 20, ReadHeaderTimeout: 5 * time.Second},
					bus.Config{URL: srv.ClientURL(), ConnectTimeout: 5 * time.Second},
					cfg,
					identitytest.For(t).Config(identity.Router),
				),
				fx.Invoke(func(*conversation.Service) {}))
			err = fxApp.Err()
			if err == nil {
				err = fxApp.Start(t.Context())
				_ = fxApp.Stop(t.Context())
			}
			require.ErrorContains(t, err, "ROUTER_AUDIT_SEAL_KEY_FILE")
			require.ErrorContains(t, err, tt.want)
		})
	}
}
