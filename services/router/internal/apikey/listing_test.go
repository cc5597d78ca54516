package apikey_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	"github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1/runtimev1connect"
	componentv1 "github.com/parleyhq/parley/gen/pb/parley/component/v1"
	"github.com/parleyhq/parley/gen/pb/parley/component/v1/componentv1connect"
	"github.com/parleyhq/parley/services/router/internal/apikey"
	"github.com/parleyhq/parley/services/router/internal/apitoken"
	"github.com/parleyhq/parley/services/router/internal/componentapi"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/daprapi"
)

// loaded is the router's component set: three components, out of order.
type loaded struct{}

func (loaded) List() []conversation.Component {
	return []conversation.Component{
		{Name: "openai", Type: "conversation.openai", Version: "v1"},
		{Name: "echo", Type: "conversation.echo"},
		{Name: "anthropic", Type: "conversation.anthropic", Version: "v1"},
	}
}

func (loaded) Lookup(string) (conversation.Component, bool) { return conversation.Component{}, false }

func (loaded) Converse(context.Context, conversation.Request) (*conversation.Result, error) {
	return nil, errors.New("listing tests never converse")
}

// serveListings mounts the three component listings behind g as the router's fx wiring
// does: Dapr gRPC GetMetadata, GET /v1.0/metadata and the console's ComponentService.
func serveListings(t *testing.T, g *apikey.Guard) string {
	t.Helper()
	h := daprapi.New(loaded{}, loaded{}, daprapi.Options{MaxBodyBytes: 1 << 16, Timeout: time.Second}, slog.New(slog.DiscardHandler))
	mux := http.NewServeMux()
	path, dapr := runtimev1connect.NewDaprHandler(h, connect.WithInterceptors(daprapi.Unimplemented{}, g.Interceptor()))
	mux.Handle(path, g.DaprRPC(dapr))
	mux.Handle("GET /v1.0/metadata", g.DaprHTTP(http.HandlerFunc(h.Metadata)))
	path, comps := componentv1connect.NewComponentServiceHandler(componentapi.New(loaded{}, nil))
	mux.Handle(path, g.RPC(comps))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// listNames lists the component names one API shows a caller presenting set, or the
// refusal as the HTTP status (Dapr HTTP) or the Connect code (the RPC APIs).
func listNames(t *testing.T, url, api string, set func(http.Header)) (names []string, status int, code connect.Code) {
	t.Helper()
	ctx, ci := connect.NewClientContext(t.Context())
	set(ci.RequestHeader())
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	grpcHTTP := &http.Client{Transport: &http.Transport{Protocols: h2c}}
	names = []string{}
	switch api {
	case "dapr-grpc":
		res, err := runtimev1connect.NewDaprClient(grpcHTTP, url, connect.WithGRPC()).GetMetadata(ctx, &runtimev1.GetMetadataRequest{})
		if err != nil {
			return nil, 0, connect.CodeOf(err)
		}
		for _, c := range res.GetRegisteredComponents() {
			names = append(names, c.GetName())
		}
	case "dapr-http":
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/v1.0/metadata", nil)
		require.NoError(t, err)
		set(req.Header)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = res.Body.Close() }()
		if res.StatusCode != http.StatusOK {
			return nil, res.StatusCode, 0
		}
		var md struct {
			Components []struct{ Name string } `json:"components"`
		}
		require.NoError(t, json.NewDecoder(res.Body).Decode(&md))
		for _, c := range md.Components {
			names = append(names, c.Name)
		}
	case "components":
		res, err := componentv1connect.NewComponentServiceClient(http.DefaultClient, url).ListComponents(ctx, &componentv1.ListComponentsRequest{})
		if err != nil {
			return nil, 0, connect.CodeOf(err)
		}
		for _, c := range res.GetComponents() {
			names = append(names, c.GetName())
		}
	default:
		t.Fatalf("unknown api %s", api)
	}
	return names, 0, 0
}

// TestListingsFollowTheKey: Dapr's gRPC GetMetadata, GET /v1.0/metadata and the console's
// ListComponents show a caller only the components its API key may use (a key without a
// list, and DAPR_API_TOKEN or no authentication, see every one); a refused key lists
// nothing, with each API's refusal.
func TestListingsFollowTheKey(t *testing.T) {
	t.Parallel()
	ks := newKeyset(t,
		apikey.Key{ID: "two", Tenant: "team-a", Components: []string{"openai", "echo"}},
		apikey.Key{ID: "ghost", Tenant: "team-a", Components: []string{"echo", "not-loaded"}},
		apikey.Key{ID: "all", Tenant: "team-b"},
		apikey.Key{ID: "gone", Tenant: "team-b", Components: []string{"echo"}, Revoked: true},
	)
	path := filepath.Join(t.TempDir(), "keys.yaml")
	ks.write(t, path)
	logger := slog.New(slog.DiscardHandler)
	keys, err := apikey.NewKeyring(path, pepper, time.Hour, logger, nil)
	require.NoError(t, err)
	withKeys, err := apikey.NewGuard(keys, nil, nil, prometheus.NewRegistry(), logger)
	require.NoError(t, err)
	token, err := apitoken.New("the-shared-token", prometheus.NewRegistry(), logger)
	require.NoError(t, err)
	withToken, err := apikey.NewGuard(nil, token, nil, prometheus.NewRegistry(), logger)
	require.NoError(t, err)
	none, err := apitoken.New("", prometheus.NewRegistry(), logger)
	require.NoError(t, err)
	open, err := apikey.NewGuard(nil, none, nil, prometheus.NewRegistry(), logger)
	require.NoError(t, err)
	urls := map[string]string{"api-keys": serveListings(t, withKeys), "token": serveListings(t, withToken), "open": serveListings(t, open)}

	bearer := func(key string) func(http.Header) {
		return func(h http.Header) { h.Set("Authorization", "Bearer "+key) }
	}
	every := []string{"anthropic", "echo", "openai"}
	tests := []struct {
		name string
		mode string
		set  func(http.Header)
		want []string // nil: refused
	}{
		{name: "key with two components", mode: "api-keys", set: bearer(ks.keys["two"]), want: []string{"echo", "openai"}},
		{name: "key naming one not loaded", mode: "api-keys", set: func(h http.Header) { h.Set(apitoken.Header, ks.keys["ghost"]) }, want: []string{"echo"}},
		{name: "key without a list", mode: "api-keys", set: bearer(ks.keys["all"]), want: every},
		{name: "revoked key", mode: "api-keys", set: bearer(ks.keys["gone"])},
		{name: "no key", mode: "api-keys", set: func(http.Header) {}},
		{name: "DAPR_API_TOKEN", mode: "token", set: func(h http.Header) { h.Set(apitoken.Header, "the-shared-token") }, want: every},
		{name: "wrong DAPR_API_TOKEN", mode: "token", set: func(h http.Header) { h.Set(apitoken.Header, "not-it") }},
		{name: "no authentication", mode: "open", set: func(http.Header) {}, want: every},
	}
	for _, tt := range tests {
		for _, api := range []string{"dapr-grpc", "dapr-http", "components"} {
			t.Run(tt.name+"/"+api, func(t *testing.T) {
				t.Parallel()
				names, status, code := listNames(t, urls[tt.mode], api, tt.set)
				if tt.want != nil {
					require.Equal(t, tt.want, names)
					return
				}
				require.Nil(t, names)
				if api == "dapr-http" {
					require.Equal(t, http.StatusUnauthorized, status)
				} else {
					require.Equal(t, connect.CodeUnauthenticated, code)
				}
			})
		}
	}
}
