package identity

import (
	"log/slog"

	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/logging"
)

// Module provides the service's *Source, named after the service, and polls its files
// for the app's lifetime. The Config comes from the app (platform loads it from the
// environment).
var Module = fx.Module("identity",
	fx.Provide(func(lc fx.Lifecycle, cfg Config, name logging.ServiceName, logger *slog.Logger) (*Source, error) {
		s, err := NewSource(cfg, string(name), logger)
		if err != nil {
			return nil, err
		}
		lc.Append(fx.StartStopHook(s.Start, s.Stop))
		return s, nil
	}),
)
