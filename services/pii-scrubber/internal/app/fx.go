// Package app wires the pii-scrubber.
package app

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/services/pii-scrubber/internal/rpc"
	"github.com/parleyhq/parley/services/pii-scrubber/internal/scrub"
)

// minHashKey is the shortest HMAC key accepted for hash mode.
const minHashKey = 16

// Config is the scrubber's own configuration.
type Config struct {
	// MaxTexts caps the texts of one Scrub call.
	MaxTexts int `env:"SCRUBBER_MAX_TEXTS, default=4096"`
	// Entities is the default entity set, comma-separated; empty means
	// every entity except the opt-in country identifiers.
	Entities []string `env:"SCRUBBER_ENTITIES"`
	// Thresholds are per-entity score thresholds: ENTITY=0.6,...
	Thresholds string `env:"SCRUBBER_THRESHOLDS"`
	// PhoneRegions are the regions whose national phone formats are
	// recognised, comma-separated ISO 3166 codes.
	PhoneRegions []string `env:"SCRUBBER_PHONE_REGIONS"`
	// HashKey is the HMAC key of hash mode; HashKeyFile names a file that
	// holds it instead (a mounted secret). Without either, hash mode is
	// refused.
	HashKey     Secret `env:"SCRUBBER_HASH_KEY"`
	HashKeyFile string `env:"SCRUBBER_HASH_KEY_FILE"`
}

// Secret is a configuration string that never appears in logs.
type Secret string

// LogValue redacts the secret.
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// Validate checks the settings that need no I/O; New checks the rest.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxTexts <= 0 {
		errs = append(errs, fmt.Errorf("SCRUBBER_MAX_TEXTS must be positive, got %d", c.MaxTexts))
	}
	if _, err := parseThresholds(c.Thresholds); err != nil {
		errs = append(errs, fmt.Errorf("SCRUBBER_THRESHOLDS: %w", err))
	}
	if c.HashKey != "" && c.HashKeyFile != "" {
		errs = append(errs, errors.New("SCRUBBER_HASH_KEY and SCRUBBER_HASH_KEY_FILE are both set; set one"))
	}
	if c.HashKey != "" && len(c.HashKey) < minHashKey {
		errs = append(errs, fmt.Errorf("SCRUBBER_HASH_KEY must be at least %d bytes", minHashKey))
	}
	return errors.Join(errs...)
}

// parseThresholds reads ENTITY=value pairs separated by commas.
func parseThresholds(s string) (map[string]float64, error) {
	out := map[string]float64{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, value, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not ENTITY=value", item)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		out[strings.TrimSpace(name)] = v
	}
	return out, nil
}

// NewScrubber builds the Scrubber from the configuration; errors name the
// variable at fault.
func NewScrubber(c Config) (*scrub.Scrubber, error) {
	thresholds, err := parseThresholds(c.Thresholds)
	if err != nil {
		return nil, fmt.Errorf("SCRUBBER_THRESHOLDS: %w", err)
	}
	key := []byte(c.HashKey)
	if c.HashKeyFile != "" {
		b, err := os.ReadFile(c.HashKeyFile)
		if err != nil {
			return nil, fmt.Errorf("SCRUBBER_HASH_KEY_FILE: %w", err)
		}
		key = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(key) < minHashKey {
			return nil, fmt.Errorf("SCRUBBER_HASH_KEY_FILE: the key must be at least %d bytes", minHashKey)
		}
	}
	// Each setting is checked on its own so the error names its variable.
	if err := scrub.CheckEntities(c.Entities); err != nil {
		return nil, fmt.Errorf("SCRUBBER_ENTITIES: %w (known: %s)", err, strings.Join(scrub.Entities(), ", "))
	}
	if err := scrub.CheckThresholds(thresholds); err != nil {
		return nil, fmt.Errorf("SCRUBBER_THRESHOLDS: %w", err)
	}
	if err := scrub.CheckPhoneRegions(c.PhoneRegions); err != nil {
		return nil, fmt.Errorf("SCRUBBER_PHONE_REGIONS: %w", err)
	}
	s, err := scrub.New(scrub.Config{Entities: c.Entities, Thresholds: thresholds, HashKey: key, PhoneRegions: c.PhoneRegions})
	if err != nil {
		return nil, fmt.Errorf("pii-scrubber configuration: %w", err)
	}
	return s, nil
}

// Module is the pii-scrubber's fx module.
var Module = fx.Module("pii-scrubber",
	fx.Supply(rpcserver.Defaults{Addr: "127.0.0.1:3510"}),
	fx.Provide(
		config.Provider[Config](),
		NewScrubber,
		func(s *scrub.Scrubber, c Config, reg prometheus.Registerer) (*rpc.Handler, error) {
			return rpc.New(s, c.MaxTexts, reg)
		},
		rpcserver.AsRoute(func(h *rpc.Handler, mw *rpcserver.Middleware, id *identity.Source) rpcserver.Route {
			path, handler := piiv1connect.NewScrubberServiceHandler(h, mw.HandlerOption(), id.Authorize(rpc.Policy))
			return rpcserver.Route{Pattern: path, Handler: handler, Service: piiv1connect.ScrubberServiceName}
		}),
	),
)
