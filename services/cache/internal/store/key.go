package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"time"
)

// Key names an entry: the router's hash of the request, and the tenant and component
// the entry belongs to. The hash already covers tenant and component; they are repeated
// here so the bucket's key can carry them for Purge.
type Key struct {
	Tenant    string
	Component string
	Hash      string
}

// maxScopeBytes bounds tenant and component names; they are hashed, so the bound only
// keeps requests reasonable.
const maxScopeBytes = 1024

func (k Key) validate() error {
	if !validHash(k.Hash) {
		return ErrInvalidKey
	}
	if k.Tenant == "" || k.Component == "" || len(k.Tenant) > maxScopeBytes || len(k.Component) > maxScopeBytes {
		return ErrInvalidScope
	}
	return nil
}

// entryKey is the bucket key of the entry: "<tenant token>.<component token>.<hash>".
// Tokens are hashes of the names, so any name is a valid subject token and a purge can
// select a tenant ("<t>.>") or a component ("*.<c>.>") with a subject filter.
func (k Key) entryKey() string {
	var b strings.Builder
	b.Grow(2*tokenLen + 2 + len(k.Hash))
	b.WriteString(token(k.Tenant))
	b.WriteByte('.')
	b.WriteString(token(k.Component))
	b.WriteByte('.')
	b.WriteString(k.Hash)
	return b.String()
}

// tokenLen is the length of a tenant or component token: 64 bits of SHA-256 in hex.
// A collision can only widen a purge, never mix entries: the entry hash covers the
// full names.
const tokenLen = 16

func token(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:tokenLen/2])
}

// validHash accepts exactly 64 lowercase hex characters, which are also a valid NATS
// subject token.
func validHash(key string) bool {
	if len(key) != 64 {
		return false
	}
	for i := range len(key) {
		c := key[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// A bucket key holds one record: an entry (the value) or the lease of whoever is
// computing it. Both carry their expiry in front, so that a replica that reads an entry
// from the bucket knows how long it may keep it in memory, a read between the logical
// expiry and JetStream's (whole-second) removal is a miss, and a waiter can bound its
// wait by a lease's expiry even if the expiry marker never reaches it.
//
//	byte 0      entryFormat or leaseFormat
//	bytes 1..8  expiry, Unix nanoseconds, big-endian
//	bytes 9..   the value (an entry); nothing (a lease)
const (
	entryFormat  byte = 1
	leaseFormat  byte = 2
	recordHeader int  = 9
)

// recordKind is what a bucket key holds.
type recordKind int

const (
	// recordNone is anything this version did not write: a miss, and no lease.
	recordNone recordKind = iota
	recordEntry
	recordLease
)

func encodeEntry(value []byte, expires time.Time) []byte {
	b := make([]byte, recordHeader+len(value))
	b[0] = entryFormat
	binary.BigEndian.PutUint64(b[1:recordHeader], uint64(expires.UnixNano())) //nolint:gosec // times after 1970
	copy(b[recordHeader:], value)
	return b
}

func encodeLease(expires time.Time) []byte {
	b := make([]byte, recordHeader)
	b[0] = leaseFormat
	binary.BigEndian.PutUint64(b[1:recordHeader], uint64(expires.UnixNano())) //nolint:gosec // times after 1970
	return b
}

// decodeRecord returns the kind, expiry and (for an entry) value of a stored record;
// kind is recordNone for anything this version did not write, including the 8-byte
// leases of earlier versions, which lived under their own keys.
func decodeRecord(b []byte) (kind recordKind, value []byte, expires time.Time) {
	if len(b) < recordHeader {
		return recordNone, nil, time.Time{}
	}
	switch {
	case b[0] == entryFormat:
		kind = recordEntry
		value = b[recordHeader:]
	case b[0] == leaseFormat && len(b) == recordHeader:
		kind = recordLease
	default:
		return recordNone, nil, time.Time{}
	}
	ns := binary.BigEndian.Uint64(b[1:recordHeader])
	return kind, value, time.Unix(0, int64(ns)) //nolint:gosec // written by encodeEntry or encodeLease
}

// purgeScope returns the tenant and component tokens a purge selects, "*" for any. A
// purge notice carries them as "<t>.<c>".
func purgeScope(tenant, component string) (t, c string) {
	t, c = "*", "*"
	if tenant != "" {
		t = token(tenant)
	}
	if component != "" {
		c = token(component)
	}
	return t, c
}

// inScope reports whether entry key k lies in the purge scope (t, c).
func inScope(k, t, c string) bool {
	if len(k) < 2*tokenLen+2 || k[tokenLen] != '.' || k[2*tokenLen+1] != '.' {
		return false
	}
	return (t == "*" || k[:tokenLen] == t) && (c == "*" || k[tokenLen+1:2*tokenLen+1] == c)
}
