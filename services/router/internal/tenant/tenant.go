// Package tenant carries the authenticated caller of one request through the router: the
// tenant that confines its cache entries, audit rows and limits, the id of the API key it
// presented, and how its token usage is settled once the answer is known. The edge
// (package apikey) puts a Caller in the request's context; the conversation, the audit
// API and the adapters read it. A request without one is the default tenant's.
package tenant

import (
	"context"
	"sync"
)

// Default is the tenant of every caller when no API keys are configured.
const Default = "default"

// Caller is who made a request.
type Caller struct {
	// Tenant confines the request's cache entries, audit rows and limits.
	Tenant string
	// KeyID names the API key presented ("" without API keys); never key material.
	KeyID string
	// Admin may name another tenant in audit queries.
	Admin bool
	// Components the caller may use, read-only; nil means every component (no API
	// keys, or a key without a components list).
	Components map[string]bool

	once   sync.Once
	settle func(tokens int64)
}

// WithSettle sets the function told the request's real token usage once (the rate
// limiter charges the difference from its estimate); it returns c.
func (c *Caller) WithSettle(f func(tokens int64)) *Caller {
	c.settle = f
	return c
}

// Settle reports the request's real token usage; only the first report counts, and a
// caller without a settle function ignores it.
func (c *Caller) Settle(tokens int64) {
	if c == nil || c.settle == nil {
		return
	}
	c.once.Do(func() { c.settle(tokens) })
}

// MayUse reports whether the caller may use component: the metadata and component
// listings show a caller only these.
func (c *Caller) MayUse(component string) bool {
	return c == nil || c.Components == nil || c.Components[component]
}

type callerKey struct{}

var defaultCaller = &Caller{Tenant: Default}

// With returns ctx carrying c.
func With(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// From returns the caller ctx carries, or the default tenant's caller.
func From(ctx context.Context) *Caller {
	if c, ok := ctx.Value(callerKey{}).(*Caller); ok && c != nil {
		return c
	}
	return defaultCaller
}
