package bus_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/natsauth"
	"github.com/parleyhq/parley/libs/natstest"
)

func TestConnectRefusesMissingFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notSeed := filepath.Join(dir, "not-a-seed")
	if err := os.WriteFile(notSeed, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name string
		cfg  bus.Config
		want string
	}{
		{"seed missing", bus.Config{NKeySeedFile: missing}, "NATS_NKEY_SEED_FILE=" + missing},
		{"not a seed", bus.Config{NKeySeedFile: notSeed}, "NATS_NKEY_SEED_FILE=" + notSeed + ": not an nkey seed"},
		{"CA missing", bus.Config{TLSCAFile: missing}, "NATS_TLS_CA_FILE=" + missing},
		{"cert missing", bus.Config{TLSCertFile: missing, TLSKeyFile: notSeed}, "NATS_TLS_CERT_FILE=" + missing},
		{"key missing", bus.Config{TLSCertFile: notSeed, TLSKeyFile: missing}, "NATS_TLS_KEY_FILE=" + missing},
		{"cert without key", bus.Config{TLSCertFile: notSeed}, "NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE must be set together"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.URL = "nats://127.0.0.1:1"
			tc.cfg.ConnectTimeout = time.Second
			_, err := bus.Connect(tc.cfg, "test", slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestConnectWithSeed: the seed authenticates, and the connection's inboxes are the
// user's own, the only ones its permissions let it subscribe to: a request's answer
// arrives.
func TestConnectWithSeed(t *testing.T) {
	t.Parallel()
	l := natstest.RunLockedServer(t,
		natsauth.User{Name: "router", Role: natsauth.Router},
		natsauth.User{Name: "worker", Role: natsauth.Worker, Components: []string{"echo"}})
	worker := l.ConnectAs(t, "worker", nil)
	if _, err := worker.QueueSubscribe("parley.provider.echo", "parley.provider.echo", func(m *nats.Msg) {
		_ = m.Respond([]byte("answer"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := worker.Flush(); err != nil {
		t.Fatal(err)
	}
	c, err := bus.Connect(busConfig(l, "router"), "router", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if inbox := c.NewInbox(); !strings.HasPrefix(inbox, "_INBOX."+l.Users[0].NKey+".") {
		t.Fatalf("inbox %s is not under the user's prefix", inbox)
	}
	m, err := c.Request("parley.provider.echo", []byte("prompt"), 10*time.Second)
	if err != nil || string(m.Data) != "answer" {
		t.Fatalf("request: %v %v", m, err)
	}
	// Without the seed the server refuses the connection.
	cfg := busConfig(l, "router")
	cfg.NKeySeedFile = ""
	if _, err := bus.Connect(cfg, "rogue", slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("connected without credentials")
	}
}

// TestConnectWithTLS: NATS_TLS_CA_FILE verifies the server; the client certificate
// satisfies a server that verifies clients, and without it the server refuses.
func TestConnectWithTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, caKey := newCert(t, dir, "ca", nil, nil)
	newCert(t, dir, "server", ca, caKey)
	newCert(t, dir, "client", ca, caKey)
	tlsCfg, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
		CaFile: filepath.Join(dir, "ca.crt"), Verify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, TLSConfig: tlsCfg, TLSVerify: true, TLSTimeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)

	url := "tls://" + s.Addr().String()
	base := bus.Config{URL: url, ConnectTimeout: 5 * time.Second, TLSCAFile: filepath.Join(dir, "ca.crt")}
	withCert := base
	withCert.TLSCertFile, withCert.TLSKeyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	c, err := bus.Connect(withCert, "tls", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("connect with client certificate: %v", err)
	}
	if _, err := c.TLSConnectionState(); err != nil {
		t.Fatalf("connection is not TLS: %v", err)
	}
	c.Close()
	if _, err := bus.Connect(base, "tls", slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("connected without the client certificate the server requires")
	}
}

// newCert writes dir/name.crt and dir/name.key, signed by parent (self-signed CA when nil).
func newCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".crt"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, name+".key"), "EC PRIVATE KEY", keyDER)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// busConfig is the configuration of a service that connects to l as user name.
func busConfig(l *natstest.Locked, name string) bus.Config {
	return bus.Config{URL: l.ClientURL(), ConnectTimeout: 5 * time.Second, NKeySeedFile: l.SeedFile(name)}
}

// TestInboxPrefixAgrees: the inboxes bus gives a connection are the ones natsauth lets
// the user subscribe to.
func TestInboxPrefixAgrees(t *testing.T) {
	t.Parallel()
	const key = "UARBI26SW3D4S64NRBDYZKMMBL4U3IK57RVTLKG2DB2ETLL2H7FVNA4D"
	p, err := natsauth.Permissions(natsauth.User{Name: "router", Role: natsauth.Router, NKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if want := bus.InboxPrefix(key) + ".>"; !slices.Contains(p.Subscribe.Allow, want) {
		t.Fatalf("natsauth lets the user subscribe to %q, not to its inboxes %q", p.Subscribe.Allow, want)
	}
}
