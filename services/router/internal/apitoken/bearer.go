package apitoken

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// authorization carries "Bearer <key>", the way OpenAI's SDKs send their key.
const authorization = "Authorization"

// Bearer guards an HTTP route of an API whose clients send their key as
// "Authorization: Bearer <key>" (the OpenAI-compatible API): the token is accepted there
// or in the dapr-api-token header (checked first when both come). A refused call is
// answered by refuse, in the API's own error shape; missing says no token came at all.
// On success both headers are removed, so the token travels no further.
func (g *Guard) Bearer(next http.Handler, refuse func(w http.ResponseWriter, r *http.Request, missing bool)) http.Handler {
	if !g.enabled {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		why := g.checkBearer(r.Header)
		if why == accepted {
			r.Header.Del(Header)
			r.Header.Del(authorization)
			next.ServeHTTP(w, r)
			return
		}
		g.rejected.WithLabelValues(string(why)).Inc()
		g.logger.DebugContext(r.Context(), "api token rejected", "reason", string(why), "http_path", r.URL.Path)
		refuse(w, r, why == missingReason)
	})
}

// checkBearer compares the dapr-api-token header when it is present, else the bearer
// token of the Authorization header, without leaking timing.
func (g *Guard) checkBearer(h http.Header) reason {
	if len(h.Values(Header)) > 0 {
		return g.check(h)
	}
	token, ok := bearerToken(h.Get(authorization))
	if !ok {
		return missingReason
	}
	got := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(got[:], g.want[:]) != 1 {
		return mismatch
	}
	return accepted
}

// bearerToken reads "Bearer <token>"; the scheme is case-insensitive (RFC 9110 §11.1).
func bearerToken(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	token := strings.TrimSpace(v[len(scheme):])
	return token, token != ""
}
