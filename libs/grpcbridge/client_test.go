package grpcbridge_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/parleyhq/parley/libs/grpcbridge"
)

// outcome is what a Connect client saw of a call, to compare two transports.
type outcome struct {
	values  []string
	code    connect.Code
	message string
	details []string
	header  http.Header // the headers and trailers the test looks at
	trailer http.Header
	errMeta string
}

// viaTransports are a Connect client's two ways to the same echo service: net/http's HTTP/2
// client to connect-go's handler (the reference), and Client through grpc-go's transport to
// the handler served by a Bridge.
func viaTransports(t *testing.T) map[string]connect.HTTPClient {
	t.Helper()
	mux := echoMux(t)
	conn := serve(t, mux, grpcbridge.Options{StreamingRequests: map[string]bool{bidi: true}}, grpc.MaxRecvMsgSize(1024))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: protocols, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	client := grpcbridge.NewClient(func(host string) (*grpc.ClientConn, error) {
		require.Equal(t, "echo.internal:443", host, "each host gets its own connection, dialled by name")
		return conn, nil
	})
	return map[string]connect.HTTPClient{
		"net/http": cleartext{&http.Client{Transport: &http.Transport{Protocols: protocols, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
		}}}},
		"grpcbridge": client,
	}
}

// cleartext sends a request for https:// over cleartext HTTP/2 (the reference server's).
type cleartext struct{ c *http.Client }

func (c cleartext) Do(req *http.Request) (*http.Response, error) {
	req.URL.Scheme = "http"
	return c.c.Do(req) //nolint:wrapcheck // the transport's own error, as a Connect client would get it
}

// TestClientAgreesWithHTTP: every kind of call and answer reaches a Connect client
// through Client as it does through net/http's HTTP/2 client: messages, codes, messages
// of errors (percent-encoded on the wire), details, headers, binary headers, trailers and
// an error's metadata.
func TestClientAgreesWithHTTP(t *testing.T) {
	t.Parallel()
	const base = "https://echo.internal:443"
	tests := []struct {
		name string
		call func(ctx context.Context, hc connect.HTTPClient) outcome
		want outcome
	}{
		{name: "unary answer", call: unaryCall("hello"), want: outcome{
			values: []string{"hello"}, header: http.Header{"X-H": {"header"}, "X-H-Bin": {"AAEC"}}, trailer: http.Header{"X-T": {"trailer"}},
		}},
		{name: "unary error with details and metadata", call: unaryCall("fail"), want: outcome{
			code: connect.CodeInvalidArgument, message: "bad text: é 100%", details: []string{"detail"}, errMeta: "meta",
		}},
		{name: "the handler sees the call's metadata", call: func(ctx context.Context, hc connect.HTTPClient) outcome {
			c := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc, base+unary, connect.WithGRPC())
			req := connect.NewRequest(wrapperspb.String("headers"))
			req.Header().Set("X-In", "in")
			req.Header().Set("X-In-Bin", connect.EncodeBinaryHeader([]byte("b\x00n")))
			res, err := c.CallUnary(ctx, req)
			return result(res, err)
		}, want: outcome{
			values: []string{"in|b\x00n|application/grpc|127.0.0.1"},
			header: http.Header{"X-H": {"header"}, "X-H-Bin": {"AAEC"}}, trailer: http.Header{"X-T": {"trailer"}},
		}},
		{name: "the deadline reaches the handler", call: func(ctx context.Context, hc connect.HTTPClient) outcome {
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			return unaryCall("deadline")(ctx, hc)
		}, want: outcome{
			values: []string{"deadline true"}, header: http.Header{"X-H": {"header"}, "X-H-Bin": {"AAEC"}}, trailer: http.Header{"X-T": {"trailer"}},
		}},
		{name: "a panic", call: unaryCall("panic"), want: outcome{code: connect.CodeInternal}},
		{name: "an HTTP refusal", call: func(ctx context.Context, hc connect.HTTPClient) outcome {
			c := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc, base+"/parley.test.v1.Echo/Refused", connect.WithGRPC())
			res, err := c.CallUnary(ctx, connect.NewRequest(wrapperspb.String("x")))
			return result(res, err)
		}, want: outcome{code: connect.CodeUnauthenticated}},
		{name: "server stream", call: serverCall("3"), want: outcome{values: []string{"0", "1", "2"}, header: http.Header{"X-H": {"stream"}}}},
		{name: "server stream ending in an error", call: serverCall("2 gave up"), want: outcome{
			values: []string{"0", "1"}, code: connect.CodeAborted, message: "gave up", header: http.Header{"X-H": {"stream"}},
		}},
		{name: "server stream failing at once", call: serverCall("x"), want: outcome{code: connect.CodeInvalidArgument}},
		{name: "bidi stream", call: func(ctx context.Context, hc connect.HTTPClient) outcome {
			c := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc, base+bidi, connect.WithGRPC())
			s := c.CallBidiStream(ctx)
			var o outcome
			for _, w := range []string{"a", "b", "c"} {
				if err := s.Send(wrapperspb.String(w)); err != nil {
					return failed(err)
				}
				m, err := s.Receive()
				if err != nil {
					return failed(err)
				}
				o.values = append(o.values, m.GetValue())
			}
			if err := s.CloseRequest(); err != nil {
				return failed(err)
			}
			if _, err := s.Receive(); !errors.Is(err, io.EOF) {
				return failed(err)
			}
			return o
		}, want: outcome{values: []string{"A", "B", "C"}}},
	}
	for name, hc := range viaTransports(t) {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				got := tt.call(t.Context(), hc)
				if tt.want.message == "" && got.code != 0 {
					got.message = "" // the message of a panic or a refusal is the transport's to word
				}
				require.Equal(t, tt.want, got)
			})
		}
	}
}

func unaryCall(text string) func(context.Context, connect.HTTPClient) outcome {
	return func(ctx context.Context, hc connect.HTTPClient) outcome {
		c := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc, "https://echo.internal:443"+unary, connect.WithGRPC())
		res, err := c.CallUnary(ctx, connect.NewRequest(wrapperspb.String(text)))
		return result(res, err)
	}
}

func serverCall(text string) func(context.Context, connect.HTTPClient) outcome {
	return func(ctx context.Context, hc connect.HTTPClient) outcome {
		c := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc, "https://echo.internal:443"+server, connect.WithGRPC())
		s, err := c.CallServerStream(ctx, connect.NewRequest(wrapperspb.String(text)))
		if err != nil {
			return failed(err)
		}
		defer func() { _ = s.Close() }()
		var o outcome
		for s.Receive() {
			o.values = append(o.values, s.Msg().GetValue())
		}
		if err := s.Err(); err != nil {
			f := failed(err)
			o.code, o.message = f.code, f.message
		}
		if v := s.ResponseHeader().Get("X-H"); v != "" {
			o.header = http.Header{"X-H": {v}}
		}
		return o
	}
}

// result keeps what the tests compare of a unary answer.
func result(res *connect.Response[wrapperspb.StringValue], err error) outcome {
	if err != nil {
		return failed(err)
	}
	return outcome{
		values:  []string{res.Msg.GetValue()},
		header:  http.Header{"X-H": res.Header().Values("X-H"), "X-H-Bin": res.Header().Values("X-H-Bin")},
		trailer: http.Header{"X-T": res.Trailer().Values("X-T")},
	}
}

func failed(err error) outcome {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return outcome{code: connect.CodeUnknown, message: err.Error()}
	}
	o := outcome{code: ce.Code(), message: ce.Message(), errMeta: ce.Meta().Get("X-Error")}
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			o.details = append(o.details, "undecodable: "+err.Error())
			continue
		}
		if s, ok := v.(*wrapperspb.StringValue); ok {
			o.details = append(o.details, proto.Clone(s).(*wrapperspb.StringValue).GetValue())
		}
	}
	return o
}

// TestClientRefusesOtherProtocols: a Connect client that forgot connect.WithGRPC() gets a
// clear error, not a call in the wrong protocol.
func TestClientRefusesOtherProtocols(t *testing.T) {
	t.Parallel()
	hc := viaTransports(t)["grpcbridge"]
	for _, opt := range []connect.ClientOption{connect.WithProtoJSON(), connect.WithGRPCWeb()} {
		c := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc, "https://echo.internal:443"+unary, opt)
		_, err := c.CallUnary(t.Context(), connect.NewRequest(wrapperspb.String("hello")))
		require.ErrorContains(t, err, "needs connect.WithGRPC()")
	}
}

// TestClientCancelsOnClose: closing a stream's answer early ends the call on the server.
func TestClientCancelsOnClose(t *testing.T) {
	t.Parallel()
	hc := viaTransports(t)["grpcbridge"]
	c := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc, "https://echo.internal:443"+bidi, connect.WithGRPC())
	s := c.CallBidiStream(t.Context())
	require.NoError(t, s.Send(wrapperspb.String("a")))
	m, err := s.Receive()
	require.NoError(t, err)
	require.Equal(t, "A", m.GetValue())
	require.NoError(t, s.CloseResponse())
	_, err = s.Receive()
	require.Error(t, err)
	require.NotErrorIs(t, err, io.EOF)
	require.True(t, strings.Contains(err.Error(), "cancel") || connect.CodeOf(err) == connect.CodeCanceled, "%v", err)
}
