// Package apitoken enforces Dapr's API token on the router: with DAPR_API_TOKEN set, every
// call to the router's APIs must carry the token in the dapr-api-token header (gRPC
// metadata), and a call without it is refused the way daprd refuses it.
//
// daprd answers a Dapr HTTP call with a missing or wrong token with HTTP 401 and the plain
// text body "invalid api token" (dapr/dapr pkg/http/middlewares.go, APITokenAuthMiddleware,
// through http.Error), and a gRPC call with status Unauthenticated, message "Unauthorized"
// and one google.rpc.ErrorInfo detail {reason "Unauthorized", domain "dapr.io", metadata
// http.code "401", http.error_message "missing api token in request metadata" or
// "authentication error: api token mismatch"} (dapr/dapr pkg/api/grpc/auth.go,
// checkAPITokenInContext, through pkg/messaging/v1/util.go ErrorFromHTTPResponseCode).
//
// The checks wrap the router's own routes only: /healthz, /readyz, /metrics,
// grpc.health.v1 and gRPC reflection are served by rpcserver outside them and stay open.
package apitoken

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// Header carries the token on HTTP calls and, as metadata, on gRPC calls.
const Header = "dapr-api-token"

// HTTPRejection is daprd's plain-text body of a 401 on its HTTP API.
const HTTPRejection = httpRejection

// RPCRejection is daprd's gRPC error for a call without a token (missing) or with a wrong
// one.
func RPCRejection(missing bool) *connect.Error {
	if missing {
		return rpcError(missingReason)
	}
	return rpcError(mismatch)
}

// Dapr's texts, kept exactly.
const (
	httpRejection   = "invalid api token"
	detailMissing   = "missing api token in request metadata"
	detailMismatch  = "authentication error: api token mismatch"
	errorInfoDomain = "dapr.io"
)

// Token is the configured API token. It prints, logs and encodes as REDACTED, so a logged,
// formatted or marshalled configuration never reveals it.
type Token string

// String redacts the token.
func (t Token) String() string {
	if t == "" {
		return ""
	}
	return "REDACTED"
}

// GoString redacts the token for %#v.
func (t Token) GoString() string { return fmt.Sprintf("%q", t.String()) }

// LogValue redacts the token in slog records.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }

// MarshalText redacts the token in JSON and text encodings of a configuration.
func (t Token) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// reason says why a call was refused; it is also the metric label.
type reason string

const (
	accepted      reason = ""
	missingReason reason = "missing"
	mismatch      reason = "mismatch"
)

// Guard checks the token on the router's routes. With no token configured it lets every
// call through and its wrappers return the handler unchanged.
type Guard struct {
	enabled  bool
	want     [sha256.Size]byte
	rpc      *connect.ErrorWriter
	rejected *prometheus.CounterVec
	logger   *slog.Logger
}

// New returns a Guard for token; an empty token turns the check off.
func New(token Token, reg prometheus.Registerer, logger *slog.Logger) (*Guard, error) {
	g := &Guard{
		enabled: token != "",
		// Hashing first makes the comparison constant-time in the token's length too.
		want: sha256.Sum256([]byte(token)),
		rpc:  connect.NewErrorWriter(),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_api_token_rejected_total",
			Help: "Calls refused because the dapr-api-token header was missing or wrong, by reason.",
		}, []string{"reason"}),
		logger: logger,
	}
	if err := reg.Register(g.rejected); err != nil {
		return nil, fmt.Errorf("register api token metric: %w", err)
	}
	return g, nil
}

// Enabled reports whether calls must carry the token.
func (g *Guard) Enabled() bool { return g.enabled }

// check compares the first value of the header, as daprd does, without leaking timing.
func (g *Guard) check(h http.Header) reason {
	values := h.Values(Header)
	if len(values) == 0 {
		return missingReason
	}
	got := sha256.Sum256([]byte(values[0]))
	if subtle.ConstantTimeCompare(got[:], g.want[:]) != 1 {
		return mismatch
	}
	return accepted
}

// admit checks r; on success it removes the header, so the token travels no further.
func (g *Guard) admit(r *http.Request) reason {
	why := g.check(r.Header)
	if why == accepted {
		r.Header.Del(Header)
		return accepted
	}
	g.rejected.WithLabelValues(string(why)).Inc()
	g.logger.DebugContext(r.Context(), "api token rejected", "reason", string(why), "http_path", r.URL.Path)
	return why
}

// HTTP guards a Dapr HTTP route: a refused call gets daprd's 401 "invalid api token".
func (g *Guard) HTTP(next http.Handler) http.Handler {
	if !g.enabled {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.admit(r) != accepted {
			http.Error(w, httpRejection, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// RPC guards a Connect handler (Connect, gRPC and gRPC-Web): a refused call gets daprd's
// gRPC error, written in the caller's protocol.
func (g *Guard) RPC(next http.Handler) http.Handler {
	if !g.enabled {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		why := g.admit(r)
		if why == accepted {
			next.ServeHTTP(w, r)
			return
		}
		if !g.rpc.IsSupported(r) {
			http.Error(w, httpRejection, http.StatusUnauthorized)
			return
		}
		// The response is already committed when writing fails; nothing is left to do.
		_ = g.rpc.Write(w, r, rpcError(why))
	})
}

// rpcError is daprd's ErrorFromHTTPResponseCode(401, detail).
func rpcError(why reason) *connect.Error {
	detail := detailMissing
	if why == mismatch {
		detail = detailMismatch
	}
	text := http.StatusText(http.StatusUnauthorized)
	err := connect.NewError(connect.CodeUnauthenticated, errors.New(text))
	info, derr := connect.NewErrorDetail(&errdetails.ErrorInfo{
		Reason: text,
		Domain: errorInfoDomain,
		Metadata: map[string]string{
			"http.code":          "401",
			"http.error_message": detail,
		},
	})
	if derr == nil {
		err.AddDetail(info)
	}
	return err
}
