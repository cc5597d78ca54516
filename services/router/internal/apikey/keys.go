// Package apikey authenticates the router's callers by API key. Keys are defined in a
// file (ROUTER_API_KEYS_FILE, YAML or JSON, also a mounted Kubernetes Secret) that holds
// only each key's HMAC-SHA-256 under a per-deployment pepper, with the key's id, tenant,
// allowed components, rate limits and token budget. The file is re-read at an interval;
// a bad file keeps the keys of the last good one.
//
// A key is accepted as "Authorization: Bearer <key>" or in Dapr's dapr-api-token header
// (HTTP header or gRPC metadata), so Dapr's SDKs work unchanged. The Guard puts the
// caller (package tenant) into the request's context and admits the request against its
// key's allowed components and limits (package ratelimit).
package apikey

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Prefix starts every key Parley makes; it lets secret scanners recognise one.
const Prefix = "pk_"

// HashScheme starts every stored hash.
const HashScheme = "hmac-sha256:"

// MinPepperBytes is the shortest pepper accepted.
const MinPepperBytes = 16

// Period is the span of a token budget.
type Period string

// The budget periods; both start at UTC midnight (of the day, of the month's first day).
const (
	Day   Period = "day"
	Month Period = "month"
)

// Key is one entry of the keys file.
type Key struct {
	// ID names the key in logs, metrics, the audit log and limits; never secret.
	ID string `yaml:"id" json:"id"`
	// Tenant confines the key's cache entries, audit rows and limits.
	Tenant string `yaml:"tenant" json:"tenant"`
	// Hash is HashScheme followed by the hex HMAC-SHA-256 of the key under the pepper.
	Hash string `yaml:"hash" json:"hash"`
	// Admin may name another tenant in audit queries.
	Admin bool `yaml:"admin,omitempty" json:"admin,omitempty"`
	// Components the key may converse with; none means every component.
	Components []string `yaml:"components,omitempty" json:"components,omitempty"`
	// RequestsPerMinute, TokensPerMinute and TokenBudget (per BudgetPeriod) limit the
	// key across every router; 0 means no limit.
	RequestsPerMinute int64  `yaml:"requestsPerMinute,omitempty" json:"requestsPerMinute,omitempty"`
	TokensPerMinute   int64  `yaml:"tokensPerMinute,omitempty" json:"tokensPerMinute,omitempty"`
	TokenBudget       int64  `yaml:"tokenBudget,omitempty" json:"tokenBudget,omitempty"`
	BudgetPeriod      Period `yaml:"budgetPeriod,omitempty" json:"budgetPeriod,omitempty"`
	// Revoked keys are refused; revoking by flag keeps the entry for the record.
	Revoked bool `yaml:"revoked,omitempty" json:"revoked,omitempty"`
	// Created is informational.
	Created *time.Time `yaml:"created,omitempty" json:"created,omitempty"`
}

// File is the keys file.
type File struct {
	Keys []Key `yaml:"keys" json:"keys"`
}

var (
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	tenantPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	hashPattern   = regexp.MustCompile(`^` + HashScheme + `[0-9a-f]{64}$`)
)

// Parse reads and validates a keys file. Its errors name the entry by index and id, never
// by hash.
func Parse(data []byte) (*File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return &File{}, nil // an empty file: no keys, every call refused
		}
		return nil, fmt.Errorf("keys file: %w", scrubYAMLError(err))
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// scrubYAMLError keeps the decoder's message on one line and withholds it when it quotes
// key material (YAML errors quote the offending value, which could be a pasted key).
func scrubYAMLError(err error) error {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if strings.Contains(msg, Prefix) {
		return errors.New("invalid YAML (the message quoted key material and is withheld)")
	}
	return errors.New(msg)
}

// Validate checks every entry: well-formed ids, tenants and hashes, unique ids and
// hashes, limits not negative, a budget period with a budget.
func (f *File) Validate() error {
	var errs []error
	ids := map[string]bool{}
	hashes := map[string]bool{}
	for i, k := range f.Keys {
		name := fmt.Sprintf("keys[%d] (id %q)", i, k.ID)
		if !idPattern.MatchString(k.ID) {
			name = fmt.Sprintf("keys[%d]", i)
			errs = append(errs, fmt.Errorf("%s: id must be 1 to 64 letters, digits, '-' or '_'", name))
		}
		if ids[k.ID] {
			errs = append(errs, fmt.Errorf("%s: id used twice", name))
		}
		ids[k.ID] = true
		if !tenantPattern.MatchString(k.Tenant) {
			errs = append(errs, fmt.Errorf("%s: tenant must be 1 to 64 letters, digits, '-', '_' or '.'", name))
		}
		if !hashPattern.MatchString(k.Hash) {
			errs = append(errs, fmt.Errorf("%s: hash must be %q and 64 lower-case hex digits (the file holds hashes, never keys)", name, HashScheme))
		} else if hashes[k.Hash] {
			errs = append(errs, fmt.Errorf("%s: hash used twice", name))
		}
		hashes[k.Hash] = true
		if k.RequestsPerMinute < 0 || k.TokensPerMinute < 0 || k.TokenBudget < 0 {
			errs = append(errs, fmt.Errorf("%s: limits must not be negative", name))
		}
		switch {
		case k.TokenBudget > 0 && k.BudgetPeriod != Day && k.BudgetPeriod != Month:
			errs = append(errs, fmt.Errorf("%s: budgetPeriod must be day or month with a tokenBudget", name))
		case k.TokenBudget == 0 && k.BudgetPeriod != "":
			errs = append(errs, fmt.Errorf("%s: budgetPeriod without a tokenBudget", name))
		}
		for _, c := range k.Components {
			if c == "" {
				errs = append(errs, fmt.Errorf("%s: empty component name", name))
			}
		}
	}
	return errors.Join(errs...)
}

// Marshal writes f as YAML.
func (f *File) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// Hash returns the stored form of key under pepper.
func Hash(pepper []byte, key string) string {
	sum := digest(pepper, key)
	return HashScheme + hex.EncodeToString(sum[:])
}

func digest(pepper []byte, key string) [sha256.Size]byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(key))
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// NewKey returns a fresh random key: Prefix and 32 random bytes, base64url.
func NewKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random key: %w", err)
	}
	return Prefix + base64.RawURLEncoding.EncodeToString(b), nil
}
