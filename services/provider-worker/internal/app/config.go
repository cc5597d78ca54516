package app

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/parleyhq/parley/libs/component"
)

// Config holds the provider worker's own settings.
type Config struct {
	// ComponentsDir holds the Dapr component YAML files.
	ComponentsDir string `env:"COMPONENTS_DIR, default=/etc/parley/components"`
	// ResiliencyDir holds the Dapr Resiliency YAML files; empty means ComponentsDir, since
	// Dapr reads both from its resources directory.
	ResiliencyDir string `env:"RESILIENCY_DIR"`
	// SecretsDir, when set, holds mounted secret files <SecretsDir>/<name>/<key> that
	// secretKeyRef entries resolve to before the environment is tried.
	SecretsDir string `env:"SECRETS_DIR"`
	// Components names the components this worker serves; empty means every loaded one.
	Components []string `env:"WORKER_COMPONENTS"`
	// Concurrency is the most provider calls the worker runs at once.
	Concurrency int `env:"WORKER_CONCURRENCY, default=64"`
	// HeartbeatInterval is the time between heartbeats while a call runs; heartbeats announce
	// it, and the router presumes the worker dead after ROUTER_WORKER_HEARTBEAT_MISSES of
	// them are missed. It costs one small message per running call per interval.
	HeartbeatInterval time.Duration `env:"WORKER_HEARTBEAT_INTERVAL, default=200ms"`
	// PresenceInterval is the time between two announcements of the worker on its
	// components' presence subjects (parley.workers.<component>); routers forget a worker
	// unheard for three intervals.
	PresenceInterval time.Duration `env:"WORKER_PRESENCE_INTERVAL, default=2s"`
	// WorkerID names the worker in replies; empty means <hostname>-<pid>.
	WorkerID string `env:"WORKER_ID"`
	// EndpointAllowlist restricts provider endpoints to these hosts (comma-separated;
	// host, host:port or *.domain); empty allows any http(s) endpoint.
	EndpointAllowlist string `env:"WORKER_ENDPOINT_ALLOWLIST"`
}

// maxConcurrency bounds WORKER_CONCURRENCY: each slot may hold a goroutine and a request.
const maxConcurrency = 1 << 16

// Validate reports every bad setting, naming its variable.
func (c *Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.ComponentsDir) == "" {
		errs = append(errs, errors.New("COMPONENTS_DIR must not be empty"))
	}
	for _, name := range c.Components {
		if n := strings.TrimSpace(name); n != "" {
			if err := component.CheckName(n); err != nil {
				errs = append(errs, fmt.Errorf("WORKER_COMPONENTS: %q is not a component name: %w", n, err))
			}
		}
	}
	if c.Concurrency <= 0 || c.Concurrency > maxConcurrency {
		errs = append(errs, fmt.Errorf("WORKER_CONCURRENCY must be between 1 and %d, got %d", maxConcurrency, c.Concurrency))
	}
	if c.PresenceInterval <= 0 {
		errs = append(errs, fmt.Errorf("WORKER_PRESENCE_INTERVAL must be positive, got %s", c.PresenceInterval))
	}
	if c.HeartbeatInterval <= 0 {
		errs = append(errs, fmt.Errorf("WORKER_HEARTBEAT_INTERVAL must be positive, got %s", c.HeartbeatInterval))
	}
	return errors.Join(errs...)
}

// ServedComponents returns the names listed in WORKER_COMPONENTS, trimmed, without empty
// entries.
func (c Config) ServedComponents() []string {
	var out []string
	for _, name := range c.Components {
		if n := strings.TrimSpace(name); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// ResiliencySource returns the directory of the Resiliency files and how the configuration
// names it, for messages.
func (c Config) ResiliencySource() (dir, setting string) {
	if c.ResiliencyDir != "" {
		return c.ResiliencyDir, "RESILIENCY_DIR=" + c.ResiliencyDir
	}
	return c.ComponentsDir, "RESILIENCY_DIR (unset, so COMPONENTS_DIR=" + c.ComponentsDir + ")"
}

// ID returns WORKER_ID, or <hostname>-<pid> when it is unset.
func (c Config) ID() string {
	if c.WorkerID != "" {
		return c.WorkerID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "provider-worker"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}
