package grpcbridge_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/grpcbridge"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/identity/identitytest"
)

// TestSplit: a connection goes to the side its client chose by ALPN, handshaken, with
// the client's verified certificate in its state; a client that never finishes its
// handshake reaches neither side; closing the split closes both.
func TestSplit(t *testing.T) {
	t.Parallel()
	pki := identitytest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	// A handshake timeout of seconds: the race-built handshake on loaded cores can take
	// hundreds of milliseconds, and the idle client below waits it out.
	split := grpcbridge.NewSplit(ln, pki.Source("server").GRPCServerTLS(), identity.GRPCProtocol, 2*time.Second, nil)
	done := make(chan struct{})
	go func() { defer close(done); split.Run() }()

	// Both sides accept for the whole test; each connection arrives on exactly one.
	type arrival struct {
		grpc bool
		conn net.Conn
	}
	arrivals := make(chan arrival)
	for _, side := range []struct {
		grpc bool
		ln   net.Listener
	}{{true, split.GRPC()}, {false, split.HTTP()}} {
		go func() {
			for {
				c, err := side.ln.Accept()
				if err != nil {
					return
				}
				arrivals <- arrival{side.grpc, c}
			}
		}()
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pki.CA().CertPEM())
	tests := []struct {
		name   string
		protos []string
		grpc   bool
		peer   bool
	}{
		{name: "gRPC first, as rpcclient offers", protos: []string{identity.GRPCProtocol, "h2"}, grpc: true, peer: true},
		{name: "h2 only, as grpcurl or net/http", protos: []string{"h2"}, peer: true},
		{name: "HTTP/1.1, as a probe", protos: []string{"http/1.1"}},
		{name: "no ALPN", protos: nil},
	}
	for _, tt := range tests {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "server", InsecureSkipVerify: true, NextProtos: tt.protos} //nolint:gosec // the test checks routing, not the server
		if tt.peer {
			cfg = pki.Source("client").ClientTLS("server")
			cfg.NextProtos = tt.protos
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		require.NoError(t, err, tt.name)
		var got arrival
		select {
		case got = <-arrivals:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the connection reached neither side", tt.name)
		}
		require.Equal(t, tt.grpc, got.grpc, "%s: the connection reached the other side", tt.name)
		tc, ok := got.conn.(*tls.Conn)
		require.True(t, ok, "%s: %T", tt.name, got.conn)
		state := tc.ConnectionState()
		require.True(t, state.HandshakeComplete, tt.name)
		require.Equal(t, tt.peer, len(state.VerifiedChains) > 0, tt.name)
		require.Equal(t, c.ConnectionState().NegotiatedProtocol, state.NegotiatedProtocol, tt.name)
		_ = c.Close()
		_ = got.conn.Close()
	}

	// A client that connects and sends nothing is dropped after the handshake timeout.
	idle, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	_, err = idle.Read(make([]byte, 1))
	require.Error(t, err, "the split closes a connection whose handshake never comes")
	_ = idle.Close()

	require.NoError(t, split.Close())
	<-done
	for _, side := range []net.Listener{split.GRPC(), split.HTTP()} {
		_, err := side.Accept()
		require.ErrorIs(t, err, net.ErrClosed)
	}
}
