package identity

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/logging"
)

// Module provides the service's *Source, named after the service, polls its files for
// the app's lifetime and exports the current certificate's expiry
// (parley_tls_certificate_not_after_seconds), so that a renewal that never arrives
// alerts before it breaks calls. The Config comes from the app (platform loads it from
// the environment).
var Module = fx.Module("identity",
	fx.Provide(func(lc fx.Lifecycle, cfg Config, name logging.ServiceName, logger *slog.Logger, reg prometheus.Registerer) (*Source, error) {
		s, err := NewSource(cfg, string(name), logger)
		if err != nil {
			return nil, err
		}
		if s.Enabled() {
			expiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "parley_tls_certificate_not_after_seconds",
				Help: "Expiry (Unix time) of the service certificate in use; it changes when a renewal is reloaded.",
			}, func() float64 { return float64(s.NotAfter().Unix()) })
			if err := reg.Register(expiry); err != nil {
				return nil, fmt.Errorf("register metric: %w", err)
			}
		}
		lc.Append(fx.StartStopHook(s.Start, s.Stop))
		return s, nil
	}),
)
