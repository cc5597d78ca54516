package grpcbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// Split serves one TLS port with two servers: it completes each connection's handshake
// and hands the connection to GRPC when the client chose protocol by ALPN, to HTTP
// otherwise. Internal callers that offer the protocol reach grpc-go's server (with
// Handshaken credentials, serving a Bridge); every other client (h2, http/1.1: probes,
// scrapers, grpcurl, Connect clients) reaches net/http's, which serves the *tls.Conn as
// it would its own. A handshake that fails or takes longer than timeout closes the
// connection.
type Split struct {
	ln       net.Listener
	cfg      *tls.Config
	protocol string
	timeout  time.Duration
	logger   *slog.Logger
	grpc     *connQueue
	http     *connQueue
}

// DefaultHandshakeTimeout bounds a handshake when NewSplit is given no timeout: a client
// that opens a connection and sends nothing must not hold it forever.
const DefaultHandshakeTimeout = 10 * time.Second

// NewSplit splits ln's connections, handshaken with cfg, by protocol. Run accepts them;
// each side's listener closes when ln does. A timeout of zero is DefaultHandshakeTimeout.
func NewSplit(ln net.Listener, cfg *tls.Config, protocol string, timeout time.Duration, logger *slog.Logger) *Split {
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Split{
		ln: ln, cfg: cfg, protocol: protocol, timeout: timeout, logger: logger,
		grpc: newConnQueue(ln.Addr()), http: newConnQueue(ln.Addr()),
	}
}

// GRPC is the listener of the connections that chose the protocol.
func (s *Split) GRPC() net.Listener { return s.grpc }

// HTTP is the listener of the other connections, as *tls.Conn.
func (s *Split) HTTP() net.Listener { return s.http }

// Run accepts connections until the listener fails or is closed (Close), then closes
// both sides' listeners and returns.
func (s *Split) Run() {
	defer s.grpc.shut()
	defer s.http.shut()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil { // as net/http on a passing failure (EMFILE): back off and retry
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.logger.Warn("accept failed; retrying", "addr", s.ln.Addr().String(), "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go s.handshake(c)
	}
}

// Close stops accepting: Run returns and both listeners close.
func (s *Split) Close() error { return s.ln.Close() } //nolint:wrapcheck // the listener's own error

func (s *Split) handshake(c net.Conn) {
	tc := tls.Server(c, s.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		// As net/http's "TLS handshake error": a port scan or a TCP probe ends here too.
		s.logger.Debug("tls handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		_ = c.Close()
		return
	}
	q := s.http
	if tc.ConnectionState().NegotiatedProtocol == s.protocol {
		q = s.grpc
	}
	if !q.put(tc) {
		_ = tc.Close()
	}
}

// connQueue is a net.Listener whose connections come from a Split.
type connQueue struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// put hands c to Accept; false once the queue is closed.
func (q *connQueue) put(c net.Conn) bool {
	select {
	case <-q.done:
		return false
	default:
	}
	select {
	case q.conns <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// Close stops this side's Accept; the other side and the port stay open (a server's
// shutdown closes the listener it serves).
func (q *connQueue) Close() error {
	q.shut()
	return nil
}

func (q *connQueue) shut() { q.closed.Do(func() { close(q.done) }) }

func (q *connQueue) Addr() net.Addr { return q.addr }

// Handshaken are grpc-go server credentials for connections whose TLS handshake is done
// (a Split's): they add nothing to the connection and report its TLS state as the
// call's peer, as grpc-go's own TLS credentials do (credentials.TLSInfo), so the Bridge
// hands the verified client certificate to the handler as r.TLS.
func Handshaken() credentials.TransportCredentials { return handshaken{} }

type handshaken struct{}

// errNotTLS means a connection that reached Handshaken credentials is not TLS.
var errNotTLS = errors.New("grpcbridge: the connection is not a handshaken TLS connection")

func (handshaken) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil, nil, errNotTLS
	}
	return c, credentials.TLSInfo{
		State:          tc.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

func (handshaken) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("grpcbridge: Handshaken credentials serve; they do not dial")
}

func (handshaken) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (h handshaken) Clone() credentials.TransportCredentials { return h }

func (handshaken) OverrideServerName(string) error { return nil } //nolint:revive // grpc-go's deprecated interface method
