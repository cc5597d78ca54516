// Package cachepurge is the notice the cache service publishes on core NATS after a
// purge, so that the routers' near caches drop what the purge dropped: its subject, its
// encoding and which entries it covers.
package cachepurge

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Subject carries purge notices: the cache service publishes, routers subscribe
// (libs/natsauth grants exactly that).
const Subject = "parley.cache.purged"

// Notice names what a purge dropped: every entry of Tenant, of Component (in every
// tenant), or of Component in Tenant. At least one is set.
type Notice struct {
	Tenant    string `json:"tenant,omitempty"`
	Component string `json:"component,omitempty"`
}

// ErrEmpty is a notice that names neither a tenant nor a component.
var ErrEmpty = errors.New("cachepurge: a notice names a tenant, a component or both")

// Encode is n as published.
func (n Notice) Encode() ([]byte, error) {
	if n.Tenant == "" && n.Component == "" {
		return nil, ErrEmpty
	}
	b, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("cachepurge: encode: %w", err)
	}
	return b, nil
}

// Decode reads a published notice.
func Decode(b []byte) (Notice, error) {
	var n Notice
	if err := json.Unmarshal(b, &n); err != nil {
		return Notice{}, fmt.Errorf("cachepurge: decode: %w", err)
	}
	if n.Tenant == "" && n.Component == "" {
		return Notice{}, ErrEmpty
	}
	return n, nil
}

// Covers reports whether the entry of tenant and component is in the notice's scope.
func (n Notice) Covers(tenant, component string) bool {
	return (n.Tenant == "" || n.Tenant == tenant) && (n.Component == "" || n.Component == component)
}
