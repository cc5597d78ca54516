package rpcserver

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/stretchr/testify/require"
)

// countingListener counts the Read calls made on the connections it accepts: each is a
// read system call or a wait for one.
type countingListener struct {
	net.Listener
	reads *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, reads: l.reads}, nil
}

type countingConn struct {
	net.Conn
	reads *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

// TestBufferedListenerReadsPerCall: a unary gRPC call over cleartext HTTP/2 sends the
// server at least two frames (HEADERS, DATA), which net/http's HTTP/2 server reads nine
// bytes of header and then the payload at a time. Straight from the socket that is at
// least four reads per call; through bufferedListener the frames a client sends together
// come in one read: Go's client flushes a unary call's frames in one write, so a call
// costs one read, two when a loaded machine splits the burst.
func TestBufferedListenerReadsPerCall(t *testing.T) {
	t.Parallel()
	const calls = 200
	tests := []struct {
		name     string
		buffered bool
		check    func(t *testing.T, perCall float64)
	}{
		{name: "socket", check: func(t *testing.T, perCall float64) {
			require.GreaterOrEqual(t, perCall, 4.0, "two frames, each a header and a payload read")
		}},
		{name: "buffered", buffered: true, check: func(t *testing.T, perCall float64) {
			require.LessOrEqual(t, perCall, 2.0, "one read per burst the client writes")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reads := new(atomic.Int64)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			var served net.Listener = countingListener{Listener: ln, reads: reads}
			if tt.buffered {
				served = bufferedListener{served}
			}
			mux := http.NewServeMux()
			mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker("parley.test.v1.Test")))
			protocols := new(http.Protocols)
			protocols.SetHTTP1(true)
			protocols.SetUnencryptedHTTP2(true)
			srv := &http.Server{Handler: mux, Protocols: protocols}
			go func() { _ = srv.Serve(served) }()
			t.Cleanup(func() { _ = srv.Close() })

			clientProtocols := new(http.Protocols)
			clientProtocols.SetUnencryptedHTTP2(true)
			httpClient := &http.Client{Transport: &http.Transport{Protocols: clientProtocols}}
			client := grpchealth.NewClient(httpClient, "http://"+ln.Addr().String(), connect.WithGRPC())
			call := func() {
				res, err := client.Check(context.Background(), &grpchealth.CheckRequest{Service: "parley.test.v1.Test"})
				require.NoError(t, err)
				require.Equal(t, grpchealth.StatusServing, res.Status)
			}
			call() // the connection's preface and settings
			before := reads.Load()
			for range calls {
				call()
			}
			perCall := float64(reads.Load()-before) / calls
			t.Logf("%s: %.2f reads per call", tt.name, perCall)
			tt.check(t, perCall)
		})
	}
}
