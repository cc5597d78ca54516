package natsauth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"

	"github.com/parleyhq/parley/libs/bus"
)

// SeedFile is where LoadOrCreate keeps the seed of the user named name in dir; a
// service reads it through NATS_NKEY_SEED_FILE.
func SeedFile(dir, name string) string { return filepath.Join(dir, name+".nk") }

// LoadOrCreate gives every user its nkey: read from SeedFile(dir, name) when it exists,
// else created there (mode 0600), so keys survive restarts. It returns the users with
// NKey set.
func LoadOrCreate(dir string, users []User) ([]User, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	out := make([]User, len(users))
	for i, u := range users {
		path := SeedFile(dir, u.Name)
		pub, err := bus.PublicKeyOfSeedFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			pub, err = createSeed(path)
		}
		if err != nil {
			return nil, fmt.Errorf("natsauth: user %s: %w", u.Name, err)
		}
		u.NKey = pub
		out[i] = u
	}
	return out, nil
}

func createSeed(path string) (string, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", err
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		return "", err
	}
	return kp.PublicKey()
}
