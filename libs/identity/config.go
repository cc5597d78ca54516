package identity

import (
	"errors"
	"fmt"
	"time"
)

// Config locates the service's certificate material. The default paths are where a
// cert-manager Certificate's Secret is mounted in the manifests (ca.crt, tls.crt,
// tls.key under /etc/parley/tls).
type Config struct {
	// Mode is "on" (mutual TLS on every internal Connect call) or "off" (plaintext, no
	// identity: every internal RPC is open to whoever reaches the port; logged as a
	// warning at start).
	Mode string `env:"INTERNAL_TLS, default=on"`
	// CAFile holds the PEM certificates of the CAs trusted for peers (the trust bundle).
	CAFile string `env:"TLS_CA_FILE, default=/etc/parley/tls/ca.crt"`
	// CertFile holds the service's PEM certificate, followed by any intermediates.
	CertFile string `env:"TLS_CERT_FILE, default=/etc/parley/tls/tls.crt"`
	// KeyFile holds the service's PEM private key.
	KeyFile string `env:"TLS_KEY_FILE, default=/etc/parley/tls/tls.key"`
	// TrustDomain is the trust domain of every identity: spiffe://<TrustDomain>/<service>.
	TrustDomain string `env:"TLS_TRUST_DOMAIN, default=parley.local"`
	// ReloadInterval is how often the three files are checked for a change.
	ReloadInterval time.Duration `env:"TLS_RELOAD_INTERVAL, default=10s"`
}

// Modes of INTERNAL_TLS.
const (
	ModeOn  = "on"
	ModeOff = "off"
)

// Enabled reports whether internal calls use mutual TLS.
func (c Config) Enabled() bool { return c.Mode != ModeOff }

// Validate reports every bad setting, naming its variable.
func (c *Config) Validate() error {
	var errs []error
	if c.Mode != ModeOn && c.Mode != ModeOff {
		errs = append(errs, fmt.Errorf("INTERNAL_TLS must be on or off, got %q", c.Mode))
	}
	if c.Mode == ModeOff {
		return errors.Join(errs...)
	}
	for name, v := range map[string]string{"TLS_CA_FILE": c.CAFile, "TLS_CERT_FILE": c.CertFile, "TLS_KEY_FILE": c.KeyFile} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s must be set while INTERNAL_TLS=on", name))
		}
	}
	if err := ValidTrustDomain(c.TrustDomain); err != nil {
		errs = append(errs, fmt.Errorf("TLS_TRUST_DOMAIN: %w", err))
	}
	if c.ReloadInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("TLS_RELOAD_INTERVAL must be at least 100ms, got %s", c.ReloadInterval))
	}
	return errors.Join(errs...)
}
