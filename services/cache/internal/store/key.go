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

// leaseSuffix turns an entry key into its lease key, one subject token deeper so that a
// purge filter ending in ".>" takes leases along with entries.
const leaseSuffix = ".lease"

func leaseKey(entryKey string) string { return entryKey + leaseSuffix }

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

// Stored entries carry their expiry in front of the value, so that a replica that
// reads an entry from the bucket knows how long it may keep it in memory, and a read
// between the logical expiry and JetStream's (whole-second) removal is a miss.
//
//	byte 0      entryFormat
//	bytes 1..8  expiry, Unix nanoseconds, big-endian
//	bytes 9..   the value
const (
	entryFormat byte = 1
	entryHeader int  = 9
)

func encodeEntry(value []byte, expires time.Time) []byte {
	b := make([]byte, entryHeader+len(value))
	b[0] = entryFormat
	binary.BigEndian.PutUint64(b[1:entryHeader], uint64(expires.UnixNano())) //nolint:gosec // times after 1970
	copy(b[entryHeader:], value)
	return b
}

// decodeEntry returns the value and expiry of a stored entry; ok is false for anything
// this version did not write.
func decodeEntry(b []byte) (value []byte, expires time.Time, ok bool) {
	if len(b) < entryHeader || b[0] != entryFormat {
		return nil, time.Time{}, false
	}
	ns := binary.BigEndian.Uint64(b[1:entryHeader])
	return b[entryHeader:], time.Unix(0, int64(ns)), true //nolint:gosec // written by encodeEntry
}

// A lease's value is its expiry, Unix nanoseconds, big-endian: a waiter uses it to
// bound its wait even if the expiry marker never reaches it.
func encodeLease(expires time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(expires.UnixNano())) //nolint:gosec // times after 1970
}

func decodeLease(b []byte) (time.Time, bool) {
	if len(b) != 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))), true //nolint:gosec // written by encodeLease
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
