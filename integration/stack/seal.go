package stack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/parleyhq/parley/libs/seal"
)

// SealKeys are the files of the key pair the routers seal audit copies with (the public
// key, ROUTER_AUDIT_SEAL_KEY_FILE) and the audit service opens them with (the private
// key, AUDIT_SEAL_KEY_FILE): docs/security.md, "The sealed audit copy".
type SealKeys struct {
	Private, Public string
}

// SealKeysOf are the seal key files in dir: audit.key and audit.pub, the names the
// deploy/ Secrets use as keys.
func SealKeysOf(dir string) SealKeys {
	return SealKeys{Private: filepath.Join(dir, "audit.key"), Public: filepath.Join(dir, "audit.pub")}
}

// EnsureSealKeys generates the seal key pair in dir once (the private key readable by
// its owner only) and returns its files; an existing pair is kept, so events sealed
// before a restart still open. created says whether a pair was made now.
func EnsureSealKeys(dir string) (keys SealKeys, created bool, err error) {
	keys = SealKeysOf(dir)
	_, errPriv := os.Stat(keys.Private)
	_, errPub := os.Stat(keys.Public)
	if errPriv == nil && errPub == nil {
		return keys, false, nil
	}
	if (errPriv != nil && !errors.Is(errPriv, fs.ErrNotExist)) || (errPub != nil && !errors.Is(errPub, fs.ErrNotExist)) {
		return keys, false, fmt.Errorf("seal keys: %w", errors.Join(errPriv, errPub))
	}
	privPEM, pubPEM, err := seal.GenerateKey()
	if err != nil {
		return keys, false, err //nolint:wrapcheck // seal's errors name the package
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return keys, false, fmt.Errorf("seal keys: %w", err)
	}
	// The public key last: a pair is complete once both exist.
	if err := os.WriteFile(keys.Private, privPEM, 0o600); err != nil {
		return keys, false, fmt.Errorf("seal keys: %w", err)
	}
	if err := os.WriteFile(keys.Public, pubPEM, 0o644); err != nil { //nolint:gosec // a public key
		return keys, false, fmt.Errorf("seal keys: %w", err)
	}
	return keys, true, nil
}
