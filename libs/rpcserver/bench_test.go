package rpcserver_test

import (
	"testing"

	"connectrpc.com/connect"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
)

// BenchmarkUnary is one small Connect/gRPC call through the shared server and client
// stacks (interceptors, tracing, metrics, h2c) over loopback.
func BenchmarkUnary(b *testing.B) {
	var ready error
	srv, clients := startAppB(b, &ready)
	for _, proto := range []struct {
		name string
		opts []connect.ClientOption
	}{{"connect", nil}, {"grpc", []connect.ClientOption{connect.WithGRPC()}}} {
		client := piiv1connect.NewScrubberServiceClient(clients.HTTPClient(), srv.URL(), append(clients.Options(), proto.opts...)...)
		req := &piiv1.ScrubRequest{Texts: []string{"hello"}}
		b.Run(proto.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := client.Scrub(b.Context(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
