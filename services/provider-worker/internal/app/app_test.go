package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/identity/identitytest"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/services/provider-worker/internal/app"
)

func TestConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want app.Config
	}{
		{
			name: "defaults",
			env:  map[string]string{},
			want: app.Config{ComponentsDir: "/etc/parley/components", Concurrency: 64, HeartbeatInterval: 200 * time.Millisecond, PresenceInterval: 2 * time.Second},
		},
		{
			name: "everything set",
			env: map[string]string{
				"COMPONENTS_DIR": "/c", "SECRETS_DIR": "/s", "WORKER_COMPONENTS": "a,b",
				"WORKER_CONCURRENCY": "8", "WORKER_HEARTBEAT_INTERVAL": "250ms", "WORKER_ID": "w-1",
				"RESILIENCY_DIR": "/r", "WORKER_PRESENCE_INTERVAL": "5s",
			},
			want: app.Config{
				ComponentsDir: "/c", ResiliencyDir: "/r", SecretsDir: "/s", Components: []string{"a", "b"},
				Concurrency: 8, HeartbeatInterval: 250 * time.Millisecond, PresenceInterval: 5 * time.Second, WorkerID: "w-1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := config.LoadFrom[app.Config](t.Context(), envconfig.MapLookuper(tt.env))
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"zero concurrency", map[string]string{"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY must be between 1 and"},
		{"huge concurrency", map[string]string{"WORKER_CONCURRENCY": "10000000"}, "WORKER_CONCURRENCY must be between 1 and"},
		{"concurrency not a number", map[string]string{"WORKER_CONCURRENCY": "many"}, "WORKER_CONCURRENCY"},
		{"zero heartbeat", map[string]string{"WORKER_HEARTBEAT_INTERVAL": "0s"}, "WORKER_HEARTBEAT_INTERVAL must be positive"},
		{"heartbeat not a duration", map[string]string{"WORKER_HEARTBEAT_INTERVAL": "often"}, "WORKER_HEARTBEAT_INTERVAL"},
		{"wildcard component", map[string]string{"WORKER_COMPONENTS": "a,b.*"}, `WORKER_COMPONENTS: "b.*" is not a component name`},
		{"empty components dir", map[string]string{"COMPONENTS_DIR": " "}, "COMPONENTS_DIR must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.LoadFrom[app.Config](t.Context(), envconfig.MapLookuper(tt.env))
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestConfigServedComponentsAndID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give app.Config
		want []string
	}{
		{"unset", app.Config{}, nil},
		{"trimmed, empties dropped", app.Config{Components: []string{" a", "", "b "}}, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.give.ServedComponents())
		})
	}
	require.Equal(t, "w-9", app.Config{WorkerID: "w-9"}.ID())
	host, err := os.Hostname()
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("%s-%d", host, os.Getpid()), app.Config{}.ID())
}

func TestConfigResiliencySource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		give        app.Config
		wantDir     string
		wantSetting string
	}{
		{"set", app.Config{ComponentsDir: "/c", ResiliencyDir: "/r"}, "/r", "RESILIENCY_DIR=/r"},
		{"unset: the components directory", app.Config{ComponentsDir: "/c"}, "/c", "RESILIENCY_DIR (unset, so COMPONENTS_DIR=/c)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir, setting := tt.give.ResiliencySource()
			require.Equal(t, tt.wantDir, dir)
			require.Equal(t, tt.wantSetting, setting)
		})
	}
}

func TestValidateApp(t *testing.T) {
	t.Parallel()
	require.NoError(t, fx.ValidateApp(platform.Module("provider-worker"), app.Module))
}

// writeComponents writes one component file per name→type entry into a new directory.
func writeComponents(t *testing.T, types map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, typ := range types {
		doc := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: %s
spec:
  type: %s
  version: v1
  metadata:
  - name: key
    secretKeyRef:
      name: provider-key
      key: key
`, name, typ)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(doc), 0o600))
	}
	return dir
}

// writeResiliency writes a Resiliency document with the given spec into dir.
func writeResiliency(t *testing.T, dir, spec string) {
	t.Helper()
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: policies\nspec:\n" + spec
	require.NoError(t, os.WriteFile(filepath.Join(dir, "resiliency.yaml"), []byte(doc), 0o600))
}

// secretsDir returns a mounted-secrets directory holding provider-key/key.
func secretsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "provider-key"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "provider-key", "key"), []byte("sk-test\n"), 0o600))
	return dir
}

// options are the fx options of an in-process worker talking to srv.
func options(t *testing.T, srv *server.Server, cfg app.Config) fx.Option {
	return fx.Options(
		platform.Module("provider-worker"),
		app.Module,
		fx.Replace(
			rpcserver.Config{Addr: "127.0.0.1:0", MaxMessageBytes: 4 << 20},
			identitytest.For(t).Config(identity.Worker),
			bus.Config{URL: srv.ClientURL(), ConnectTimeout: 5 * time.Second},
			cfg,
			slog.New(slog.NewTextHandler(t.Output(), nil)),
		),
	)
}

func TestAppServesOverNATS(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	components := writeComponents(t, map[string]string{"chat": "conversation.echo", "other": "conversation.echo", "gpt": "conversation.openai"})
	// Dapr's resources directory holds the policies next to the components.
	writeResiliency(t, components, `  policies:
    timeouts: {t: 30s}
    retries: {r: {maxRetries: 2}}
    circuitBreakers: {cb: {}}
  targets:
    components:
      chat: {outbound: {timeout: t, retry: r, circuitBreaker: cb}}
`)
	cfg := app.Config{
		ComponentsDir:     components,
		SecretsDir:        secretsDir(t),
		Components:        []string{"chat"},
		Concurrency:       4,
		HeartbeatInterval: time.Minute,
		WorkerID:          "w-app",
	}
	var rpc *rpcserver.Server
	fxApp := fxtest.New(t, options(t, srv, cfg), fx.Populate(&rpc))
	fxApp.RequireStart()

	nc := natstest.Connect(t, srv)
	tests := []struct {
		name         string
		component    string
		wantNoWorker bool
	}{
		{"served component", "chat", false},
		{"component left out by WORKER_COMPONENTS", "other", true},
		{"unimplemented component left out", "gpt", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &providerv1.Request{
				RequestId: "r-" + tt.component, Component: tt.component,
				Messages: []*providerv1.Message{{Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "ping"}}}}},
				Deadline: timestamppb.New(time.Now().Add(time.Minute)),
			}
			data, err := proto.Marshal(req)
			require.NoError(t, err)
			if tt.wantNoWorker {
				_, err := nc.RequestMsg(&nats.Msg{Subject: "parley.provider." + tt.component, Data: data}, 10*time.Second)
				require.ErrorIs(t, err, nats.ErrNoResponders)
				return
			}
			// The worker claims the request with a heartbeat announcing its interval, then answers.
			inbox := nc.NewInbox()
			sub, err := nc.SubscribeSync(inbox)
			require.NoError(t, err)
			t.Cleanup(func() { _ = sub.Unsubscribe() })
			require.NoError(t, nc.PublishMsg(&nats.Msg{Subject: "parley.provider." + tt.component, Reply: inbox, Data: data}))
			var r providerv1.Reply
			for heartbeats := 0; ; heartbeats++ {
				m, err := sub.NextMsg(10 * time.Second)
				require.NoError(t, err)
				require.NoError(t, proto.Unmarshal(m.Data, &r))
				if r.GetHeartbeat() == nil {
					require.Positive(t, heartbeats, "no heartbeat claimed the request")
					break
				}
				require.Equal(t, cfg.HeartbeatInterval.String(), m.Header.Get(bus.HeartbeatIntervalHeader))
			}
			require.Equal(t, "ping", r.GetResponse().GetChoices()[0].GetContent())
			require.Equal(t, "w-app", r.GetResponse().GetWorkerId())
			require.Equal(t, int32(1), r.GetResponse().GetAttempts())
		})
	}

	body := get(t, rpc.URL()+"/readyz", http.StatusOK)
	require.Contains(t, body, "ready")
	require.Eventually(t, func() bool {
		return strings.Contains(get(t, rpc.URL()+"/metrics", http.StatusOK), `parley_worker_requests_total{component="chat",outcome="ok"} 1`)
	}, 5*time.Second, 20*time.Millisecond)
	metrics := get(t, rpc.URL()+"/metrics", http.StatusOK)
	for _, name := range []string{
		"parley_worker_request_duration_seconds", "parley_worker_inflight", "parley_worker_rejected_total",
		`parley_worker_attempts_total{component="chat",outcome="ok"} 1`,
		`parley_worker_circuit_breaker_state{component="chat"} 0`,
	} {
		require.Contains(t, metrics, name)
	}

	fxApp.RequireStop()
}

func TestAppStartFailures(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	base := app.Config{Concurrency: 4, HeartbeatInterval: time.Second, WorkerID: "w"}
	tests := []struct {
		name string
		give func(t *testing.T) app.Config
		want string
	}{
		{
			name: "WORKER_COMPONENTS names a component that is not loaded",
			give: func(t *testing.T) app.Config {
				c := base
				c.ComponentsDir = writeComponents(t, map[string]string{"chat": "conversation.echo"})
				c.SecretsDir = secretsDir(t)
				c.Components = []string{"chat", "missing"}
				return c
			},
			want: `WORKER_COMPONENTS: "missing": component is not loaded (loaded: chat)`,
		},
		{
			name: "provider endpoint outside the allow-list",
			give: func(t *testing.T) app.Config {
				c := base
				c.ComponentsDir = writeComponents(t, map[string]string{"chat": "conversation.echo", "openai": "conversation.openai"})
				c.SecretsDir = secretsDir(t)
				c.EndpointAllowlist = "llm.internal.example"
				return c
			},
			want: `component "openai" (conversation.openai)`,
		},
		{
			name: "no components",
			give: func(t *testing.T) app.Config {
				c := base
				c.ComponentsDir = t.TempDir()
				return c
			},
			want: "defines no conversation components",
		},
		{
			name: "missing components directory",
			give: func(t *testing.T) app.Config {
				c := base
				c.ComponentsDir = filepath.Join(t.TempDir(), "absent")
				return c
			},
			want: "COMPONENTS_DIR=",
		},
		{
			name: "invalid resiliency file next to the components",
			give: func(t *testing.T) app.Config {
				c := base
				c.ComponentsDir = writeComponents(t, map[string]string{"chat": "conversation.echo"})
				c.SecretsDir = secretsDir(t)
				writeResiliency(t, c.ComponentsDir, "  policies:\n    retries:\n      r: {maxRetries: lots}\n")
				return c
			},
			want: `load resiliency policies from RESILIENCY_DIR (unset, so COMPONENTS_DIR=`,
		},
		{
			name: "resiliency target names an unknown policy",
			give: func(t *testing.T) app.Config {
				c := base
				c.ComponentsDir = writeComponents(t, map[string]string{"chat": "conversation.echo"})
				c.SecretsDir = secretsDir(t)
				c.ResiliencyDir = t.TempDir()
				writeResiliency(t, c.ResiliencyDir, "  targets:\n    components:\n      chat: {outbound: {retry: nope}}\n")
				return c
			},
			want: `spec.targets.components.chat.outbound.retry: unknown retry policy "nope"`,
		},
		{
			name: "missing resiliency directory",
			give: func(t *testing.T) app.Config {
				c := base
				c.ComponentsDir = writeComponents(t, map[string]string{"chat": "conversation.echo"})
				c.SecretsDir = secretsDir(t)
				c.ResiliencyDir = filepath.Join(t.TempDir(), "absent")
				return c
			},
			want: "load resiliency policies from RESILIENCY_DIR=",
		},
		{
			name: "secret not found",
			give: func(t *testing.T) app.Config {
				c := base
				c.ComponentsDir = writeComponents(t, map[string]string{"chat": "conversation.echo"})
				c.SecretsDir = t.TempDir()
				return c
			},
			want: `secretKeyRef {name: "provider-key", key: "key"}: not found`,
		},
		{
			name: "secrets directory missing",
			give: func(t *testing.T) app.Config {
				c := base
				c.ComponentsDir = writeComponents(t, map[string]string{"chat": "conversation.echo"})
				c.SecretsDir = filepath.Join(t.TempDir(), "absent")
				return c
			},
			want: "SECRETS_DIR=",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var conn *bus.Conn
			fxApp := fx.New(options(t, srv, tt.give(t)),
				// The app never starts, so nothing drains the connection if one was made.
				fx.Decorate(func(c *bus.Conn) *bus.Conn { conn = c; return c }),
			)
			t.Cleanup(func() {
				if conn != nil {
					conn.Close()
				}
			})
			require.ErrorContains(t, fxApp.Err(), tt.want)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			require.Error(t, fxApp.Start(ctx))
		})
	}
}

func get(t *testing.T, url string, wantStatus int) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	// Probes and scrapers present no certificate; the health port serves them over TLS.
	resp, err := identitytest.For(t).Client("", "").Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, wantStatus, resp.StatusCode, "body: %s", body)
	return string(body)
}
