package rpcserver

import (
	"log/slog"
	"math"
	"net/http"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // gzip-compressed calls, as connect-go's handlers accept them
	"google.golang.org/grpc/keepalive"

	"github.com/parleyhq/parley/libs/grpcbridge"
)

// maxHeaderBytes bounds a call's metadata as net/http's DefaultMaxHeaderBytes bounds a
// request's headers.
const maxHeaderBytes = 1 << 20

// minPingInterval is the shortest keepalive interval a client may ping at: grpc-go's
// clients allow no less than 10 s, and net/http's server accepts any.
const minPingInterval = 5 * time.Second

// newGRPCServer serves handler's gRPC calls on grpc-go's transport (RPC_GRPC_ADDRS, and
// internal callers on a TLS port), with the limits the HTTP server applies: the message
// size, the streams per connection, the idle and handshake timeouts and the request
// deadline. extra adds options (the credentials of a TLS port's connections).
//
// handler is the server's warm pool, so calls run on goroutines kept from call to call,
// whose stacks have grown already (warm.go). grpc-go's own stream workers
// (grpc.NumStreamWorkers) took calls round robin, so with as many workers as the pool
// keeps each sat idle long enough for the collector to shrink its stack, and 7 % of the
// cache service's CPU at a miss's c=16 went to growing them again; the pool takes its idle
// workers last-in first-out.
func newGRPCServer(cfg Config, streaming map[string]bool, handler http.Handler, logger *slog.Logger, extra ...grpc.ServerOption) *grpc.Server {
	bridge := grpcbridge.New(handler, grpcbridge.Options{ReadTimeout: cfg.ReadTimeout, StreamingRequests: streaming, Logger: logger})
	opts := append(bridge.ServerOptions(),
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		grpc.MaxConcurrentStreams(uint32(min(cfg.MaxConcurrentStreams, math.MaxUint32))), //nolint:gosec // bounded above
		grpc.MaxHeaderListSize(maxHeaderBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: cfg.IdleTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: minPingInterval, PermitWithoutStream: true}),
	)
	if cfg.ReadHeaderTimeout > 0 {
		opts = append(opts, grpc.ConnectionTimeout(cfg.ReadHeaderTimeout)) // the client's preface and settings
	}
	return grpc.NewServer(append(opts, extra...)...)
}
