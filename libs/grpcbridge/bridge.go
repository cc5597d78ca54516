// Package grpcbridge serves the gRPC routes of an http.Handler on grpc-go's server.
//
// net/http's HTTP/2 server writes each frame of a handler's answer and waits for it before
// the handler writes the next (four writes for a unary gRPC answer), and runs each request
// on a fresh goroutine whose stack grows on every call. grpc-go's transport batches a
// stream's frames into one write and can reuse its goroutines. A Bridge hands every gRPC
// call grpc-go accepts to the same http.Handler the HTTP server runs (the same routes,
// guards, interceptors and limits), with the call's metadata as headers and its messages
// as a gRPC-framed body, and turns what the handler writes back into grpc-go's headers,
// messages, trailers and status. An address served this way speaks gRPC only.
//
// The package bridges the other way too: a Client carries a Connect client's gRPC calls on
// grpc-go's client transport. A Split shares one TLS port between grpc-go's server and
// net/http's, by the protocol the client chose by ALPN.
package grpcbridge

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"
)

// Flow-control windows of the grpc-go transports at both ends of a bridged call (a
// Bridge's server, and the client connections that rpcclient dials for a Client): a
// stream may have StreamWindow bytes in flight unread, a connection ConnWindow, as
// net/http's HTTP/2 server allows (1 MiB a stream) with room for several streams.
const (
	StreamWindow = 1 << 20
	ConnWindow   = 4 << 20
)

// Options configure a Bridge.
type Options struct {
	// ReadTimeout bounds how long a call may take to send its whole request, counted from
	// its start (RPC_READ_TIMEOUT), as the HTTP server's body deadline does. Methods in
	// StreamingRequests are exempt. Zero: no bound.
	ReadTimeout time.Duration
	// StreamingRequests are the full method names ("/pkg.Service/Method") of the client-
	// and bidi-streaming methods, whose requests last as long as the call.
	StreamingRequests map[string]bool
	Logger            *slog.Logger
}

// Bridge adapts grpc-go streams to an http.Handler.
type Bridge struct {
	next   http.Handler
	opts   Options
	pool   mem.BufferPool
	logger *slog.Logger
}

// New bridges grpc-go's calls to next.
func New(next http.Handler, opts Options) *Bridge {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Bridge{next: next, opts: opts, pool: mem.DefaultBufferPool(), logger: logger}
}

// ServerOptions are the grpc.ServerOptions that route every call through the bridge: a
// codec passing messages through unparsed, the handler of every method, and the request
// deadline.
func (b *Bridge) ServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.UnknownServiceHandler(b.handle),
		// Fixed flow-control windows: grpc-go otherwise estimates the link's bandwidth with
		// a PING that the peer answers after nearly every message received, a write and a
		// read at each end that a small call pays for beside its own.
		grpc.InitialWindowSize(StreamWindow),
		grpc.InitialConnWindowSize(ConnWindow),
	}
	if b.opts.ReadTimeout > 0 {
		opts = append(opts, grpc.InTapHandle(b.tap))
	}
	return opts
}

// tap gives a unary or server-streaming call's stream a request deadline (see bodyCtx).
func (b *Bridge) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if b.opts.StreamingRequests[info.FullMethodName] {
		return ctx, nil
	}
	return newBodyCtx(ctx, b.opts.ReadTimeout), nil
}

// handle serves one call of any method through the handler.
func (b *Bridge) handle(_ any, ss grpc.ServerStream) (err error) {
	ctx := ss.Context()
	body := &messageBody{stream: ss}
	// The handler runs on the call's own context: the stream's ends when the request
	// is late, and is no business of the handler's once the request has arrived.
	reqCtx := ctx
	if bc, ok := ctx.Value(bodyCtxKey{}).(*bodyCtx); ok {
		reqCtx, body.arrived = bc.Context, bc.arrived
		defer bc.arrived()
	}
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "grpcbridge: no method on the stream")
	}
	req := newRequest(ctx, reqCtx, method, body)
	w := &responseWriter{ss: ss, pool: b.pool, header: make(http.Header, 4)}
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
				b.logger.ErrorContext(ctx, "handler panic", "path", method, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	b.next.ServeHTTP(w, req)
	// A failed receive (a message over the size limit, a late request, a cancelled call)
	// has had its status written by grpc-go already; this one is then dropped.
	return w.finish().Err()
}

// newRequest is the HTTP/2 request a gRPC client would have sent for this call, on
// reqCtx; ctx is the stream's.
func newRequest(ctx, reqCtx context.Context, method string, body *messageBody) *http.Request {
	md, _ := metadata.FromIncomingContext(reqCtx)
	h := make(http.Header, len(md)+2)
	host := ""
	for k, vs := range md {
		if k == "" || k[0] == ':' {
			if k == ":authority" && len(vs) > 0 {
				host = vs[0]
			}
			continue
		}
		if k == "grpc-accept-encoding" {
			continue // grpc-go compresses the answer as the client asked; the handler must not
		}
		ck := http.CanonicalHeaderKey(k)
		bin := strings.HasSuffix(k, "-bin")
		for _, v := range vs {
			if bin {
				v = base64.RawStdEncoding.EncodeToString([]byte(v))
			}
			h[ck] = append(h[ck], v)
		}
	}
	ct := "application/grpc"
	if s, ok := grpc.ServerTransportStreamFromContext(ctx).(interface{ ContentSubtype() string }); ok && s.ContentSubtype() != "" {
		ct += "+" + s.ContentSubtype()
	}
	h["Content-Type"] = []string{ct}
	h["Te"] = []string{"trailers"}
	r := &http.Request{
		Method:        http.MethodPost,
		URL:           &url.URL{Path: method},
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		Body:          body,
		ContentLength: -1,
		Host:          host,
		RequestURI:    method,
	}
	if p, ok := peer.FromContext(ctx); ok {
		if p.Addr != nil {
			r.RemoteAddr = p.Addr.String()
		}
		// The connection's TLS state, as net/http gives it: the handler's identity checks
		// read the verified client certificate from it.
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			r.TLS = &ti.State
		}
	}
	return r.WithContext(reqCtx)
}

// messageBody is a stream's received messages as a gRPC-framed body, received one message
// at a time as the reader reads: a call's request on the server, its answer on the client.
type messageBody struct {
	stream  interface{ RecvMsg(m any) error }
	arrived func() // lifts the request deadline
	msg     inMessage
	prefix  [5]byte
	off, n  int
	err     error
}

func (b *messageBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.off == b.n {
		if err := b.stream.RecvMsg(&b.msg); err != nil {
			if errors.Is(err, io.EOF) && b.arrived != nil {
				b.arrived()
			}
			b.err = err
			return 0, err //nolint:wrapcheck // io.EOF must stay io.EOF; a status stays a status
		}
		b.prefix[0] = 0
		binary.BigEndian.PutUint32(b.prefix[1:], uint32(len(b.msg.b))) //nolint:gosec // bounded by the server's MaxRecvMsgSize
		b.off, b.n = 0, 5+len(b.msg.b)
	}
	n := 0
	if b.off < 5 {
		n = copy(p, b.prefix[b.off:])
		b.off += n
	}
	if n < len(p) && b.off >= 5 {
		m := copy(p[n:], b.msg.b[b.off-5:])
		b.off += m
		n += m
	}
	return n, nil
}

// Close ends the body: later reads fail, as a closed HTTP request body's do.
func (b *messageBody) Close() error {
	if b.err == nil {
		b.err = http.ErrBodyReadAfterClose
	}
	return nil
}

// responseWriter turns the handler's gRPC answer into grpc-go's: the headers on the first
// write, each complete message as it is written, the trailers and status at the end.
type responseWriter struct {
	ss        grpc.ServerStream
	pool      mem.BufferPool
	header    http.Header
	committed bool
	// headerSent: the headers have gone out on their own (a flush before any message).
	headerSent bool
	// notGRPC: the handler answered with an HTTP status or content type that is not gRPC's;
	// text keeps the start of its body for the error message.
	notGRPC    bool
	httpStatus int
	text       []byte
	// headerStatus is a trailers-only answer's status, written among the headers.
	headerStatus http.Header
	partial      []byte
	err          error
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.committed {
		return
	}
	w.committed = true
	w.httpStatus = code
	if code != http.StatusOK || !strings.HasPrefix(w.header.Get("Content-Type"), "application/grpc") ||
		strings.HasPrefix(w.header.Get("Content-Type"), "application/grpc-web") {
		w.notGRPC = true
		return
	}
	if w.header.Get("Grpc-Status") != "" {
		w.headerStatus = w.header.Clone()
	}
	if err := w.ss.SetHeader(toMetadata(w.header, false)); err != nil {
		w.err = err
	}
}

// maxErrorText bounds how much of a non-gRPC answer becomes the error message.
const maxErrorText = 512

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.committed {
		w.WriteHeader(http.StatusOK)
	}
	if w.notGRPC {
		if room := maxErrorText - len(w.text); room > 0 {
			w.text = append(w.text, p[:min(room, len(p))]...)
		}
		return len(p), nil
	}
	if w.err != nil {
		return 0, w.err
	}
	buf := p
	if len(w.partial) > 0 {
		w.partial = append(w.partial, p...)
		buf = w.partial
	}
	for len(buf) >= 5 {
		n := int(binary.BigEndian.Uint32(buf[1:5]))
		if len(buf) < 5+n {
			break
		}
		if buf[0] != 0 {
			w.err = status.Errorf(codes.Internal, "grpcbridge: the handler wrote a message with flags %#x (compressed answers are grpc-go's to make)", buf[0])
			return 0, w.err
		}
		if err := w.ss.SendMsg(&outMessage{data: w.copyMessage(buf[5 : 5+n])}); err != nil {
			w.err = err
			return 0, err //nolint:wrapcheck // the stream's status, as grpc-go reports it
		}
		buf = buf[5+n:]
	}
	w.partial = append(w.partial[:0], buf...)
	return len(p), nil
}

// copyMessage copies an answer's message into a buffer grpc-go frees once written.
func (w *responseWriter) copyMessage(b []byte) mem.BufferSlice {
	buf, data := newMessage(w.pool, len(b))
	copy(buf, b)
	return data
}

// newMessage is a buffer of n bytes for a message grpc-go sends and then frees (data):
// taken from pool when it is large enough to be worth pooling.
func newMessage(pool mem.BufferPool, n int) (buf []byte, data mem.BufferSlice) {
	if mem.IsBelowBufferPoolingThreshold(n) {
		buf = make([]byte, n)
		return buf, mem.BufferSlice{mem.SliceBuffer(buf)}
	}
	b := pool.Get(n)
	return *b, mem.BufferSlice{mem.NewBuffer(b, pool)}
}

// Flush sends the headers if nothing has been sent yet: a streaming answer's handler
// flushes them before its first message.
func (w *responseWriter) Flush() {
	if !w.committed {
		w.WriteHeader(http.StatusOK)
	}
	if w.notGRPC || w.headerSent || w.err != nil || w.headerStatus != nil {
		return
	}
	w.headerSent = true
	_ = w.ss.SendHeader(nil) // a failure shows on the next message
}

// finish is the call's status: the handler's trailers become the stream's.
func (w *responseWriter) finish() *status.Status {
	if !w.committed {
		w.WriteHeader(http.StatusOK)
	}
	if w.notGRPC {
		return httpStatus(w.httpStatus, w.header.Get("Content-Type"), w.text)
	}
	if w.err != nil {
		if s, ok := status.FromError(w.err); ok {
			return s
		}
		return status.New(codes.Internal, w.err.Error())
	}
	if len(w.partial) > 0 {
		return status.New(codes.Internal, "grpcbridge: the handler's answer ended inside a message")
	}
	trailer := make(http.Header, 4)
	for k, vs := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			ck := http.CanonicalHeaderKey(name)
			trailer[ck] = append(trailer[ck], vs...)
		}
	}
	for _, declared := range w.header.Values("Trailer") {
		for name := range strings.SplitSeq(declared, ",") {
			ck := http.CanonicalHeaderKey(strings.TrimSpace(name))
			if vs, ok := w.header[ck]; ok {
				trailer[ck] = append(trailer[ck], vs...)
			}
		}
	}
	if trailer.Get("Grpc-Status") == "" && w.headerStatus != nil {
		trailer = w.headerStatus // trailers-only: the status came with the headers
	}
	if md := toMetadata(trailer, true); len(md) > 0 {
		w.ss.SetTrailer(md)
	}
	return grpcStatus(trailer)
}

// toMetadata is h as gRPC metadata, without what grpc-go writes itself; -bin values are
// decoded (grpc-go encodes them again). With trailers, the status fields are left out
// too (they become the stream's status).
func toMetadata(h http.Header, trailers bool) metadata.MD {
	md := make(metadata.MD, len(h))
	for k, vs := range h {
		lk := strings.ToLower(k)
		if reserved(lk) || (!trailers && strings.HasPrefix(k, http.TrailerPrefix)) {
			continue
		}
		bin := strings.HasSuffix(lk, "-bin")
		out := make([]string, 0, len(vs))
		for _, v := range vs {
			if bin {
				raw, err := decodeBinary(v)
				if err != nil {
					continue
				}
				v = string(raw)
			}
			out = append(out, v)
		}
		md[lk] = out
	}
	return md
}

// reserved reports the headers grpc-go writes or that belong to HTTP, not to a call.
func reserved(k string) bool {
	switch k {
	case "content-type", "content-length", "date", "te", "trailer", "connection", "transfer-encoding",
		"keep-alive", "upgrade", "user-agent",
		"grpc-status", "grpc-message", "grpc-status-details-bin", "grpc-encoding", "grpc-accept-encoding", "grpc-timeout":
		return true
	}
	return false
}

func decodeBinary(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v) //nolint:wrapcheck // only tested for failure
	}
	return base64.RawStdEncoding.DecodeString(v) //nolint:wrapcheck // only tested for failure
}

// grpcStatus reads the status from a gRPC answer's trailers: grpc-status-details-bin
// when present (the code, the message and the details), else grpc-status and grpc-message.
func grpcStatus(t http.Header) *status.Status {
	raw := t.Get("Grpc-Status")
	if raw == "" {
		return status.New(codes.Internal, "grpcbridge: the handler's answer has no grpc-status")
	}
	code, err := strconv.ParseUint(raw, 10, 32)
	if err != nil {
		return status.Newf(codes.Internal, "grpcbridge: the handler's answer has a malformed grpc-status %q", raw)
	}
	if details := t.Get("Grpc-Status-Details-Bin"); details != "" && code != 0 {
		if b, err := decodeBinary(details); err == nil {
			var p spb.Status
			if proto.Unmarshal(b, &p) == nil && p.GetCode() == int32(code) { //nolint:gosec // parsed with bitSize 32
				return status.FromProto(&p)
			}
		}
	}
	return status.New(codes.Code(code), decodeMessage(t.Get("Grpc-Message"))) //nolint:gosec // parsed with bitSize 32
}

// decodeMessage undoes grpc-message's percent-encoding; a malformed escape is kept as is.
func decodeMessage(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// httpStatus maps an answer that is not gRPC's, as a gRPC client maps it
// (doc/http-grpc-status-mapping.md of the gRPC project), with its text as the message.
func httpStatus(code int, contentType string, text []byte) *status.Status {
	c := codes.Unknown
	switch code {
	case http.StatusBadRequest:
		c = codes.Internal
	case http.StatusUnauthorized:
		c = codes.Unauthenticated
	case http.StatusForbidden:
		c = codes.PermissionDenied
	case http.StatusNotFound:
		c = codes.Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		c = codes.Unavailable
	case http.StatusOK:
		return status.Newf(codes.Internal, "unexpected content-type %q", contentType)
	}
	msg := strings.TrimSpace(string(text))
	if msg == "" {
		msg = http.StatusText(code)
	}
	return status.Newf(c, "HTTP %d: %s", code, msg)
}
