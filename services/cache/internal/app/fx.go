// Package app wires the cache service: configuration, the NATS-backed store, the
// Connect handler and its readiness check.
package app

import (
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/gen/pb/parley/cache/v1/cachev1connect"
	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/services/cache/internal/rpc"
	"github.com/parleyhq/parley/services/cache/internal/store"
)

// Module is the cache service on top of platform.Module("cache").
var Module = fx.Module("cache",
	platform.Bus,
	fx.Supply(rpcserver.Defaults{Addr: "127.0.0.1:3520"}),
	fx.Provide(
		config.Provider[Config](),
		newStore,
		func(s *store.Store) rpc.Cache { return s },
		rpc.NewHandler,
		rpcserver.AsRoute(func(h *rpc.Handler, mw *rpcserver.Middleware, id *identity.Source) rpcserver.Route {
			path, handler := cachev1connect.NewCacheServiceHandler(h, mw.HandlerOption(), id.Authorize(rpc.Policy))
			return rpcserver.Route{Pattern: path, Handler: handler, Service: cachev1connect.CacheServiceName}
		}),
		rpcserver.AsCheck(func(s *store.Store) rpcserver.Check {
			return rpcserver.Check{Name: "cache_bucket", Check: s.Ready}
		}),
	),
	// Appended after the RPC server's hooks, so it runs before the server stops: pending
	// Waits answer "no value" at once instead of holding the graceful shutdown open.
	fx.Invoke(func(lc fx.Lifecycle, s *store.Store) { lc.Append(fx.StopHook(s.EndWaits)) }),
)

// newStore builds the store and creates its bucket at start, before the server serves.
func newStore(lc fx.Lifecycle, js jetstream.JetStream, cfg Config, reg prometheus.Registerer) (*store.Store, error) {
	s, err := store.New(js, cfg.Store(), reg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StartStopHook(s.Start, s.Stop))
	return s, nil
}
