package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"connectrpc.com/connect"
)

type peerKey struct{}

// WithPeer returns ctx carrying the verified identity of the caller.
func WithPeer(ctx context.Context, id ID) context.Context {
	return context.WithValue(ctx, peerKey{}, id)
}

// PeerFrom returns the caller's verified identity, if the call came with a certificate
// of the trust domain.
func PeerFrom(ctx context.Context) (ID, bool) {
	id, ok := ctx.Value(peerKey{}).(ID)
	return id, ok
}

// Peers puts the identity of the client certificate that the TLS handshake verified into
// each request's context (PeerFrom). A certificate of another trust domain, or with no
// single SPIFFE URI SAN, gives no identity.
func (s *Source) Peers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := s.peerOf(r); ok {
			r = r.WithContext(WithPeer(r.Context(), id))
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Source) peerOf(r *http.Request) (ID, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ID{}, false
	}
	id, err := FromCert(r.TLS.VerifiedChains[0][0])
	if err != nil || id.TrustDomain != s.cfg.TrustDomain {
		return ID{}, false
	}
	return id, true
}

// Policy lists, for each Connect procedure ("/parley.cache.v1.CacheService/Put"), the
// names of the identities allowed to call it. A procedure missing from the policy is
// refused to everyone.
type Policy map[string][]string

// Authorize is the handler option enforcing p: a call without a verified identity fails
// with Unauthenticated, one from an identity p does not list for the procedure with
// PermissionDenied. With INTERNAL_TLS=off it allows everything.
func (s *Source) Authorize(p Policy) connect.HandlerOption {
	if !s.Enabled() {
		return connect.WithHandlerOptions()
	}
	return connect.WithInterceptors(authorizer{policy: p})
}

// ErrNoPeer is the cause of Unauthenticated: the call came without a client certificate
// of the trust domain.
var ErrNoPeer = errors.New("a client certificate of the trust domain is required")

type authorizer struct{ policy Policy }

func (a authorizer) check(ctx context.Context, procedure string) error {
	id, ok := PeerFrom(ctx)
	if !ok {
		return connect.NewError(connect.CodeUnauthenticated, ErrNoPeer)
	}
	if !slices.Contains(a.policy[procedure], id.Name) {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s may not call %s", id, procedure))
	}
	return nil
}

func (a authorizer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if !req.Spec().IsClient {
			if err := a.check(ctx, req.Spec().Procedure); err != nil {
				return nil, err
			}
		}
		return next(ctx, req)
	}
}

func (a authorizer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a authorizer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := a.check(ctx, conn.Spec().Procedure); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
