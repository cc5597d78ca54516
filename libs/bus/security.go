package bus

import (
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// InboxPrefix is the inbox prefix of the NATS user with this public nkey. Each user's
// replies (request answers, JetStream acks, consumer deliveries) arrive under its own
// prefix, so a user allowed to subscribe to its inboxes cannot read anyone else's.
func InboxPrefix(publicKey string) string { return nats.InboxPrefix + publicKey }

// securityOptions turns the credential and TLS settings into connection options. A
// missing or unreadable file fails with a message naming its setting.
func (cfg Config) securityOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if cfg.NKeySeedFile != "" {
		pub, err := PublicKeyOfSeedFile(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY_SEED_FILE=%s: %w", cfg.NKeySeedFile, err)
		}
		opt, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY_SEED_FILE=%s: %w", cfg.NKeySeedFile, err)
		}
		opts = append(opts, opt, nats.CustomInboxPrefix(InboxPrefix(pub)))
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE must be set together")
	}
	for _, f := range []struct{ name, path string }{
		{"NATS_TLS_CA_FILE", cfg.TLSCAFile}, {"NATS_TLS_CERT_FILE", cfg.TLSCertFile}, {"NATS_TLS_KEY_FILE", cfg.TLSKeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("%s=%s: %w", f.name, f.path, err)
		}
	}
	if cfg.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
	}
	if cfg.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
	}
	return opts, nil
}

// PublicKeyOfSeedFile reads a user nkey seed (bare on a line, or decorated as the nsc
// tools write it) and returns its public key.
func PublicKeyOfSeedFile(path string) (string, error) {
	b, err := os.ReadFile(path) //nolint:gosec // the operator names the file
	if err != nil {
		return "", err
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return "", errors.New("not an nkey seed")
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("public key: %w", err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return "", errors.New("not a user nkey seed")
	}
	return pub, nil
}
