// Package app wires the audit service: configuration, the PostgreSQL store and its
// migrations, the JetStream ingest loop, the AuditService handler and readiness checks.
package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/pg"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/libs/rpcclient"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/libs/seal"
	"github.com/parleyhq/parley/libs/telemetry"
	"github.com/parleyhq/parley/services/audit/internal/ingest"
	"github.com/parleyhq/parley/services/audit/internal/maintenance"
	"github.com/parleyhq/parley/services/audit/internal/rpc"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// Module is the audit service on top of platform.Module("audit").
var Module = fx.Module("audit",
	platform.Bus,
	platform.Postgres,
	platform.Clients,
	fx.Supply(rpcserver.Defaults{Addr: "127.0.0.1:3540"}),
	fx.Provide(
		config.Provider[Config](),
		newStore,
		func(s *store.Store) rpc.Store { return s },
		func(s *store.Store) ingest.Store { return s },
		rpc.NewHandler,
		newIngester,
		rpcserver.AsRoute(func(h *rpc.Handler, mw *rpcserver.Middleware, id *identity.Source) rpcserver.Route {
			path, handler := auditv1connect.NewAuditServiceHandler(h, mw.HandlerOption(), id.Authorize(rpc.Policy))
			return rpcserver.Route{Pattern: path, Handler: handler, Service: auditv1connect.AuditServiceName}
		}),
		rpcserver.AsCheck(func(pool *pgxpool.Pool) rpcserver.Check {
			return rpcserver.Check{Name: "postgres", Check: pool.Ping}
		}),
		rpcserver.AsCheck(func(in *ingest.Ingester) rpcserver.Check {
			return rpcserver.Check{Name: "audit_consumer", Check: in.Ready}
		}),
		func(s *store.Store) maintenance.Store { return s },
		newMaintenance,
	),
	// The loops have no other dependant than a readiness check; ask for them explicitly.
	fx.Invoke(func(*ingest.Ingester, *maintenance.Job) {}),
)

// newStore builds the store and migrates the schema at start. Everything that uses the
// store is built after it, so their start hooks (the ingest loop, the server) run after
// the migration.
func newStore(lc fx.Lifecycle, pool *pgxpool.Pool, cfg Config) *store.Store {
	lc.Append(fx.StartHook(func(ctx context.Context) error {
		return pg.Migrate(ctx, pool, store.Migrations())
	}))
	return store.New(pool, store.WithLiveSearchIndex(cfg.SearchIndex == SearchIndexLive), store.WithPageMaxBytes(cfg.PageMaxBytes))
}

// newMaintenance builds the partition maintenance job, run from start to stop.
func newMaintenance(lc fx.Lifecycle, st maintenance.Store, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*maintenance.Job, error) {
	j, err := maintenance.New(st, cfg.Maintenance(), logger, reg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StartStopHook(j.Start, j.Stop))
	return j, nil
}

// newIngester builds the ingest loop, run from start to stop, with the seal keys that open
// the routers' sealed audit copies and the scrubber client that scrubs them.
func newIngester(lc fx.Lifecycle, js jetstream.JetStream, st ingest.Store, cfg Config, tel *telemetry.Telemetry,
	f *rpcclient.Factory, logger *slog.Logger, reg prometheus.Registerer,
) (*ingest.Ingester, error) {
	icfg := cfg.Ingest()
	icfg.Tracer, icfg.Propagator = tel.Tracer("github.com/parleyhq/parley/services/audit"), tel.Propagator
	openers, err := openers(cfg)
	if err != nil {
		return nil, err
	}
	if len(openers) == 0 {
		logger.Warn("no seal key (AUDIT_SEAL_KEY_FILE): audit copies sealed by routers are stored with their texts redacted")
	}
	if err := f.CheckURL("AUDIT_SCRUBBER_URL", cfg.ScrubberURL); err != nil {
		return nil, err
	}
	icfg.Openers = openers
	icfg.Scrubber = piiv1connect.NewScrubberServiceClient(f.RPC(identity.Scrubber), cfg.ScrubberURL, f.Options()...)
	in, err := ingest.New(js, st, icfg, logger, reg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StartStopHook(in.Start, in.Stop))
	return in, nil
}

// openers reads the current seal key and the older ones, in that order.
func openers(cfg Config) ([]ingest.Opener, error) {
	if cfg.SealKeyFile == "" {
		return nil, nil
	}
	var out []ingest.Opener
	for i, path := range append([]string{cfg.SealKeyFile}, cfg.SealOldKeyFiles...) {
		setting := "AUDIT_SEAL_KEY_FILE"
		if i > 0 {
			setting = "AUDIT_SEAL_OLD_KEY_FILES"
		}
		priv, err := seal.ReadPrivateKeyFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", setting, path, err)
		}
		o, err := seal.NewOpener(priv)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", setting, path, err)
		}
		out = append(out, o)
	}
	return out, nil
}
