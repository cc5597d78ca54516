package rpcserver_test

import (
	"testing"

	"connectrpc.com/connect"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/identity/identitytest"
	"github.com/parleyhq/parley/libs/rpcserver"
)

// BenchmarkUnary is one small Connect/gRPC call through the shared server and client
// stacks (interceptors, tracing, metrics) over loopback: over mutual TLS (the default)
// and cleartext h2c (INTERNAL_TLS=off); internal callers' client (rpc) and net/http's
// HTTP/2 client with the Connect and gRPC protocols. Connections are reused, so the TLS
// handshake is paid once; the difference is the record encryption per call.
func BenchmarkUnary(b *testing.B) {
	for _, transport := range []struct {
		name string
		id   func() identity.Config
	}{
		{"mtls", func() identity.Config { return identitytest.New(b).Config("test") }},
		{"h2c", func() identity.Config { return identity.Config{Mode: identity.ModeOff} }},
	} {
		var ready error
		srv, clients := startAppB(b, &ready, transport.id(), rpcserver.Defaults{})
		for _, proto := range []struct {
			name string
			hc   connect.HTTPClient
			opts []connect.ClientOption
		}{
			// rpc: internal callers' way (rpcclient.RPC): under mutual TLS, gRPC on grpc-go's
			// transport at both ends.
			{"rpc", clients.RPC("test"), clients.Options()},
			{"connect", clients.HTTPClient("test"), nil},
			{"grpc", clients.HTTPClient("test"), []connect.ClientOption{connect.WithGRPC()}},
		} {
			client := piiv1connect.NewScrubberServiceClient(proto.hc, srv.URL(), proto.opts...)
			req := &piiv1.ScrubRequest{Texts: []string{"hello"}}
			b.Run(transport.name+"/"+proto.name, func(b *testing.B) {
				for b.Loop() {
					if _, err := client.Scrub(b.Context(), req); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
