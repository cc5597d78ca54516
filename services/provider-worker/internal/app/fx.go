// Package app wires the provider worker: configuration, the components it serves, their
// resiliency policies, the NATS queue-group subscriber and its readiness check.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/libs/resiliency"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/libs/telemetry"
	"github.com/parleyhq/parley/services/provider-worker/internal/providers"
	"github.com/parleyhq/parley/services/provider-worker/internal/serve"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// Module is the provider worker on top of platform.Module("provider-worker"). Its port
// (3530) serves health, readiness and metrics only; the work arrives over NATS.
var Module = fx.Module("provider-worker",
	platform.Bus,
	fx.Supply(rpcserver.Defaults{Addr: "127.0.0.1:3530"}),
	fx.Provide(
		config.Provider[Config](),
		newRegistry,
		newResiliency,
		newWorker,
		rpcserver.AsCheck(func(w *serve.Worker) rpcserver.Check {
			return rpcserver.Check{Name: "subscriptions", Check: w.Ready}
		}),
	),
	fx.Invoke(func(*serve.Worker) {}),
)

// newRegistry loads the component files and builds the providers of the served components.
func newRegistry(cfg Config, tel *telemetry.Telemetry, logger *slog.Logger) (*providers.Registry, error) {
	if cfg.SecretsDir != "" {
		if info, err := os.Stat(cfg.SecretsDir); err != nil || !info.IsDir() {
			return nil, fmt.Errorf("SECRETS_DIR=%s is not a readable directory", cfg.SecretsDir)
		}
	}
	// Only the served components are loaded whole, so a worker needs only their secrets.
	comps, err := component.LoadDir(cfg.ComponentsDir, component.Options{SecretsDir: cfg.SecretsDir, Only: cfg.ServedComponents()})
	if err != nil {
		return nil, fmt.Errorf("load components from COMPONENTS_DIR=%s: %w", cfg.ComponentsDir, err)
	}
	if len(comps) == 0 {
		return nil, fmt.Errorf("COMPONENTS_DIR=%s defines no conversation components", cfg.ComponentsDir)
	}
	served, err := providers.Select(comps, cfg.ServedComponents())
	if err != nil {
		return nil, fmt.Errorf("WORKER_COMPONENTS: %w", err)
	}
	// Start-up work: there is no request context yet (AWS credential loading takes one).
	reg, err := providers.Build(context.Background(), served, provider.Options{
		EndpointAllowlist: provider.ParseAllowlist(cfg.EndpointAllowlist),
		Logger:            logger,
		WrapTransport:     tel.HTTPTransport,
	})
	if err != nil {
		return nil, fmt.Errorf("build providers: %w", err)
	}
	return reg, nil
}

// newResiliency loads the Resiliency documents. Provider errors say themselves whether they
// are worth retrying (provider.Error's Retryable method); their Retry-After hint is a field,
// read through provider.RetryAfterOf. Circuit breaker state changes are logged.
func newResiliency(cfg Config, logger *slog.Logger) (*resiliency.Set, error) {
	dir, setting := cfg.ResiliencySource()
	set, err := resiliency.Load(dir,
		resiliency.WithRetryAfter(provider.RetryAfterOf),
		resiliency.WithStateChange(func(component string, from, to resiliency.State) {
			attrs := []any{"component", component, "from", from.String(), "to", to.String()}
			if to == resiliency.StateOpen {
				logger.Warn("circuit breaker state changed", attrs...)
				return
			}
			logger.Info("circuit breaker state changed", attrs...)
		}))
	if err != nil {
		return nil, fmt.Errorf("load resiliency policies from %s: %w", setting, err)
	}
	return set, nil
}

// newWorker builds the subscriber; it subscribes on start and drains on stop, before the
// NATS connection drains.
func newWorker(lc fx.Lifecycle, conn *bus.Conn, reg *providers.Registry, policies *resiliency.Set, cfg Config,
	tel *telemetry.Telemetry, logger *slog.Logger, registerer prometheus.Registerer,
) (*serve.Worker, error) {
	served := make(map[string]serve.Provider)
	for name, p := range reg.All() {
		served[name] = p
	}
	w, err := serve.New(conn.Conn, served, serve.Options{
		WorkerID:          cfg.ID(),
		Concurrency:       cfg.Concurrency,
		HeartbeatInterval: cfg.HeartbeatInterval,
		PresenceInterval:  cfg.PresenceInterval,
		Propagator:        tel.Propagator,
		TracerProvider:    tel.TracerProvider,
		GenAI:             reg.GenAI,
		Logger:            logger,
		Registerer:        registerer,
		Resiliency:        policies,
		RetryAfter:        provider.RetryAfterOf,
	})
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StartStopHook(w.Start, w.Stop))
	return w, nil
}
