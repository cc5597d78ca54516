package stack

import (
	"bufio"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

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
