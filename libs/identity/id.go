// Package identity owns service identity inside the constellation: each service holds a
// certificate whose one URI SAN names it SPIFFE style (spiffe://<trust domain>/<name>),
// loaded from files and reloaded when they change; servers require and verify client
// certificates (mutual TLS), clients verify the server they meant to call, and a Connect
// interceptor allows each RPC only to the identities listed for it.
package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Service names that policies refer to. Admin is not a service: it is the identity the
// development CA issues to operators and the CLI for administrative RPCs.
const (
	Router   = "router"
	Scrubber = "pii-scrubber"
	Cache    = "cache"
	Worker   = "provider-worker"
	Audit    = "audit"
	Admin    = "admin"
)

// ID is a workload identity: spiffe://TrustDomain/Name.
type ID struct {
	TrustDomain string
	Name        string
}

// String is the identity's URI.
func (id ID) String() string { return "spiffe://" + id.TrustDomain + "/" + id.Name }

// URL is the identity as a URI SAN.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/" + id.Name}
}

// ErrNoIdentity means a certificate carries no SPIFFE URI SAN, or more than one.
var ErrNoIdentity = errors.New("certificate has no single spiffe:// URI SAN")

// Parse reads an identity from its URI.
func Parse(raw string) (ID, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return ID{}, fmt.Errorf("identity %q: %w", raw, err)
	}
	return fromURL(u)
}

func fromURL(u *url.URL) (ID, error) {
	if u.Scheme != "spiffe" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return ID{}, fmt.Errorf("identity %q: want spiffe://<trust domain>/<name>", u.String())
	}
	id := ID{TrustDomain: u.Host, Name: strings.TrimPrefix(u.Path, "/")}
	if err := ValidTrustDomain(id.TrustDomain); err != nil {
		return ID{}, fmt.Errorf("identity %q: %w", u.String(), err)
	}
	if !validName(id.Name) {
		return ID{}, fmt.Errorf("identity %q: the name must be one path segment of a-z, 0-9 and '-'", u.String())
	}
	return id, nil
}

// FromCert returns the identity a certificate names in its single spiffe:// URI SAN.
func FromCert(c *x509.Certificate) (ID, error) {
	var found []ID
	for _, u := range c.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id, err := fromURL(u)
		if err != nil {
			return ID{}, err
		}
		found = append(found, id)
	}
	if len(found) != 1 {
		return ID{}, ErrNoIdentity
	}
	return found[0], nil
}

// ValidTrustDomain checks a trust domain: lower-case letters, digits, '.', '-' and '_'.
func ValidTrustDomain(td string) error {
	if td == "" || len(td) > 255 {
		return errors.New("the trust domain must be 1 to 255 characters")
	}
	for _, r := range td {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '.' && r != '-' && r != '_' {
			return fmt.Errorf("trust domain %q may only contain a-z, 0-9, '.', '-' and '_'", td)
		}
	}
	return nil
}

func validName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}
