// Package platform bundles the fx modules every Parley service runs on: configuration,
// logging, telemetry, metrics, the service's identity and the RPC server. It is the one kitchen-sink module that
// fx's guidelines allow; services add Bus and Postgres when they need them.
package platform

import (
	"time"

	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/logging"
	"github.com/parleyhq/parley/libs/metrics"
	"github.com/parleyhq/parley/libs/pg"
	"github.com/parleyhq/parley/libs/rpcclient"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/libs/telemetry"
)

// StopTimeout bounds graceful shutdown; Kubernetes' terminationGracePeriodSeconds must
// be larger.
const StopTimeout = 20 * time.Second

// Module is the base of service name's fx app:
//
//	fx.New(platform.Module("router"), app.Module).Run()
func Module(name string) fx.Option {
	return fx.Options(
		fx.Supply(logging.ServiceName(name)),
		fx.Provide(
			config.Provider[logging.Config](),
			config.Provider[telemetry.Config](),
			config.Provider[rpcserver.Config](),
			config.Provider[identity.Config](),
		),
		logging.Module,
		identity.Module,
		telemetry.Module,
		metrics.Module,
		rpcserver.Module,
		fx.WithLogger(logging.FxLogger),
		fx.StopTimeout(StopTimeout),
	)
}

// Bus adds the NATS connection (NATS_URL).
var Bus = fx.Options(fx.Provide(config.Provider[bus.Config]()), bus.Module)

// Postgres adds the PostgreSQL pool (DATABASE_URL).
var Postgres = fx.Options(fx.Provide(config.Provider[pg.Config]()), pg.Module)

// Clients adds the factory for Connect clients to other services.
var Clients = rpcclient.Module
