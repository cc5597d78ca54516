package rpcserver

import (
	"bufio"
	"io"
	"net"
)

// connReadBuffer is the read buffer of a cleartext connection: a few HTTP/2 frames of a
// unary call (WINDOW_UPDATE, PING, HEADERS, DATA) arrive together and fit in it.
const connReadBuffer = 4 << 10

// bufferedListener hands out connections whose reads go through a buffer. net/http's
// HTTP/2 server reads a cleartext connection's frames straight from the socket, nine
// bytes of frame header and then the payload, one read system call each; a unary gRPC
// call's four frames cost eight reads. Through the buffer they cost one. A TLS
// connection needs none: crypto/tls reads whole records.
type bufferedListener struct{ net.Listener }

func (l bufferedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, connReadBuffer)}, nil
}

// bufferedConn is a net.Conn whose Read drains a buffer filled by one read of whatever the
// socket holds. Writes and the rest go to the connection itself.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite lets net/http half-close an HTTP/1.1 connection before closing it, as it
// does on a *net.TCPConn.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps the socket's own ReadFrom (sendfile, splice) for HTTP/1.1 bodies copied
// from a file: it writes to the connection and does not touch the read buffer.
func (c *bufferedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
