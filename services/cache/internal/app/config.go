package app

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/services/cache/internal/store"
)

// Config holds the cache service's own settings.
type Config struct {
	// Bucket is the JetStream key-value bucket holding the entries.
	Bucket string `env:"CACHE_BUCKET, default=parley_cache"`
	// MaxEntryBytes is the largest value a Put accepts.
	MaxEntryBytes int `env:"CACHE_MAX_ENTRY_BYTES, default=1048576"`
	// MaxBucketBytes caps the bucket's storage; when full, puts fail until entries expire.
	MaxBucketBytes int64 `env:"CACHE_MAX_BUCKET_BYTES, default=1073741824"`
	// Replicas is the number of JetStream replicas of the bucket (1 to 5).
	Replicas int `env:"CACHE_REPLICAS, default=1"`
	// L1MaxBytes caps the in-process cache in front of the bucket; 0 turns it off.
	L1MaxBytes int64 `env:"CACHE_L1_MAX_BYTES, default=67108864"`
	// MaxLeaseTTL caps how long a caller may hold a key's lease while it asks the
	// provider, and so how long others wait for it.
	MaxLeaseTTL time.Duration `env:"CACHE_MAX_LEASE_TTL, default=2m"`
}

// maxEntryBytes keeps the entry limit inside JetStream's int32 message size, with room
// for headers.
const maxEntryBytes = math.MaxInt32 / 2

// Validate reports every bad setting, naming its variable.
func (c *Config) Validate() error {
	var errs []error
	if err := bus.CheckName(c.Bucket); err != nil {
		errs = append(errs, fmt.Errorf("CACHE_BUCKET %q %w", c.Bucket, err))
	}
	if c.MaxEntryBytes <= 0 || c.MaxEntryBytes > maxEntryBytes {
		errs = append(errs, fmt.Errorf("CACHE_MAX_ENTRY_BYTES must be between 1 and %d, got %d", maxEntryBytes, c.MaxEntryBytes))
	}
	if c.MaxBucketBytes <= 0 {
		errs = append(errs, fmt.Errorf("CACHE_MAX_BUCKET_BYTES must be positive, got %d", c.MaxBucketBytes))
	} else if c.MaxEntryBytes > 0 && c.MaxBucketBytes < int64(c.MaxEntryBytes) {
		errs = append(errs, fmt.Errorf("CACHE_MAX_BUCKET_BYTES (%d) must be at least CACHE_MAX_ENTRY_BYTES (%d)", c.MaxBucketBytes, c.MaxEntryBytes))
	}
	if c.Replicas <= 0 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("CACHE_REPLICAS must be between 1 and 5, got %d", c.Replicas))
	}
	if c.L1MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("CACHE_L1_MAX_BYTES must not be negative, got %d", c.L1MaxBytes))
	}
	if c.MaxLeaseTTL < time.Second || c.MaxLeaseTTL > time.Hour {
		errs = append(errs, fmt.Errorf("CACHE_MAX_LEASE_TTL must be between 1s and 1h, got %s", c.MaxLeaseTTL))
	}
	return errors.Join(errs...)
}

// Store returns the store's view of the settings.
func (c Config) Store() store.Config {
	return store.Config{
		Bucket:         c.Bucket,
		MaxEntryBytes:  c.MaxEntryBytes,
		MaxBucketBytes: c.MaxBucketBytes,
		Replicas:       c.Replicas,
		L1MaxBytes:     c.L1MaxBytes,
		MaxLeaseTTL:    c.MaxLeaseTTL,
	}
}
