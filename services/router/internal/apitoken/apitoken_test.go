package apitoken_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
	"github.com/parleyhq/parley/services/router/internal/apitoken"
)

const secret = "s3cret-token"

func newGuard(t *testing.T, token apitoken.Token) (*apitoken.Guard, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	g, err := apitoken.New(token, reg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return g, reg
}

// seen answers with the token header its handler received, to show the guard strips it.
var seen = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, "through, header="+r.Header.Get(apitoken.Header))
})

func TestHTTP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		token      apitoken.Token
		header     []string
		wantStatus int
		wantBody   string
	}{
		{name: "no token configured, none sent", wantStatus: http.StatusOK, wantBody: "through, header="},
		{name: "no token configured, one sent", header: []string{"x"}, wantStatus: http.StatusOK, wantBody: "through, header=x"},
		{name: "missing", token: secret, wantStatus: http.StatusUnauthorized, wantBody: "invalid api token\n"},
		{name: "wrong", token: secret, header: []string{"nope"}, wantStatus: http.StatusUnauthorized, wantBody: "invalid api token\n"},
		{name: "empty", token: secret, header: []string{""}, wantStatus: http.StatusUnauthorized, wantBody: "invalid api token\n"},
		{name: "prefix of the token", token: secret, header: []string{secret[:4]}, wantStatus: http.StatusUnauthorized, wantBody: "invalid api token\n"},
		{name: "right", token: secret, header: []string{secret}, wantStatus: http.StatusOK, wantBody: "through, header="},
		{name: "first value counts, as in Dapr", token: secret, header: []string{"nope", secret}, wantStatus: http.StatusUnauthorized, wantBody: "invalid api token\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, _ := newGuard(t, tt.token)
			req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1.0-alpha2/conversation/echo/converse", strings.NewReader("{}"))
			for _, v := range tt.header {
				req.Header.Add(apitoken.Header, v)
			}
			rec := httptest.NewRecorder()
			g.HTTP(seen).ServeHTTP(rec, req)
			require.Equal(t, tt.wantStatus, rec.Code)
			require.Equal(t, tt.wantBody, rec.Body.String())
			if tt.wantStatus == http.StatusUnauthorized {
				require.Equal(t, "text/plain; charset=utf-8", rec.Header().Get("Content-Type"))
			}
		})
	}
}

func TestDisabledWrappersAreIdentity(t *testing.T) {
	t.Parallel()
	g, _ := newGuard(t, "")
	require.False(t, g.Enabled())
	h := http.NotFoundHandler()
	require.Equal(t, fmt.Sprintf("%p", h), fmt.Sprintf("%p", g.HTTP(h)))
	require.Equal(t, fmt.Sprintf("%p", h), fmt.Sprintf("%p", g.RPC(h)))
}

// conversation answers Converse with the token header it received as the context id.
type conversation struct {
	conversationv1connect.UnimplementedConversationServiceHandler
}

func (conversation) Converse(ctx context.Context, _ *conversationv1.ConverseRequest) (*conversationv1.ConverseResponse, error) {
	info, _ := connect.CallInfoForHandlerContext(ctx)
	return &conversationv1.ConverseResponse{ContextId: "header=" + info.RequestHeader().Get(apitoken.Header)}, nil
}

func h2c() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

func startRPC(t *testing.T, g *apitoken.Guard) string {
	t.Helper()
	mux := http.NewServeMux()
	path, h := conversationv1connect.NewConversationServiceHandler(conversation{})
	mux.Handle(path, g.RPC(h))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = h2c()
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestRPC(t *testing.T) {
	t.Parallel()
	g, _ := newGuard(t, secret)
	url := startRPC(t, g)
	clientProtocols := new(http.Protocols)
	clientProtocols.SetUnencryptedHTTP2(true)
	httpClient := &http.Client{Transport: &http.Transport{Protocols: clientProtocols}}

	tests := []struct {
		name       string
		header     []string
		wantDetail string // empty: the call goes through
	}{
		{name: "missing", wantDetail: "missing api token in request metadata"},
		{name: "wrong", header: []string{"nope"}, wantDetail: "authentication error: api token mismatch"},
		{name: "empty", header: []string{""}, wantDetail: "authentication error: api token mismatch"},
		{name: "right", header: []string{secret}},
	}
	protocols := []struct {
		name string
		opts []connect.ClientOption
	}{{"connect", nil}, {"grpc", []connect.ClientOption{connect.WithGRPC()}}, {"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}}}
	for _, p := range protocols {
		client := conversationv1connect.NewConversationServiceClient(httpClient, url, p.opts...)
		for _, tt := range tests {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				ctx, call := connect.NewClientContext(t.Context())
				for _, v := range tt.header {
					call.RequestHeader().Add(apitoken.Header, v)
				}
				res, err := client.Converse(ctx, &conversationv1.ConverseRequest{})
				if tt.wantDetail == "" {
					require.NoError(t, err)
					require.Equal(t, "header=", res.GetContextId(), "the token must not reach the handler")
					return
				}
				require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), "%v", err)
				var ce *connect.Error
				require.ErrorAs(t, err, &ce)
				require.Equal(t, "Unauthorized", ce.Message())
				require.Len(t, ce.Details(), 1)
				v, derr := ce.Details()[0].Value()
				require.NoError(t, derr)
				require.True(t, proto.Equal(&errdetails.ErrorInfo{
					Reason: "Unauthorized", Domain: "dapr.io",
					Metadata: map[string]string{"http.code": "401", "http.error_message": tt.wantDetail},
				}, v), "%v", v)
			})
		}
	}
}

func TestRPCNotAnRPC(t *testing.T) {
	t.Parallel()
	g, _ := newGuard(t, secret)
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPut, "/parley.conversation.v1.ConversationService/Converse", nil)
	rec := httptest.NewRecorder()
	g.RPC(seen).ServeHTTP(rec, req)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Equal(t, "invalid api token\n", rec.Body.String())
}

func TestRejectedMetric(t *testing.T) {
	t.Parallel()
	g, reg := newGuard(t, secret)
	h := g.HTTP(seen)
	for _, v := range []string{"", "nope", "nope", secret} {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1.0/metadata", nil)
		if v != "" {
			req.Header.Set(apitoken.Header, v)
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP parley_router_api_token_rejected_total Calls refused because the dapr-api-token header was missing or wrong, by reason.
# TYPE parley_router_api_token_rejected_total counter
parley_router_api_token_rejected_total{reason="mismatch"} 2
parley_router_api_token_rejected_total{reason="missing"} 1
`), "parley_router_api_token_rejected_total"))
}

func TestTokenIsRedacted(t *testing.T) {
	t.Parallel()
	cfg := struct{ Token apitoken.Token }{Token: secret}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "cfg", cfg, "token", cfg.Token)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v %q", cfg.Token, cfg.Token), buf.String()} {
		require.NotContains(t, s, secret)
	}
	require.Contains(t, buf.String(), `"token":"REDACTED"`)
	require.Empty(t, apitoken.Token("").String())
}
