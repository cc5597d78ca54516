package apikey

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// entry is a loaded key.
type entry struct {
	Key
	digest  [sha256.Size]byte
	allowed map[string]bool // nil: every component
}

// Allows reports whether the key may converse with component.
func (e *entry) Allows(component string) bool { return e.allowed == nil || e.allowed[component] }

// snapshot is one version of the keys file.
type snapshot struct {
	byDigest map[[sha256.Size]byte]*entry
	sum      [sha256.Size]byte // of the file's bytes
}

// Keyring holds the keys of the keys file, reloaded at an interval.
type Keyring struct {
	path     string
	pepper   []byte
	interval time.Duration
	logger   *slog.Logger
	current  atomic.Pointer[snapshot]
	reloads  func(ok bool)
	// reload serialises reloads; badSum is the content hash of the last file that did not
	// load, reported once.
	reload sync.Mutex
	badSum [sha256.Size]byte

	stop chan struct{}
	done sync.WaitGroup
}

// ReadPepper returns the pepper: value, or the contents of file (trailing new lines
// dropped). It refuses a pepper shorter than MinPepperBytes.
func ReadPepper(value, file string) ([]byte, error) {
	p := []byte(value)
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read pepper file: %w", err)
		}
		p = []byte(strings.TrimRight(string(b), "\r\n"))
	}
	if len(p) < MinPepperBytes {
		return nil, fmt.Errorf("the API key pepper must be at least %d bytes", MinPepperBytes)
	}
	return p, nil
}

// NewKeyring loads path with pepper; the first load must succeed. reloads (may be nil)
// is told the outcome of every reload that found the file changed.
func NewKeyring(path string, pepper []byte, interval time.Duration, logger *slog.Logger, reloads func(ok bool)) (*Keyring, error) {
	if reloads == nil {
		reloads = func(bool) {}
	}
	k := &Keyring{path: path, pepper: pepper, interval: interval, logger: logger, reloads: reloads, stop: make(chan struct{})}
	snap, err := k.load(nil)
	if err != nil {
		return nil, err
	}
	k.current.Store(snap)
	logger.Info("api keys loaded", "file", path, "keys", len(snap.byDigest))
	return k, nil
}

// load reads the file; it returns nil, nil when the file is unchanged since prev, or is
// the bad file already reported.
func (k *Keyring) load(prev *snapshot) (*snapshot, error) {
	data, err := os.ReadFile(k.path)
	if err != nil {
		return nil, fmt.Errorf("read keys file: %w", err)
	}
	sum := sha256.Sum256(data)
	if prev != nil && (prev.sum == sum || k.badSum == sum) {
		return nil, nil
	}
	f, err := Parse(data)
	if err != nil {
		k.badSum = sum
		return nil, err
	}
	snap := &snapshot{byDigest: make(map[[sha256.Size]byte]*entry, len(f.Keys)), sum: sum}
	for _, key := range f.Keys {
		if key.Revoked {
			continue
		}
		e := &entry{Key: key}
		raw, err := hex.DecodeString(strings.TrimPrefix(key.Hash, HashScheme))
		if err != nil || len(raw) != sha256.Size {
			k.badSum = sum
			return nil, fmt.Errorf("keys file: key %q: bad hash", key.ID)
		}
		copy(e.digest[:], raw)
		if len(key.Components) > 0 {
			e.allowed = make(map[string]bool, len(key.Components))
			for _, c := range key.Components {
				e.allowed[c] = true
			}
		}
		snap.byDigest[e.digest] = e
	}
	return snap, nil
}

// Reload re-reads the file now; a file that does not parse keeps the current keys and is
// reported once (an error), not at every interval.
func (k *Keyring) Reload() error {
	k.reload.Lock()
	defer k.reload.Unlock()
	snap, err := k.load(k.current.Load())
	switch {
	case err != nil:
		k.reloads(false)
		return err
	case snap == nil:
		return nil
	}
	k.current.Store(snap)
	k.reloads(true)
	k.logger.Info("api keys reloaded", "file", k.path, "keys", len(snap.byDigest))
	return nil
}

// Start polls the file every interval until Stop.
func (k *Keyring) Start() {
	k.done.Add(1)
	go func() {
		defer k.done.Done()
		t := time.NewTicker(k.interval)
		defer t.Stop()
		for {
			select {
			case <-k.stop:
				return
			case <-t.C:
				if err := k.Reload(); err != nil {
					k.logger.Error("api keys file not reloaded; the previous keys stay in force", "file", k.path, "err", err.Error())
				}
			}
		}
	}()
}

// Stop ends the polling.
func (k *Keyring) Stop(context.Context) error {
	close(k.stop)
	k.done.Wait()
	return nil
}

// errUnknown is a key that no entry of the file hashes to (wrong or revoked).
var errUnknown = errors.New("unknown api key")

// lookup finds the entry of a presented key. The map is keyed by the HMAC, which a
// caller cannot steer without the pepper; the constant-time compare then checks it.
func (k *Keyring) lookup(presented string) (*entry, error) {
	d := digest(k.pepper, presented)
	e, ok := k.current.Load().byDigest[d]
	if !ok || subtle.ConstantTimeCompare(e.digest[:], d[:]) != 1 {
		return nil, errUnknown
	}
	return e, nil
}
