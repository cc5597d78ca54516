package apitoken_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/services/router/internal/apitoken"
)

// TestBearer: the OpenAI-compatible routes take the token as a bearer token or in
// dapr-api-token, strip both on success and let the API word the refusal.
func TestBearer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		token        apitoken.Token
		bearer, dapr string
		wantStatus   int
		wantBody     string
		wantMetric   string // reason label counted once, "" for none
	}{
		{name: "no token configured", bearer: "Bearer anything", wantStatus: http.StatusOK, wantBody: "through auth=Bearer anything dapr="},
		{name: "bearer right", token: secret, bearer: "Bearer " + secret, wantStatus: http.StatusOK, wantBody: "through auth= dapr="},
		{name: "scheme is case-insensitive", token: secret, bearer: "bearer " + secret, wantStatus: http.StatusOK, wantBody: "through auth= dapr="},
		{name: "dapr header right", token: secret, dapr: secret, wantStatus: http.StatusOK, wantBody: "through auth= dapr="},
		{name: "bearer wrong", token: secret, bearer: "Bearer nope", wantStatus: http.StatusUnauthorized, wantBody: "refused missing=false", wantMetric: "mismatch"},
		{name: "basic is not bearer", token: secret, bearer: "Basic " + secret, wantStatus: http.StatusUnauthorized, wantBody: "refused missing=true", wantMetric: "missing"},
		{name: "empty bearer", token: secret, bearer: "Bearer ", wantStatus: http.StatusUnauthorized, wantBody: "refused missing=true", wantMetric: "missing"},
		{name: "nothing", token: secret, wantStatus: http.StatusUnauthorized, wantBody: "refused missing=true", wantMetric: "missing"},
		{name: "dapr header wins over bearer", token: secret, bearer: "Bearer " + secret, dapr: "nope", wantStatus: http.StatusUnauthorized, wantBody: "refused missing=false", wantMetric: "mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, reg := newGuard(t, tt.token)
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = fmt.Fprintf(w, "through auth=%s dapr=%s", r.Header.Get("Authorization"), r.Header.Get(apitoken.Header))
			})
			refuse := func(w http.ResponseWriter, _ *http.Request, missing bool) {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = fmt.Fprintf(w, "refused missing=%v", missing)
			}
			req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
			if tt.bearer != "" {
				req.Header.Set("Authorization", tt.bearer)
			}
			if tt.dapr != "" {
				req.Header.Set(apitoken.Header, tt.dapr)
			}
			rec := httptest.NewRecorder()
			g.Bearer(next, refuse).ServeHTTP(rec, req)
			require.Equal(t, tt.wantStatus, rec.Code)
			body, err := io.ReadAll(rec.Body)
			require.NoError(t, err)
			require.Equal(t, tt.wantBody, string(body))
			if tt.wantMetric != "" {
				n, err := testutil.GatherAndCount(reg, "parley_router_api_token_rejected_total")
				require.NoError(t, err)
				require.Equal(t, 1, n)
			}
		})
	}
}
