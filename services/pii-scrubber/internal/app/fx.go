// Package app wires the pii-scrubber.
package app

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/services/pii-scrubber/internal/rpc"
	"github.com/parleyhq/parley/services/pii-scrubber/internal/scrub"
)

// Config is the scrubber's own configuration.
type Config struct {
	// MaxTexts caps the texts of one Scrub call.
	MaxTexts int `env:"SCRUBBER_MAX_TEXTS, default=4096"`
}

// Validate checks the limits.
func (c *Config) Validate() error {
	if c.MaxTexts <= 0 {
		return fmt.Errorf("SCRUBBER_MAX_TEXTS must be positive, got %d", c.MaxTexts)
	}
	return nil
}

// Module is the pii-scrubber's fx module.
var Module = fx.Module("pii-scrubber",
	fx.Supply(rpcserver.Defaults{Addr: ":3510"}),
	fx.Provide(
		config.Provider[Config](),
		scrub.New,
		func(s *scrub.Scrubber, c Config, reg prometheus.Registerer) (*rpc.Handler, error) {
			return rpc.New(s, c.MaxTexts, reg)
		},
		rpcserver.AsRoute(func(h *rpc.Handler, mw *rpcserver.Middleware) rpcserver.Route {
			path, handler := piiv1connect.NewScrubberServiceHandler(h, mw.HandlerOption())
			return rpcserver.Route{Pattern: path, Handler: handler, Service: piiv1connect.ScrubberServiceName}
		}),
	),
)
