package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	"github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1/runtimev1connect"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/devca"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/natsauth"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/libs/pgtest"
)

// start runs parley-floor with args until the test ends and returns what its "listening
// on" line names.
func start(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, w)
		_ = w.CloseWithError(errors.Join(err, io.EOF))
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("parley-floor %v: %v", args, err)
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case line, ok := <-lines:
		if !ok || !strings.HasPrefix(line, "listening on ") {
			t.Fatalf("parley-floor %v: no listening line (%q)", args, line)
		}
		return strings.TrimPrefix(line, "listening on ")
	case <-time.After(20 * time.Second):
		t.Fatalf("parley-floor %v did not listen", args)
		return ""
	}
}

func request(text string) *runtimev1.ConversationRequestAlpha2 {
	return &runtimev1.ConversationRequestAlpha2{Inputs: []*runtimev1.ConversationInputAlpha2{{Messages: []*runtimev1.ConversationMessage{{
		MessageTypes: &runtimev1.ConversationMessage_OfUser{OfUser: &runtimev1.ConversationMessageOfUser{
			Content: []*runtimev1.ConversationMessageContent{{Text: text}},
		}},
	}}}}}
}

// TestConnectMTLS: the connect-mtls floor echoes to the identity it allows, and refuses a
// caller of another identity and one without a certificate, as a service does.
func TestConnectMTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := devca.Ensure(dir, "parley.local", []string{"bench-floor", identity.Router, identity.Cache})
	if err != nil {
		t.Fatal(err)
	}
	f := devca.FilesOf(dir, "bench-floor")
	addr := start(t, "-server", "connect-mtls", "-identity", "bench-floor", "-allow", identity.Router,
		"-tls-ca", f.CA, "-tls-cert", f.Cert, "-tls-key", f.Key)

	clientAs := func(name string) *http.Client {
		p := new(http.Protocols)
		p.SetHTTP2(true)
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true} //nolint:gosec // a caller without an identity
		if name != "" {
			cf := devca.FilesOf(dir, name)
			src, err := identity.NewSource(identity.Config{Mode: identity.ModeOn, CAFile: cf.CA, CertFile: cf.Cert, KeyFile: cf.Key, TrustDomain: "parley.local"},
				name, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			cfg = src.ClientTLS("bench-floor")
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Protocols: p}}
	}
	tests := []struct {
		caller string
		code   connect.Code // 0: the echo
	}{
		{identity.Router, 0},
		{identity.Cache, connect.CodePermissionDenied},
		{"", connect.CodeUnauthenticated},
	}
	for _, tt := range tests {
		name := "caller " + tt.caller
		if tt.caller == "" {
			name = "no client certificate"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client := runtimev1connect.NewDaprClient(clientAs(tt.caller), "https://"+addr)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := client.ConverseAlpha2(ctx, request("hello floor"))
			if tt.code != 0 {
				if connect.CodeOf(err) != tt.code {
					t.Fatalf("err = %v, want code %v", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := res.GetOutputs()[0].GetChoices()[0].GetMessage().GetContent(); got != "hello floor" {
				t.Fatalf("echo = %q", got)
			}
		})
	}
}

// TestNATSResponder: the nats floor, connected as a worker of its one component, answers
// a router's requests on that component's subject with their payload.
func TestNATSResponder(t *testing.T) {
	t.Parallel()
	locked := natstest.RunLockedServer(t,
		natsauth.User{Name: "router", Role: natsauth.Router},
		natsauth.User{Name: "floor", Role: natsauth.Worker, Components: []string{"bench-floor"}})
	subject := bus.ProviderSubjectPrefix + "bench-floor"
	if got := start(t, "-server", "nats", "-nats-url", locked.ClientURL(), "-nats-seed", locked.SeedFile("floor"), "-subject", subject); got != subject {
		t.Fatalf("listening on %q, want %q", got, subject)
	}
	router := locked.ConnectAs(t, "router", nil)
	for _, payload := range []string{"one", "two", strings.Repeat("x", 4096)} {
		reply, err := router.Request(subject, []byte(payload), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if string(reply.Data) != payload {
			t.Fatalf("reply %q, want %q", reply.Data, payload)
		}
	}
}

// keptNATS runs a NATS server with an admin user (the kept server's) and a worker of
// bench-floor (the nats responder's), and connects to it as the admin.
func keptNATS(t *testing.T) (*natstest.Locked, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	locked := natstest.RunLockedServer(t,
		natsauth.User{Name: "admin", Role: natsauth.Admin},
		natsauth.User{Name: "floor", Role: natsauth.Worker, Components: []string{"bench-floor"}})
	admin := locked.ConnectAs(t, "admin", nil)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	return locked, admin, js
}

// TestKept: the kept server answers a kept-hit call after its event is in the stream, and
// a kept-provider call after the worker's subject answered too; a call whose publish
// cannot be stored fails instead of answering.
func TestKept(t *testing.T) {
	t.Parallel()
	locked, admin, js := keptNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEPT", Subjects: []string{"kept.events"}})
	if err != nil {
		t.Fatal(err)
	}
	subject := bus.ProviderSubjectPrefix + "bench-floor"
	start(t, "-server", "nats", "-nats-url", locked.ClientURL(), "-nats-seed", locked.SeedFile("floor"), "-subject", subject)
	requests := make(chan string, 10)
	watch, err := admin.Subscribe(subject, func(m *nats.Msg) { requests <- string(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = watch.Unsubscribe() }()
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	addr := start(t, "-server", "kept", "-nats-url", locked.ClientURL(), "-nats-seed", locked.SeedFile("admin"),
		"-publish-subject", "kept.events", "-request-subject", subject)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()

	tests := []struct {
		component   string
		wantRequest bool
	}{
		{"kept-hit", false},
		{"kept-provider", true},
	}
	for i, tt := range tests {
		req := request("hello " + tt.component)
		req.Name = tt.component
		res := &runtimev1.ConversationResponseAlpha2{}
		if err := conn.Invoke(ctx, runtimev1connect.DaprConverseAlpha2Procedure, req, res); err != nil {
			t.Fatalf("%s: %v", tt.component, err)
		}
		if got := res.GetOutputs()[0].GetChoices()[0].GetMessage().GetContent(); got != "hello "+tt.component {
			t.Fatalf("%s: echo = %q", tt.component, got)
		}
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != uint64(i+1) { //nolint:gosec // a small index
			t.Fatalf("%s: %d events stored, want %d", tt.component, info.State.Msgs, i+1)
		}
		if tt.wantRequest {
			if got := <-requests; got != "hello "+tt.component {
				t.Fatalf("%s: request %q", tt.component, got)
			}
		}
		if len(requests) > 0 {
			t.Fatalf("%s: unexpected request %q", tt.component, <-requests)
		}
	}

	if err := js.DeleteStream(ctx, "KEPT"); err != nil {
		t.Fatal(err)
	}
	req := request("nowhere to store")
	req.Name = "kept-hit"
	if err := conn.Invoke(ctx, runtimev1connect.DaprConverseAlpha2Procedure, req, &runtimev1.ConversationResponseAlpha2{}); err == nil {
		t.Fatal("answered without storing its event")
	}
}

// TestKeptStore: with -store-dsn, every event the kept server publishes is read back from
// its stream and stored in PostgreSQL once, under its message id, and the consumer's
// acks cover them all (nothing left to redeliver).
func TestKeptStore(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t, fstest.MapFS{"001_empty.sql": {Data: []byte("SELECT 1;")}})
	dsn, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	dsn.Path = "/" + pool.Config().ConnConfig.Database
	locked, _, js := keptNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Another subject of the same stream, which the store must leave alone.
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEPT", Subjects: []string{"kept.events", "kept.other"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "kept.other", []byte("not the kept server's")); err != nil {
		t.Fatal(err)
	}
	subject := bus.ProviderSubjectPrefix + "bench-floor"
	start(t, "-server", "nats", "-nats-url", locked.ClientURL(), "-nats-seed", locked.SeedFile("floor"), "-subject", subject)
	addr := start(t, "-server", "kept", "-nats-url", locked.ClientURL(), "-nats-seed", locked.SeedFile("admin"),
		"-publish-subject", "kept.events", "-request-subject", subject, "-publish-bytes", "300",
		"-store-dsn", dsn.String(), "-store-stream", "KEPT")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()

	const calls = 600 // more than one batch
	for i := range calls {
		req := request("hello")
		req.Name = []string{"kept-hit", "kept-provider"}[i%2]
		if err := conn.Invoke(ctx, runtimev1connect.DaprConverseAlpha2Procedure, req, &runtimev1.ConversationResponseAlpha2{}); err != nil {
			t.Fatal(err)
		}
	}
	var rows, ids, short int
	for ctx.Err() == nil {
		if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE length(event) <> 300) FROM `+keptTable).
			Scan(&rows, &ids, &short); err != nil {
			t.Fatal(err)
		}
		if rows >= calls {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rows != calls || ids != calls || short != 0 {
		t.Fatalf("%d rows, %d ids, %d of another size; want %d events of 300 bytes, each once", rows, ids, short, calls)
	}
	cons, err := stream.Consumer(ctx, "parley-floor-kept-store")
	if err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && info.AckFloor.Stream == info.Delivered.Stream && info.NumPending == 0 {
			if info.Delivered.Consumer != calls {
				t.Fatalf("%d messages delivered to the store, want %d", info.Delivered.Consumer, calls)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the store did not acknowledge every event")
}
