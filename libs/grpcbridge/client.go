package grpcbridge

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Client carries a Connect client's gRPC calls (connect.WithGRPC()) on grpc-go's client
// transport: it is the client's connect.HTTPClient. net/http's HTTP/2 client writes and
// flushes a call's frames one by one and hands each answer to a reader goroutine; grpc-go
// writes a call's frames in one batch from its connection's writer. The Connect client
// keeps its interceptors, codec, limits and errors: Client turns each request into a
// grpc-go stream (headers as metadata, the gRPC-framed body as messages, the deadline as
// the stream's) and the stream back into a response (headers, a gRPC-framed body, and the
// status in the trailers, as a gRPC server writes them).
type Client struct {
	dial func(host string) (*grpc.ClientConn, error)
	pool mem.BufferPool
	// desc is every call's shape: unary, client-, server- and bidi-streaming calls differ
	// only in how many messages the Connect client sends and reads.
	desc  grpc.StreamDesc
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewClient calls each host ("host:port" of the request's URL) over the connection dial
// builds for it, once.
func NewClient(dial func(host string) (*grpc.ClientConn, error)) *Client {
	return &Client{
		dial: dial, pool: mem.DefaultBufferPool(), conns: map[string]*grpc.ClientConn{},
		desc: grpc.StreamDesc{ClientStreams: true, ServerStreams: true},
	}
}

// Close closes every connection; calls made afterwards dial again.
func (c *Client) Close() {
	c.mu.Lock()
	conns := c.conns
	c.conns = map[string]*grpc.ClientConn{}
	c.mu.Unlock()
	for _, cc := range conns {
		_ = cc.Close()
	}
}

func (c *Client) conn(host string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[host]; ok {
		return cc, nil
	}
	cc, err := c.dial(host)
	if err != nil {
		return nil, err
	}
	c.conns[host] = cc
	return cc, nil
}

// Do makes req's call and returns its answer once the answer's headers have come (or the
// call has failed: its status is then in the trailers, as in a trailers-only answer).
// A request that is not gRPC's fails.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	contentType := req.Header.Get("Content-Type")
	subtype, ok := strings.CutPrefix(contentType, "application/grpc")
	if !ok || (subtype != "" && subtype[0] != '+') || strings.HasPrefix(subtype, "+web") {
		closeBody(req)
		return nil, fmt.Errorf("grpcbridge: the request's content type %q is not gRPC's: the Connect client needs connect.WithGRPC()", contentType)
	}
	subtype = strings.TrimPrefix(subtype, "+")
	cc, err := c.conn(req.URL.Host)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	ctx, cancel := context.WithCancel(req.Context())
	ctx = metadata.NewOutgoingContext(ctx, toMetadata(req.Header, false))
	call := &clientCall{cancel: cancel}
	resp := &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/2.0", ProtoMajor: 2,
		Header:        http.Header{"Content-Type": {contentType}},
		Trailer:       make(http.Header, 3),
		ContentLength: -1,
		Request:       req,
	}
	call.trailer = resp.Trailer
	resp.Body = call
	cs, err := cc.NewStream(ctx, &c.desc, req.URL.Path, grpc.ForceCodecV2(callCodec{}), grpc.CallContentSubtype(subtype))
	if err != nil {
		closeBody(req)
		call.end(err)
		return resp, nil
	}
	call.stream = cs
	call.body = messageBody{stream: cs}
	switch {
	case req.Body == nil || req.Body == http.NoBody:
		_ = cs.CloseSend()
	case req.ContentLength > 0: // a unary or server-streaming request, whole already
		call.send(req.Body, c.pool)
	default: // a streaming request: its messages come as the caller writes them
		go call.send(req.Body, c.pool)
	}
	if md, err := cs.Header(); err == nil {
		addMetadata(resp.Header, md)
	}
	return resp, nil
}

// addMetadata adds md to h as a gRPC client reads it from HTTP/2 headers: without what
// belongs to the protocol, -bin values base64-encoded.
func addMetadata(h http.Header, md metadata.MD) {
	for k, vs := range md {
		if reserved(k) {
			continue
		}
		ck := http.CanonicalHeaderKey(k)
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				v = base64.RawStdEncoding.EncodeToString([]byte(v))
			}
			h[ck] = append(h[ck], v)
		}
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// clientCall is one call: its answer's body, whose end writes the status into the trailers.
type clientCall struct {
	stream  grpc.ClientStream
	cancel  context.CancelFunc
	body    messageBody
	trailer http.Header
	ended   bool
	mu      sync.Mutex
	sendErr error // why the request could not be sent (it cancelled the call)
}

// send sends the request's messages, then closes the sending side. A request that cannot
// be read or framed cancels the call; its reason becomes the call's status.
func (c *clientCall) send(body io.ReadCloser, pool mem.BufferPool) {
	defer func() { _ = body.Close() }()
	var prefix [5]byte
	for {
		if _, err := io.ReadFull(body, prefix[:]); err != nil {
			if errors.Is(err, io.EOF) {
				_ = c.stream.CloseSend()
				return
			}
			c.fail(status.Errorf(codes.Internal, "grpcbridge: reading the request: %v", err))
			return
		}
		if prefix[0] != 0 {
			c.fail(status.Errorf(codes.Internal, "grpcbridge: a request message with flags %#x (compressed requests are grpc-go's to make)", prefix[0]))
			return
		}
		buf, data := newMessage(pool, int(binary.BigEndian.Uint32(prefix[1:])))
		if _, err := io.ReadFull(body, buf); err != nil {
			data.Free()
			c.fail(status.Errorf(codes.Internal, "grpcbridge: reading the request: %v", err))
			return
		}
		// io.EOF: the call has ended (the server answered); its status comes with the answer.
		if err := c.stream.SendMsg(&outMessage{data: data}); err != nil {
			return
		}
	}
}

func (c *clientCall) fail(err error) {
	c.mu.Lock()
	c.sendErr = err
	c.mu.Unlock()
	c.cancel()
}

// Read reads the answer's messages gRPC-framed; at their end it writes the call's status
// into the trailers and reports io.EOF.
func (c *clientCall) Read(p []byte) (int, error) {
	if c.ended {
		return 0, io.EOF
	}
	n, err := c.body.Read(p)
	if err != nil {
		c.end(err)
		return n, io.EOF
	}
	return n, nil
}

// Close ends the call: a call still running is cancelled.
func (c *clientCall) Close() error {
	c.cancel()
	return nil
}

// end writes the call's trailers and status (err: io.EOF for OK, else the stream's error).
func (c *clientCall) end(err error) {
	c.ended = true
	c.cancel()
	c.mu.Lock()
	if c.sendErr != nil {
		err = c.sendErr
	}
	c.mu.Unlock()
	if c.stream != nil {
		addMetadata(c.trailer, c.stream.Trailer())
	}
	if errors.Is(err, io.EOF) {
		c.trailer["Grpc-Status"] = []string{"0"}
		return
	}
	st := status.Convert(err)
	c.trailer["Grpc-Status"] = []string{strconv.Itoa(int(st.Code()))}
	if msg := st.Message(); msg != "" {
		c.trailer["Grpc-Message"] = []string{encodeMessage(msg)}
	}
	if len(st.Proto().GetDetails()) > 0 {
		if b, err := proto.Marshal(st.Proto()); err == nil {
			c.trailer["Grpc-Status-Details-Bin"] = []string{base64.RawStdEncoding.EncodeToString(b)}
		}
	}
}

// encodeMessage percent-encodes grpc-message as the gRPC protocol asks: every byte outside
// printable ASCII, and '%'.
func encodeMessage(s string) string {
	clean := true
	for i := range len(s) {
		if s[i] < ' ' || s[i] > '~' || s[i] == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) * 2)
	for i := range len(s) {
		if c := s[i]; c < ' ' || c > '~' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
