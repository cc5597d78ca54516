package rpcserver_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/libs/rpcclient"
	"github.com/parleyhq/parley/libs/rpcserver"
)

// The limits under test, short so that the tests are quick; every wait below is bounded
// by guard, far longer, and a test fails only when the guard is reached.
const (
	readTimeout = 300 * time.Millisecond
	idleTimeout = 300 * time.Millisecond
	maxStreams  = 7
	guard       = 15 * time.Second
)

// slowScrubber answers "slow" only after several read timeouts, and echoes streams.
type slowScrubber struct {
	piiv1connect.UnimplementedScrubberServiceHandler
}

func (slowScrubber) Scrub(ctx context.Context, req *piiv1.ScrubRequest) (*piiv1.ScrubResponse, error) {
	if strings.Join(req.GetTexts(), "") == "slow" {
		select {
		case <-time.After(3 * readTimeout):
		case <-ctx.Done():
			return nil, ctx.Err() //nolint:wrapcheck // the test asserts the context was not cancelled
		}
	}
	return &piiv1.ScrubResponse{Results: []*piiv1.ScrubResult{{Text: "ok"}}}, nil
}

func (slowScrubber) ScrubStream(_ context.Context, stream *connect.BidiStream[piiv1.ScrubStreamRequest, piiv1.ScrubStreamResponse]) error {
	for {
		msg, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err //nolint:wrapcheck // test handler
		}
		if err := stream.Send(&piiv1.ScrubStreamResponse{Text: msg.GetText()}); err != nil {
			return err //nolint:wrapcheck // test handler
		}
	}
}

func startLimited(t *testing.T) (*rpcserver.Server, *rpcclient.Factory) {
	t.Helper()
	var srv *rpcserver.Server
	var clients *rpcclient.Factory
	app := fxtest.New(t,
		platform.Module("test"),
		platform.Clients,
		fx.Replace(rpcserver.Config{
			Addr: "127.0.0.1:0", MaxMessageBytes: 1 << 20, ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: readTimeout, IdleTimeout: idleTimeout, MaxConcurrentStreams: maxStreams,
		},
			// Plaintext, so the tests can speak raw HTTP/1.1 and h2c frames; the limits are
			// the http.Server's and apply to the TLS listener alike.
			identity.Config{Mode: identity.ModeOff}),
		fx.Provide(
			rpcserver.AsRoute(func(mw *rpcserver.Middleware) rpcserver.Route {
				path, h := piiv1connect.NewScrubberServiceHandler(slowScrubber{}, mw.HandlerOption())
				return rpcserver.Route{Pattern: path, Handler: h, Service: piiv1connect.ScrubberServiceName}
			}),
		),
		fx.Populate(&srv, &clients),
	)
	app.RequireStart()
	t.Cleanup(app.RequireStop)
	return srv, clients
}

// readUntilClosed reads conn until the server closes it and returns what it sent; it
// fails the test if the guard passes first.
func readUntilClosed(t *testing.T, conn net.Conn) string {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(guard)))
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s; it sent %q", guard, b)
	}
	return string(b)
}

func dial(t *testing.T, srv *rpcserver.Server) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestSlowBodyIsCut: a client that sends headers and then trickles (here: stops) its
// body is answered and disconnected once RPC_READ_TIMEOUT passes, instead of holding a
// connection and a handler forever.
func TestSlowBodyIsCut(t *testing.T) {
	t.Parallel()
	srv, _ := startLimited(t)

	t.Run("http1", func(t *testing.T) {
		t.Parallel()
		conn := dial(t, srv)
		_, err := io.WriteString(conn, "POST /parley.pii.v1.ScrubberService/Scrub HTTP/1.1\r\nHost: x\r\n"+
			"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"texts\":")
		require.NoError(t, err)
		got := readUntilClosed(t, conn)
		require.True(t, strings.HasPrefix(got, "HTTP/1.1 "), "an answer, then the close: %q", got)
		require.NotContains(t, got, "HTTP/1.1 200")
	})

	t.Run("h2c", func(t *testing.T) {
		t.Parallel()
		pr, pw := io.Pipe()
		t.Cleanup(func() { _ = pw.Close() })
		go func() { _, _ = io.WriteString(pw, `{"texts":`) }() // and nothing more
		ctx, cancel := context.WithTimeout(t.Context(), guard)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL()+"/parley.pii.v1.ScrubberService/Scrub", pr)
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		res, err := h2cClient().Do(req)
		require.NoError(t, ctx.Err(), "the server held the stream for %s", guard)
		if err == nil {
			_ = res.Body.Close()
			require.NotEqual(t, http.StatusOK, res.StatusCode)
		}
	})

	t.Run("a slow handler is not a slow body", func(t *testing.T) {
		t.Parallel()
		// The deadline is lifted once the body has arrived: over HTTP/1.1, in both protocols
		// it carries, and over HTTP/2.
		for _, opts := range [][]connect.ClientOption{nil, {connect.WithGRPCWeb()}} {
			client := piiv1connect.NewScrubberServiceClient(http.DefaultClient, srv.URL(), opts...)
			res, err := client.Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"slow"}})
			require.NoError(t, err)
			require.Equal(t, "ok", res.GetResults()[0].GetText())
		}
		client := piiv1connect.NewScrubberServiceClient(h2cClient(), srv.URL(), connect.WithGRPC())
		res, err := client.Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"slow"}})
		require.NoError(t, err)
		require.Equal(t, "ok", res.GetResults()[0].GetText())
	})

	t.Run("a stream outlives the read timeout", func(t *testing.T) {
		t.Parallel()
		_, clients := startLimited(t)
		client := piiv1connect.NewScrubberServiceClient(clients.HTTPClient("test"), srv.URL(), connect.WithGRPC())
		stream, err := client.ScrubStream(t.Context())
		require.NoError(t, err)
		for _, text := range []string{"one", "two"} {
			require.NoError(t, stream.Send(&piiv1.ScrubStreamRequest{Text: text}))
			msg, err := stream.Receive()
			require.NoError(t, err)
			require.Equal(t, text, msg.GetText())
			idleClient(2 * readTimeout) // the stream idles past the read timeout on purpose
		}
		require.NoError(t, stream.CloseRequest())
		require.NoError(t, stream.CloseResponse())
	})
}

// TestIdleConnectionIsClosed: a keep-alive connection with nothing in flight is closed
// once RPC_IDLE_TIMEOUT passes, over HTTP/1.1 and HTTP/2.
func TestIdleConnectionIsClosed(t *testing.T) {
	t.Parallel()
	srv, _ := startLimited(t)

	t.Run("http1 after a request", func(t *testing.T) {
		t.Parallel()
		conn := dial(t, srv)
		_, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode)
		_ = res.Body.Close()
		readUntilClosed(t, conn)
	})

	t.Run("h2c", func(t *testing.T) {
		t.Parallel()
		conn := dial(t, srv)
		_, err := io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		require.NoError(t, err)
		_, err = conn.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0}) // an empty SETTINGS frame
		require.NoError(t, err)
		frames := readUntilClosed(t, conn)
		settings := serverSettings(t, []byte(frames))
		require.Equal(t, uint32(maxStreams), settings[0x3], "SETTINGS_MAX_CONCURRENT_STREAMS")
		require.Contains(t, frameTypes(t, []byte(frames)), byte(0x7), "a GOAWAY before the close")
	})
}

// serverSettings returns the values of the server's first SETTINGS frame.
func serverSettings(t *testing.T, b []byte) map[uint16]uint32 {
	t.Helper()
	for len(b) >= 9 {
		n := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		typ, flags := b[3], b[4]
		require.GreaterOrEqual(t, len(b), 9+n)
		payload := b[9 : 9+n]
		if typ == 0x4 && flags&0x1 == 0 {
			out := map[uint16]uint32{}
			for i := 0; i+6 <= len(payload); i += 6 {
				out[binary.BigEndian.Uint16(payload[i:])] = binary.BigEndian.Uint32(payload[i+2:])
			}
			return out
		}
		b = b[9+n:]
	}
	t.Fatal("no SETTINGS frame from the server")
	return nil
}

func frameTypes(t *testing.T, b []byte) []byte {
	t.Helper()
	var types []byte
	for len(b) >= 9 {
		n := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		types = append(types, b[3])
		if len(b) < 9+n {
			break
		}
		b = b[9+n:]
	}
	return types
}

func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}
