package stack

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/devca"
	"github.com/parleyhq/parley/libs/natsauth"
	"github.com/parleyhq/parley/libs/natstest"
)

// TestNATSAdmitsOnlyUsers: services present their seeds exactly to a server that
// requires users (one without users refuses nkeys).
func TestNATSAdmitsOnlyUsers(t *testing.T) {
	t.Parallel()
	open := natstest.RunServer(t)
	locked := natstest.RunLockedServer(t, natsauth.User{Name: "router", Role: natsauth.Router})
	for _, tc := range []struct {
		name string
		url  string
		want bool
	}{
		{"open", open.ClientURL(), false},
		{"locked", locked.ClientURL(), true},
	} {
		got, err := natsAdmitsOnlyUsers(tc.url, "")
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, got, tc.name)
	}
	_, err := natsAdmitsOnlyUsers("nats://127.0.0.1:1", "")
	require.Error(t, err, "an unreachable server must fail start-up")
}

// TestNATSUserOfWorker: a worker's NATS user serves the components of its
// WORKER_COMPONENTS, or all of them when unset.
func TestNATSUserOfWorker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want []string
	}{
		{nil, nil},
		{map[string]string{"WORKER_COMPONENTS": " echo, echo-nocache ,"}, []string{"echo", "echo-nocache"}},
	}
	for _, tc := range tests {
		u, ok := natsUser("provider-worker-2", "provider-worker", tc.env)
		require.True(t, ok)
		require.Equal(t, natsauth.User{Name: "provider-worker-2", Role: natsauth.Worker, Components: tc.want}, u)
	}
	_, ok := natsUser("pii-scrubber", "pii-scrubber", nil)
	require.False(t, ok, "pii-scrubber does not use NATS")
}

// TestNATSServesTLSOnly: the stack's NATS server (StartNATS runs the one Start embeds)
// refuses a plaintext client and admits a client trusting the development CA.
func TestNATSServesTLSOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	url, stop, err := StartNATS(dir, nil)
	require.NoError(t, err)
	t.Cleanup(stop)
	seed, err := nats.NkeyOptionFromSeed(natsauth.SeedFile(filepath.Join(dir, "nats-auth"), AdminUser))
	require.NoError(t, err)

	// A plaintext client: the server announces TLS and drops the client that speaks the
	// protocol in the clear instead.
	require.True(t, strings.HasPrefix(url, "tls://"), url)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "tls://"))
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	var info struct {
		TLSRequired bool `json:"tls_required"`
	}
	require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "INFO ")), &info), line)
	require.True(t, info.TLSRequired, "the server must announce that it requires TLS")
	_, err = conn.Write([]byte("CONNECT {}\r\nPING\r\n"))
	require.NoError(t, err)
	rest, _ := io.ReadAll(r)
	require.NotContains(t, string(rest), "PONG", "the server must not answer a plaintext client")

	// nats.go upgrades to TLS when told to: with the system's roots it refuses the server.
	_, err = nats.Connect(url, seed, nats.MaxReconnects(0))
	var unknown x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknown)

	other, err := devca.New("other.local", time.Hour)
	require.NoError(t, err)
	otherCA := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(otherCA, other.CertPEM(), 0o644))
	_, err = nats.Connect(url, seed, nats.RootCAs(otherCA), nats.MaxReconnects(0))
	require.Error(t, err, "a client trusting another CA must refuse the server")

	nc, err := nats.Connect(url, seed, nats.RootCAs(NATSCAFileOf(dir)), nats.MaxReconnects(0))
	require.NoError(t, err)
	defer nc.Close()
	require.True(t, nc.TLSRequired(), "the server must require TLS")
	_, err = nc.TLSConnectionState()
	require.NoError(t, err, "the connection must be TLS")
	require.NoError(t, nc.Flush())

	// An external server: start-up probes it over TLS when given its CA.
	locked, err := natsAdmitsOnlyUsers(url, NATSCAFileOf(dir))
	require.NoError(t, err)
	require.True(t, locked)
}

// TestNATSClusterSurvivesNodeLoss: the embedded cluster runs three nodes, each serving
// TLS to the stack's users only; a bucket with three replicas keeps taking writes while
// a node is down, and the node comes back on its ports and catches up.
func TestNATSClusterSurvivesNodeLoss(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users, err := StackUsers(dir, nil)
	require.NoError(t, err)
	tlsDir := filepath.Join(dir, "tls")
	_, err = devca.Ensure(tlsDir, defaultTrustDomain, []string{NATSIdentity})
	require.NoError(t, err)
	n, err := startNATS(filepath.Join(dir, "nats"), users, devca.FilesOf(tlsDir, NATSIdentity), 3)
	require.NoError(t, err)
	t.Cleanup(n.Stop)
	urls := strings.Split(n.URL(), ",")
	require.Len(t, urls, 3)
	for _, u := range urls {
		require.True(t, strings.HasPrefix(u, "tls://"), u)
	}
	// Each node refuses a client without credentials.
	for _, u := range urls {
		locked, err := natsAdmitsOnlyUsers(u, NATSCAFileOf(dir))
		require.NoError(t, err)
		require.True(t, locked, u)
	}

	seed, err := nats.NkeyOptionFromSeed(natsauth.SeedFile(filepath.Join(dir, "nats-auth"), AdminUser))
	require.NoError(t, err)
	nc, err := nats.Connect(n.URL(), seed, nats.RootCAs(NATSCAFileOf(dir)), nats.Name("parley-test"),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "CLUSTER_TEST", Replicas: 3})
	require.NoError(t, err)
	status, err := kv.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, status.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas)
	_, err = kv.PutString(ctx, "before", "1")
	require.NoError(t, err)

	// Lose the node the client is on: it reconnects to another and the bucket (two of
	// three replicas left) keeps taking writes. A write sent as the node goes may never be
	// acknowledged (its ack went with the node, or the bucket was electing a new leader):
	// each attempt waits for its ack a bounded time, as the services' writes do.
	lost := n.nodeServing("parley-test")
	require.GreaterOrEqual(t, lost, 0)
	require.NoError(t, n.StopNode(lost))
	require.Eventually(t, func() bool {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		_, err := kv.PutString(pctx, "during", "2")
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "the bucket took no write with a node down")
	require.NotEqual(t, lost, n.nodeServing("parley-test"))

	require.NoError(t, n.StartNode(lost))
	require.Equal(t, strings.Split(n.URL(), ","), urls, "the node came back on its port")
	require.Eventually(t, func() bool { return n.nodes[lost].s.JetStreamIsCurrent() }, 30*time.Second, 100*time.Millisecond)
	for key, want := range map[string]string{"before": "1", "during": "2"} {
		e, err := kv.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, want, string(e.Value()))
	}
}

// TestNATSAdmitsExtraUsers: StartNATS admits the users it is given beside the stack's,
// each with its role's exact permissions: a worker of one component serves that
// component's queue group and no other subject, a router's requests reach it and the
// answers come back to the router's own inbox; a seed the server was not given is refused.
func TestNATSAdmitsExtraUsers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	extra := []natsauth.User{
		{Name: "extra-router", Role: natsauth.Router},
		{Name: "extra-worker", Role: natsauth.Worker, Components: []string{"floor"}},
	}
	url, stop, err := StartNATS(dir, nil, extra...)
	require.NoError(t, err)
	t.Cleanup(stop)
	// Start with the same DataDir and users would find the same seeds.
	users, err := StackUsers(dir, nil, extra...)
	require.NoError(t, err)
	require.Len(t, users, 1+4+len(extra), "admin, the four services that use NATS and the extra users")
	_, err = natsauth.LoadOrCreate(filepath.Join(dir, "nats-auth"), []natsauth.User{{Name: "stranger", Role: natsauth.Router}})
	require.NoError(t, err)

	connect := func(name string, opts ...nats.Option) (*nats.Conn, error) {
		seedFile := natsauth.SeedFile(filepath.Join(dir, "nats-auth"), name)
		seed, err := nats.NkeyOptionFromSeed(seedFile)
		require.NoError(t, err)
		pub, err := bus.PublicKeyOfSeedFile(seedFile)
		require.NoError(t, err)
		return nats.Connect(url, append([]nats.Option{seed, nats.RootCAs(NATSCAFileOf(dir)), nats.CustomInboxPrefix(bus.InboxPrefix(pub)),
			nats.MaxReconnects(0)}, opts...)...)
	}
	_, err = connect("stranger")
	require.ErrorIs(t, err, nats.ErrAuthorization, "a user the server was not given")

	denied := make(chan string, 4)
	worker, err := connect("extra-worker", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			denied <- err.Error()
		}
	}))
	require.NoError(t, err)
	defer worker.Close()
	subject := bus.ProviderSubjectPrefix + "floor"
	_, err = worker.QueueSubscribe(subject, subject, func(m *nats.Msg) { _ = m.Respond(append([]byte("re: "), m.Data...)) })
	require.NoError(t, err)
	_, err = worker.Subscribe(bus.ProviderSubjectPrefix+"echo", func(*nats.Msg) {})
	require.NoError(t, err) // refused asynchronously
	require.NoError(t, worker.Flush())
	select {
	case msg := <-denied:
		require.Contains(t, msg, bus.ProviderSubjectPrefix+"echo")
	case <-time.After(10 * time.Second):
		t.Fatal("the worker of component floor subscribed to another component's subject")
	}

	router, err := connect("extra-router")
	require.NoError(t, err)
	defer router.Close()
	reply, err := router.Request(subject, []byte("ping"), 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, "re: ping", string(reply.Data))
}
