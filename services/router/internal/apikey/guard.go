package apikey

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/services/router/internal/apitoken"
	"github.com/parleyhq/parley/services/router/internal/ratelimit"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

// Limiter admits a request against its key's shared limits (package ratelimit).
type Limiter interface {
	Admit(ctx context.Context, lim ratelimit.Limits, estimate int64) (settle func(used int64), err error)
}

// Dapr-style error codes of the refusals on Dapr's HTTP API.
const (
	ErrCodeTooManyRequests  = "ERR_TOO_MANY_REQUESTS"
	ErrCodePermissionDenied = "ERR_PERMISSION_DENIED"
)

// bytesPerToken turns a request's size into its token estimate.
const bytesPerToken = 4

// Guard authenticates the router's callers and admits their conversations. With a
// Keyring it takes API keys; without one it is the single DAPR_API_TOKEN (or nothing),
// as before API keys, and every caller is the default tenant.
type Guard struct {
	keys    *Keyring
	token   *apitoken.Guard
	limiter Limiter
	rpc     *connect.ErrorWriter
	logger  *slog.Logger

	rejected *prometheus.CounterVec
	outcomes *prometheus.CounterVec
}

// NewGuard returns a Guard over keys, or over token when keys is nil. limiter may be nil
// (no limits enforced).
func NewGuard(keys *Keyring, token *apitoken.Guard, limiter Limiter, reg prometheus.Registerer, logger *slog.Logger) (*Guard, error) {
	g := &Guard{keys: keys, token: token, limiter: limiter, rpc: connect.NewErrorWriter(), logger: logger}
	if keys == nil {
		return g, nil
	}
	g.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_router_api_key_rejected_total",
		Help: "Calls refused because their API key was missing, unknown or revoked, by reason.",
	}, []string{"reason"})
	// Tenants come from the keys file, so the label is bounded by it.
	g.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_router_tenant_requests_total",
		Help: "Conversations by tenant and admission outcome (admitted, forbidden, rate_limited, limit_error).",
	}, []string{"tenant", "outcome"})
	for _, c := range []prometheus.Collector{g.rejected, g.outcomes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register api key metrics: %w", err)
		}
	}
	return g, nil
}

// Mode names how callers are authenticated: "api-keys", "token" or "open".
func (g *Guard) Mode() string {
	switch {
	case g.keys != nil:
		return "api-keys"
	case g.token != nil && g.token.Enabled():
		return "token"
	}
	return "open"
}

// credential is the key a request presents: "Authorization: Bearer <key>", else the
// dapr-api-token header.
func credential(h http.Header) (string, bool) {
	if a := h.Get("Authorization"); a != "" {
		scheme, key, ok := strings.Cut(a, " ")
		if ok && strings.EqualFold(scheme, "Bearer") && key != "" {
			return strings.TrimSpace(key), true
		}
	}
	if v := h.Values(apitoken.Header); len(v) > 0 && v[0] != "" {
		return v[0], true
	}
	return "", false
}

type entryKey struct{}

// authenticate finds r's key; on success the credential headers are removed, so the key
// travels no further, and the returned request carries the caller.
func (g *Guard) authenticate(r *http.Request) (*http.Request, bool, bool) {
	presented, ok := credential(r.Header)
	if !ok {
		g.rejected.WithLabelValues("missing").Inc()
		g.logger.DebugContext(r.Context(), "api key rejected", "reason", "missing", "http_path", r.URL.Path)
		return r, true, false
	}
	e, err := g.keys.lookup(presented)
	if err != nil {
		g.rejected.WithLabelValues("unknown").Inc()
		g.logger.DebugContext(r.Context(), "api key rejected", "reason", "unknown", "http_path", r.URL.Path)
		return r, false, false
	}
	r.Header.Del("Authorization")
	r.Header.Del(apitoken.Header)
	c := &tenant.Caller{Tenant: e.Tenant, KeyID: e.ID, Admin: e.Admin, Components: e.allowed}
	ctx := context.WithValue(tenant.With(r.Context(), c), entryKey{}, e)
	return r.WithContext(ctx), false, true
}

// DaprHTTP guards a Dapr HTTP conversation route (its component is the {name} path
// value): a refused key gets daprd's 401 "invalid api token"; a component the key may not
// use a 403 and a limit a 429 with Retry-After, both with a Dapr error body.
func (g *Guard) DaprHTTP(next http.Handler) http.Handler {
	if g.keys == nil {
		return g.token.HTTP(next)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, _, ok := g.authenticate(r)
		if !ok {
			http.Error(w, apitoken.HTTPRejection, http.StatusUnauthorized)
			return
		}
		if name := r.PathValue("name"); name != "" {
			estimate := max(r.ContentLength, 0) / bytesPerToken
			ctx, err := g.admit(r.Context(), name, estimate)
			if err != nil {
				writeDaprHTTPError(w, err)
				return
			}
			r = r.WithContext(ctx)
			defer tenant.From(ctx).Settle(0) // a request that never reached the conversation
		}
		next.ServeHTTP(w, r)
	})
}

// Authenticate guards an HTTP API with error bodies of its own (the OpenAI-compatible
// API): refuse writes the refusal of a request without a key (missing) or with a wrong or
// revoked one. The handler then admits each conversation with Admit once it knows the
// component. Without API keys it is the DAPR_API_TOKEN check, the token taken as a bearer
// token too and refused by refuse (apitoken.Guard.Bearer), or nothing.
func (g *Guard) Authenticate(next http.Handler, refuse func(w http.ResponseWriter, r *http.Request, missing bool)) http.Handler {
	if g.keys == nil {
		return g.token.Bearer(next, refuse)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, missing, ok := g.authenticate(r)
		if !ok {
			refuse(w, r, missing)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// DaprRPC guards the Dapr gRPC service: a refused key gets daprd's gRPC error.
func (g *Guard) DaprRPC(next http.Handler) http.Handler {
	if g.keys == nil {
		return g.token.RPC(next)
	}
	return g.rpcGuard(next, func(missing bool) *connect.Error { return apitoken.RPCRejection(missing) })
}

// RPC guards Parley's own Connect services (conversation, audit): a refused key gets
// Unauthenticated.
func (g *Guard) RPC(next http.Handler) http.Handler {
	if g.keys == nil {
		return g.token.RPC(next)
	}
	return g.rpcGuard(next, func(missing bool) *connect.Error {
		if missing {
			return connect.NewError(connect.CodeUnauthenticated, errors.New("missing API key: send Authorization: Bearer <key> or dapr-api-token"))
		}
		return connect.NewError(connect.CodeUnauthenticated, errors.New("invalid API key"))
	})
}

func (g *Guard) rpcGuard(next http.Handler, refuse func(missing bool) *connect.Error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, missing, ok := g.authenticate(r)
		if ok {
			next.ServeHTTP(w, r)
			return
		}
		if !g.rpc.IsSupported(r) {
			http.Error(w, apitoken.HTTPRejection, http.StatusUnauthorized)
			return
		}
		_ = g.rpc.Write(w, r, refuse(missing)) // the response is committed; nothing is left to do
	})
}

// admit checks the caller's key for component and its limits, estimate tokens in; the
// returned context's caller settles the real usage.
func (g *Guard) admit(ctx context.Context, component string, estimate int64) (context.Context, error) {
	e, ok := ctx.Value(entryKey{}).(*entry)
	if !ok {
		return ctx, nil // no API keys: nothing to admit against
	}
	if !e.Allows(component) {
		g.outcomes.WithLabelValues(e.Tenant, "forbidden").Inc()
		return ctx, errForbidden
	}
	c := tenant.From(ctx)
	if g.limiter != nil && (e.RequestsPerMinute > 0 || e.TokensPerMinute > 0 || e.TokenBudget > 0) {
		settle, err := g.limiter.Admit(ctx, ratelimit.Limits{
			Key: e.ID, RequestsPerMinute: e.RequestsPerMinute, TokensPerMinute: e.TokensPerMinute,
			TokenBudget: e.TokenBudget, BudgetMonthly: e.BudgetPeriod == Month,
		}, estimate)
		if err != nil {
			if _, limited := ratelimit.AsExceeded(err); limited {
				g.outcomes.WithLabelValues(e.Tenant, "rate_limited").Inc()
				return ctx, err
			}
			// The shared counters are unreachable: refuse rather than run unlimited.
			g.outcomes.WithLabelValues(e.Tenant, "limit_error").Inc()
			g.logger.ErrorContext(ctx, "rate limit check failed", "key_id", e.ID, "err", err.Error())
			return ctx, errLimitUnavailable
		}
		c.WithSettle(settle)
	}
	g.outcomes.WithLabelValues(e.Tenant, "admitted").Inc()
	return ctx, nil
}

var (
	errForbidden        = errors.New("this API key may not use this component")
	errLimitUnavailable = errors.New("rate limits are unavailable; try again shortly")
)

// ConnectError maps an admission refusal to its Connect error: ResourceExhausted with a
// google.rpc.RetryInfo for a limit, PermissionDenied for a component, Unavailable when the
// limits cannot be checked.
func ConnectError(err error) *connect.Error {
	if e, ok := ratelimit.AsExceeded(err); ok {
		ce := connect.NewError(connect.CodeResourceExhausted, e)
		if d, derr := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(e.RetryAfterSeconds()) * time.Second)}); derr == nil {
			ce.AddDetail(d)
		}
		return ce
	}
	if errors.Is(err, errForbidden) {
		return connect.NewError(connect.CodePermissionDenied, err)
	}
	return connect.NewError(connect.CodeUnavailable, err)
}

// HTTPStatus is the HTTP status and Retry-After seconds (0: none) of an admission
// refusal, for HTTP APIs with their own error bodies (the OpenAI-compatible one).
func HTTPStatus(err error) (status int, retryAfter int64) {
	if e, ok := ratelimit.AsExceeded(err); ok {
		return http.StatusTooManyRequests, e.RetryAfterSeconds()
	}
	if errors.Is(err, errForbidden) {
		return http.StatusForbidden, 0
	}
	return http.StatusServiceUnavailable, 0
}

func writeDaprHTTPError(w http.ResponseWriter, err error) {
	status, retry := HTTPStatus(err)
	code := ErrCodeTooManyRequests
	switch status {
	case http.StatusForbidden:
		code = ErrCodePermissionDenied
	case http.StatusServiceUnavailable:
		code = "ERR_RATE_LIMIT_UNAVAILABLE"
	}
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(retry, 10))
	}
	b, _ := json.Marshal(map[string]string{"errorCode": code, "message": err.Error()}) //nolint:errchkjson // strings only
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Admit is the admission an adapter without a path component (the OpenAI-compatible
// API) runs once it knows the component and the request's size: it returns the context
// to converse with, or an error for ConnectError or HTTPStatus (a limit's error is a
// *ratelimit.ExceededError, with its Retry-After). The caller must settle what the
// request used: conversation.Service.Converse does, and
// defer tenant.From(ctx).Settle(0) covers a request that fails before it.
func (g *Guard) Admit(ctx context.Context, component string, requestBytes int) (context.Context, error) {
	return g.admit(ctx, component, int64(requestBytes)/bytesPerToken)
}

// component names the component of a conversation request of any API.
func component(msg any) string {
	switch m := msg.(type) {
	case interface{ GetComponent() string }:
		return m.GetComponent()
	case interface{ GetName() string }:
		return m.GetName()
	case interface {
		GetRequest() *conversationv1.ConverseRequest
	}:
		return m.GetRequest().GetComponent()
	}
	return ""
}

// Interceptor admits the conversations of a Connect service (Dapr's gRPC service, the
// native conversation service): the component of the first request message against
// the key's components, its size against the key's limits.
func (g *Guard) Interceptor() connect.Interceptor { return interceptor{g} }

type interceptor struct{ g *Guard }

func (i interceptor) admitMessage(ctx context.Context, msg any) (context.Context, error) {
	name := component(msg)
	if name == "" {
		return ctx, nil // not a conversation (Dapr's other RPCs are unimplemented)
	}
	size := 0
	if m, ok := msg.(proto.Message); ok {
		size = proto.Size(m)
	}
	ctx, err := i.g.Admit(ctx, name, size)
	if err != nil {
		return ctx, ConnectError(err)
	}
	return ctx, nil
}

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	if i.g.keys == nil {
		return next
	}
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := i.admitMessage(ctx, req.Any())
		if err != nil {
			return nil, err
		}
		defer tenant.From(ctx).Settle(0)
		return next(ctx, req)
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	if i.g.keys == nil {
		return next
	}
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		// The caller in ctx is the one the admission settles, so admitting on the first
		// request message, inside the handler's Receive, needs no new context.
		return next(ctx, &admittingConn{StreamingHandlerConn: conn, ctx: ctx, i: i})
	}
}

// admittingConn admits the stream's first request message.
type admittingConn struct {
	connect.StreamingHandlerConn
	ctx      context.Context //nolint:containedctx // the stream's own context, for its first Receive
	i        interceptor
	admitted bool
}

func (c *admittingConn) Receive(msg any) error {
	if err := c.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	if c.admitted {
		return nil
	}
	c.admitted = true
	if _, err := c.i.admitMessage(c.ctx, msg); err != nil {
		return err
	}
	context.AfterFunc(c.ctx, func() { tenant.From(c.ctx).Settle(0) })
	return nil
}
