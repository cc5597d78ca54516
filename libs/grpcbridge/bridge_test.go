package grpcbridge_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/parleyhq/parley/libs/grpcbridge"
)

const (
	unary  = "/parley.test.v1.Echo/Unary"
	server = "/parley.test.v1.Echo/Server"
	bidi   = "/parley.test.v1.Echo/Bidi"
)

// echo is a Connect service written as the router's are: it echoes what it is sent, with
// headers, trailers and errors chosen by the text.
func echoMux(t *testing.T) *http.ServeMux {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(unary, connect.NewUnaryHandler(unary, func(ctx context.Context, req *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
		text := req.Msg.GetValue()
		switch text {
		case "fail":
			e := connect.NewError(connect.CodeInvalidArgument, errors.New("bad text: é 100%"))
			e.Meta().Set("x-error", "meta")
			d, err := connect.NewErrorDetail(wrapperspb.String("detail"))
			require.NoError(t, err)
			e.AddDetail(d)
			return nil, e
		case "panic":
			panic("handler panic")
		case "deadline":
			_, ok := ctx.Deadline()
			text = "deadline " + strconv.FormatBool(ok)
		case "headers":
			bin, err := connect.DecodeBinaryHeader(req.Header().Get("X-In-Bin"))
			require.NoError(t, err)
			host, _, err := net.SplitHostPort(req.Peer().Addr)
			require.NoError(t, err)
			text = req.Header().Get("X-In") + "|" + string(bin) + "|" + req.Header().Get("Content-Type") + "|" + host
		}
		res := connect.NewResponse(wrapperspb.String(text))
		res.Header().Set("x-h", "header")
		res.Header().Set("x-h-bin", connect.EncodeBinaryHeader([]byte{0, 1, 2}))
		res.Trailer().Set("x-t", "trailer")
		return res, nil
	}))
	mux.Handle(server, connect.NewServerStreamHandler(server, func(_ context.Context, req *connect.Request[wrapperspb.StringValue], s *connect.ServerStream[wrapperspb.StringValue]) error {
		n, fail, _ := strings.Cut(req.Msg.GetValue(), " ")
		count, err := strconv.Atoi(n)
		if err != nil {
			return connect.NewError(connect.CodeInvalidArgument, err)
		}
		s.ResponseHeader().Set("x-h", "stream")
		for i := range count {
			if err := s.Send(wrapperspb.String(strconv.Itoa(i))); err != nil {
				return err
			}
		}
		if fail != "" {
			return connect.NewError(connect.CodeAborted, errors.New(fail))
		}
		return nil
	}))
	mux.Handle(bidi, connect.NewBidiStreamHandler(bidi, func(_ context.Context, s *connect.BidiStream[wrapperspb.StringValue, wrapperspb.StringValue]) error {
		for {
			m, err := s.Receive()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := s.Send(wrapperspb.String(strings.ToUpper(m.GetValue()))); err != nil {
				return err
			}
		}
	}))
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker("parley.test.v1.Echo")))
	mux.HandleFunc("/parley.test.v1.Echo/Refused", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "missing API token", http.StatusUnauthorized)
	})
	return mux
}

// serve runs handler on grpc-go through a Bridge and returns a client connection to it.
func serve(t *testing.T, handler http.Handler, opts grpcbridge.Options, serverOpts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	b := grpcbridge.New(handler, opts)
	srv := grpc.NewServer(append(b.ServerOptions(), serverOpts...)...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestUnary(t *testing.T) {
	t.Parallel()
	conn := serve(t, echoMux(t), grpcbridge.Options{StreamingRequests: map[string]bool{bidi: true}}, grpc.MaxRecvMsgSize(1024))
	tests := []struct {
		name     string
		text     string
		ctx      func(context.Context) (context.Context, context.CancelFunc)
		callOpts []grpc.CallOption
		method   string
		want     string
		code     codes.Code
		check    func(t *testing.T, st *status.Status, header, trailer metadata.MD)
	}{
		{name: "answer, headers and trailers", text: "hello", want: "hello", check: func(t *testing.T, _ *status.Status, header, trailer metadata.MD) {
			require.Equal(t, []string{"header"}, header.Get("x-h"))
			require.Equal(t, []string{"\x00\x01\x02"}, header.Get("x-h-bin"), "binary headers arrive decoded, as grpc-go encoded them")
			require.Equal(t, []string{"trailer"}, trailer.Get("x-t"))
			require.Empty(t, trailer.Get("grpc-status"), "the status is the call's, not metadata")
		}},
		{name: "the handler sees the call's metadata", text: "headers",
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return metadata.AppendToOutgoingContext(ctx, "x-in", "in", "x-in-bin", "b\x00n"), func() {}
			},
			want: "in|b\x00n|application/grpc|127.0.0.1"},
		{name: "the call's deadline reaches the handler", text: "deadline",
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(ctx, time.Minute)
			},
			want: "deadline true"},
		{name: "gzip-compressed call", text: strings.Repeat("compressible ", 40), callOpts: []grpc.CallOption{grpc.UseCompressor(gzip.Name)},
			want: strings.Repeat("compressible ", 40)},
		{name: "error with details, message and metadata", text: "fail", code: codes.InvalidArgument,
			check: func(t *testing.T, st *status.Status, _, trailer metadata.MD) {
				require.Equal(t, "bad text: é 100%", st.Message())
				require.Len(t, st.Details(), 1)
				require.True(t, proto.Equal(wrapperspb.String("detail"), st.Details()[0].(proto.Message)), "%v", st.Details())
				require.Equal(t, []string{"meta"}, trailer.Get("x-error"))
			}},
		{name: "a panic is an internal error", text: "panic", code: codes.Internal},
		{name: "over the message limit", text: strings.Repeat("x", 2048), code: codes.ResourceExhausted},
		{name: "an HTTP refusal maps as gRPC clients map it", method: "/parley.test.v1.Echo/Refused", text: "x", code: codes.Unauthenticated,
			check: func(t *testing.T, st *status.Status, _, _ metadata.MD) {
				require.Contains(t, st.Message(), "missing API token")
			}},
		{name: "unknown method", method: "/parley.test.v1.Echo/Nope", text: "x", code: codes.Unimplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := t.Context(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx(ctx)
			}
			defer cancel()
			var header, trailer metadata.MD
			method := unary
			if tt.method != "" {
				method = tt.method
			}
			out := new(wrapperspb.StringValue)
			err := conn.Invoke(ctx, method, wrapperspb.String(tt.text), out,
				append([]grpc.CallOption{grpc.Header(&header), grpc.Trailer(&trailer)}, tt.callOpts...)...)
			st := status.Convert(err)
			require.Equal(t, tt.code, st.Code(), "%v", err)
			if tt.code == codes.OK {
				require.Equal(t, tt.want, out.GetValue())
			}
			if tt.check != nil {
				tt.check(t, st, header, trailer)
			}
		})
	}
}

func TestStreams(t *testing.T) {
	t.Parallel()
	conn := serve(t, echoMux(t), grpcbridge.Options{ReadTimeout: time.Minute, StreamingRequests: map[string]bool{bidi: true}})
	tests := []struct {
		name    string
		request string
		want    []string
		code    codes.Code
	}{
		{name: "messages then OK", request: "3", want: []string{"0", "1", "2"}},
		{name: "none", request: "0"},
		{name: "messages then an error", request: "2 gave up", want: []string{"0", "1"}, code: codes.Aborted},
		{name: "an error before any message", request: "x", code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := conn.NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, server)
			require.NoError(t, err)
			require.NoError(t, s.SendMsg(wrapperspb.String(tt.request)))
			require.NoError(t, s.CloseSend())
			var got []string
			for {
				m := new(wrapperspb.StringValue)
				if err = s.RecvMsg(m); err != nil {
					break
				}
				got = append(got, m.GetValue())
			}
			if tt.code == codes.OK {
				require.ErrorIs(t, err, io.EOF)
			} else {
				require.Equal(t, tt.code, status.Code(err), "%v", err)
			}
			require.Equal(t, tt.want, got)
			if len(tt.want) > 0 {
				h, err := s.Header()
				require.NoError(t, err)
				require.Equal(t, []string{"stream"}, h.Get("x-h"))
			}
		})
	}

	t.Run("bidi", func(t *testing.T) {
		t.Parallel()
		s, err := conn.NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, bidi)
		require.NoError(t, err)
		for _, word := range []string{"a", "b", "c"} {
			require.NoError(t, s.SendMsg(wrapperspb.String(word)))
			m := new(wrapperspb.StringValue)
			require.NoError(t, s.RecvMsg(m), "each answer comes before the next request")
			require.Equal(t, strings.ToUpper(word), m.GetValue())
		}
		require.NoError(t, s.CloseSend())
		require.ErrorIs(t, s.RecvMsg(new(wrapperspb.StringValue)), io.EOF)
	})

	t.Run("health", func(t *testing.T) {
		t.Parallel()
		res, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "parley.test.v1.Echo"})
		require.NoError(t, err)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, res.GetStatus())
	})
}

// TestReadTimeout: a call whose request does not arrive within ReadTimeout ends with
// DeadlineExceeded, unless its method streams requests.
func TestReadTimeout(t *testing.T) {
	t.Parallel()
	conn := serve(t, echoMux(t), grpcbridge.Options{ReadTimeout: 50 * time.Millisecond, StreamingRequests: map[string]bool{bidi: true}})
	tests := []struct {
		name   string
		method string
		code   codes.Code
	}{
		{name: "unary request never sent", method: unary, code: codes.DeadlineExceeded},
		{name: "streaming requests are exempt", method: bidi, code: codes.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, tt.method)
			require.NoError(t, err)
			got := make(chan error, 1)
			go func() { got <- s.RecvMsg(new(wrapperspb.StringValue)) }()
			if tt.code == codes.Canceled {
				// The exempt stream is still open after many read timeouts: a message
				// sent now is still answered.
				require.NoError(t, s.SendMsg(wrapperspb.String("late")))
				require.NoError(t, <-got)
				cancel()
				require.Equal(t, codes.Canceled, status.Code(s.RecvMsg(new(wrapperspb.StringValue))))
				return
			}
			err = <-got
			cancel()
			require.Equal(t, tt.code, status.Code(err), "%v", err)
		})
	}
}

// countingListener counts the Write calls made on the connections it accepts: each is a
// write system call.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, writes: l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestWritesPerCall counts the writes a unary gRPC answer costs the server. net/http's
// HTTP/2 server writes a handler's HEADERS, DATA and trailers one at a time, each waiting
// for the last (three or more writes per answer); grpc-go queues a stream's frames and
// writes what is queued at once, so the same handler through the bridge costs about one.
func TestWritesPerCall(t *testing.T) {
	t.Parallel()
	const calls = 200
	tests := []struct {
		name  string
		serve func(t *testing.T, ln net.Listener, h http.Handler)
		check func(t *testing.T, perCall float64)
	}{
		{name: "net/http", serve: func(t *testing.T, ln net.Listener, h http.Handler) {
			protocols := new(http.Protocols)
			protocols.SetUnencryptedHTTP2(true)
			srv := &http.Server{Handler: h, Protocols: protocols}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { _ = srv.Close() })
		}, check: func(t *testing.T, perCall float64) {
			require.GreaterOrEqual(t, perCall, 3.0, "HEADERS, DATA and trailers, one write each")
		}},
		{name: "bridge", serve: func(t *testing.T, ln net.Listener, h http.Handler) {
			srv := grpc.NewServer(grpcbridge.New(h, grpcbridge.Options{}).ServerOptions()...)
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(srv.Stop)
		}, check: func(t *testing.T, perCall float64) {
			require.Less(t, perCall, 2.5, "a stream's frames go out together")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			writes := new(atomic.Int64)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			tt.serve(t, countingListener{Listener: ln, writes: writes}, echoMux(t))
			conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			call := func() {
				out := new(wrapperspb.StringValue)
				require.NoError(t, conn.Invoke(t.Context(), unary, wrapperspb.String("hello"), out))
				require.Equal(t, "hello", out.GetValue())
			}
			call() // the connection's settings
			before := writes.Load()
			for range calls {
				call()
			}
			perCall := float64(writes.Load()-before) / calls
			t.Logf("%s: %.2f writes per call", tt.name, perCall)
			tt.check(t, perCall)
		})
	}
}
