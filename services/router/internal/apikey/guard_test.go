package apikey_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	"github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1/runtimev1connect"
	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/router/internal/apikey"
	"github.com/parleyhq/parley/services/router/internal/apitoken"
	"github.com/parleyhq/parley/services/router/internal/ratelimit"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

var pepper = []byte("a pepper of the test deployment")

// keyset is a keys file in the making, with the keys themselves kept for the test.
type keyset struct {
	file apikey.File
	keys map[string]string // id -> key
}

func newKeyset(t testing.TB, entries ...apikey.Key) *keyset {
	t.Helper()
	ks := &keyset{keys: map[string]string{}}
	for _, e := range entries {
		key, err := apikey.NewKey()
		require.NoError(t, err)
		e.Hash = apikey.Hash(pepper, key)
		ks.keys[e.ID] = key
		ks.file.Keys = append(ks.file.Keys, e)
	}
	return ks
}

func (ks *keyset) write(t testing.TB, path string) {
	t.Helper()
	b, err := ks.file.Marshal()
	require.NoError(t, err)
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, b, 0o600))
	require.NoError(t, os.Rename(tmp, path)) // as a Secret mount swaps its files
}

// daprFake and nativeFake answer with the tenant and key id the guard put in the context.
type daprFake struct {
	runtimev1connect.UnimplementedDaprHandler
}

func (daprFake) ConverseAlpha2(ctx context.Context, _ *runtimev1.ConversationRequestAlpha2) (*runtimev1.ConversationResponseAlpha2, error) {
	c := tenant.From(ctx)
	id := c.Tenant + "/" + c.KeyID
	c.Settle(3)
	return &runtimev1.ConversationResponseAlpha2{ContextId: &id}, nil
}

type nativeFake struct {
	conversationv1connect.UnimplementedConversationServiceHandler
}

func (nativeFake) Converse(ctx context.Context, _ *conversationv1.ConverseRequest) (*conversationv1.ConverseResponse, error) {
	c := tenant.From(ctx)
	return &conversationv1.ConverseResponse{RequestId: c.Tenant + "/" + c.KeyID}, nil
}

func (nativeFake) ConverseStream(ctx context.Context, _ *conversationv1.ConverseStreamRequest, s *connect.ServerStream[conversationv1.ConverseStreamResponse]) error {
	c := tenant.From(ctx)
	return s.Send(&conversationv1.ConverseStreamResponse{RequestId: c.Tenant + "/" + c.KeyID})
}

type fixture struct {
	url     string
	path    string
	keys    *apikey.Keyring
	ks      *keyset
	logs    *syncBuffer
	reg     *prometheus.Registry
	dapr    runtimev1connect.DaprClient
	native  conversationv1connect.ConversationServiceClient
	grpcNat conversationv1connect.ConversationServiceClient
	webNat  conversationv1connect.ConversationServiceClient
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve mounts the guarded routes as the router's fx wiring does.
func serve(t *testing.T, ks *keyset, limiter apikey.Limiter) *fixture {
	t.Helper()
	f := &fixture{path: filepath.Join(t.TempDir(), "keys.yaml"), ks: ks, logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	ks.write(t, f.path)
	logger := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	keys, err := apikey.NewKeyring(f.path, pepper, time.Hour, logger, nil)
	require.NoError(t, err)
	f.keys = keys
	g, err := apikey.NewGuard(keys, nil, limiter, f.reg, logger)
	require.NoError(t, err)
	require.Equal(t, "api-keys", g.Mode())

	mux := http.NewServeMux()
	path, h := runtimev1connect.NewDaprHandler(daprFake{}, connect.WithInterceptors(g.Interceptor()))
	mux.Handle(path, g.DaprRPC(h))
	path, h = conversationv1connect.NewConversationServiceHandler(nativeFake{}, connect.WithInterceptors(g.Interceptor()))
	mux.Handle(path, g.RPC(h))
	mux.Handle("POST /v1/chat/completions", g.Authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, err := g.Admit(r.Context(), r.URL.Query().Get("model"), int(r.ContentLength))
		if err != nil {
			status, retry := apikey.HTTPStatus(err)
			w.Header().Set("Retry-After", strconv.FormatInt(retry, 10))
			http.Error(w, `{"error":{"type":"rate_limit"}}`, status)
			return
		}
		defer tenant.From(ctx).Settle(0)
		c := tenant.From(ctx)
		_, _ = io.WriteString(w, c.Tenant+"/"+c.KeyID)
	}), func(w http.ResponseWriter, _ *http.Request, missing bool) {
		http.Error(w, fmt.Sprintf(`{"error":{"code":"invalid_api_key","missing":%t}}`, missing), http.StatusUnauthorized)
	}))
	mux.Handle("POST /v1.0-alpha2/conversation/{name}/converse", g.DaprHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := tenant.From(r.Context())
		_, _ = io.WriteString(w, c.Tenant+"/"+c.KeyID)
	})))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	f.url = srv.URL
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	grpcHTTP := &http.Client{Transport: &http.Transport{Protocols: h2c}}
	f.dapr = runtimev1connect.NewDaprClient(grpcHTTP, srv.URL, connect.WithGRPC())
	f.native = conversationv1connect.NewConversationServiceClient(http.DefaultClient, srv.URL)
	f.grpcNat = conversationv1connect.NewConversationServiceClient(grpcHTTP, srv.URL, connect.WithGRPC())
	f.webNat = conversationv1connect.NewConversationServiceClient(http.DefaultClient, srv.URL, connect.WithGRPCWeb())
	return f
}

// credentials ways to present a key (or none).
type cred struct {
	name   string
	header func(h http.Header, key string)
}

var creds = []cred{
	{"bearer", func(h http.Header, key string) { h.Set("Authorization", "Bearer "+key) }},
	{"dapr-api-token", func(h http.Header, key string) { h.Set(apitoken.Header, key) }},
}

// call makes one conversation call over api with header set, returning the answer
// (tenant/key id) or the error as an HTTP status or Connect code.
func (f *fixture) call(t *testing.T, api, component string, set func(http.Header)) (answer string, status int, code connect.Code, httpErr http.Header, body string) {
	t.Helper()
	ctx, ci := connect.NewClientContext(t.Context())
	set(ci.RequestHeader())
	switch api {
	case "dapr-http":
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.url+"/v1.0-alpha2/conversation/"+component+"/converse", strings.NewReader(`{"inputs":[]}`))
		require.NoError(t, err)
		set(req.Header)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = res.Body.Close() }()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode == http.StatusOK {
			return string(b), 200, 0, nil, ""
		}
		return "", res.StatusCode, 0, res.Header, string(b)
	case "openai":
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.url+"/v1/chat/completions?model="+component, strings.NewReader(`{"messages":[]}`))
		require.NoError(t, err)
		set(req.Header)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = res.Body.Close() }()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode == http.StatusOK {
			return string(b), 200, 0, nil, ""
		}
		return "", res.StatusCode, 0, res.Header, string(b)
	case "dapr-grpc":
		res, err := f.dapr.ConverseAlpha2(ctx, &runtimev1.ConversationRequestAlpha2{Name: component})
		if err != nil {
			return "", 0, connect.CodeOf(err), nil, err.Error()
		}
		return res.GetContextId(), 0, 0, nil, ""
	case "connect", "grpc", "grpc-web":
		client := map[string]conversationv1connect.ConversationServiceClient{"connect": f.native, "grpc": f.grpcNat, "grpc-web": f.webNat}[api]
		res, err := client.Converse(ctx, &conversationv1.ConverseRequest{Component: component})
		if err != nil {
			return "", 0, connect.CodeOf(err), nil, err.Error()
		}
		return res.GetRequestId(), 0, 0, nil, ""
	case "connect-stream":
		s, err := f.native.ConverseStream(ctx, &conversationv1.ConverseStreamRequest{Request: &conversationv1.ConverseRequest{Component: component}})
		require.NoError(t, err)
		defer func() { _ = s.Close() }()
		if s.Receive() {
			return s.Msg().GetRequestId(), 0, 0, nil, ""
		}
		return "", 0, connect.CodeOf(s.Err()), nil, s.Err().Error()
	}
	t.Fatalf("unknown api %s", api)
	return
}

var apis = []string{"dapr-http", "openai", "dapr-grpc", "connect", "grpc", "grpc-web", "connect-stream"}

// TestKeysOnEveryAPI: a key is accepted in either header on every API and names its
// tenant; a missing, wrong or revoked key is refused with each API's status; a component
// outside the key's list is refused.
func TestKeysOnEveryAPI(t *testing.T) {
	t.Parallel()
	ks := newKeyset(t,
		apikey.Key{ID: "a1", Tenant: "team-a", Components: []string{"echo"}},
		apikey.Key{ID: "old", Tenant: "team-a", Revoked: true},
	)
	f := serve(t, ks, nil)
	wrong, err := apikey.NewKey()
	require.NoError(t, err)

	for _, api := range apis {
		t.Run(api, func(t *testing.T) {
			for _, c := range creds {
				answer, _, _, _, _ := f.call(t, api, "echo", func(h http.Header) { c.header(h, ks.keys["a1"]) })
				require.Equal(t, "team-a/a1", answer, c.name)
			}
			for _, tc := range []struct {
				name string
				key  string
			}{{"missing", ""}, {"wrong", wrong}, {"revoked", ks.keys["old"]}, {"malformed bearer", "x y"}} {
				_, status, code, _, body := f.call(t, api, "echo", func(h http.Header) {
					if tc.key != "" {
						h.Set("Authorization", "Bearer "+tc.key)
					}
				})
				switch api {
				case "dapr-http":
					require.Equal(t, http.StatusUnauthorized, status, tc.name)
					require.Equal(t, "invalid api token\n", body, tc.name)
				case "openai":
					require.Equal(t, http.StatusUnauthorized, status, tc.name)
					require.Contains(t, body, "invalid_api_key", tc.name)
				case "dapr-grpc":
					require.Equal(t, connect.CodeUnauthenticated, code, tc.name)
					require.Contains(t, body, "Unauthorized", tc.name)
				default:
					require.Equal(t, connect.CodeUnauthenticated, code, tc.name)
				}
			}
			_, status, code, _, body := f.call(t, api, "other", func(h http.Header) { h.Set("Authorization", "Bearer "+ks.keys["a1"]) })
			switch api {
			case "dapr-http":
				require.Equal(t, http.StatusForbidden, status)
				require.Contains(t, body, apikey.ErrCodePermissionDenied)
			case "openai":
				require.Equal(t, http.StatusForbidden, status)
			default:
				require.Equal(t, connect.CodePermissionDenied, code)
			}
		})
	}
}

// limiter runs a real limiter on an in-process NATS server.
func limiter(t *testing.T) *ratelimit.Limiter {
	t.Helper()
	srv := natstest.RunServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	// The clock stays in one minute, so the test never sees a window reset.
	fixed := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	l, err := ratelimit.New(js, ratelimit.Options{Now: func() time.Time { return fixed }}, prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, l.Start(t.Context()))
	return l
}

// TestRateLimitRefusals: over its requests per minute a key is refused with each API's
// own shape: 429 with Retry-After and a Dapr error body, ResourceExhausted with RetryInfo.
func TestRateLimitRefusals(t *testing.T) {
	t.Parallel()
	l := limiter(t)
	for _, api := range apis {
		t.Run(api, func(t *testing.T) {
			t.Parallel()
			ks := newKeyset(t, apikey.Key{ID: "lim-" + strings.ReplaceAll(api, "-", "_"), Tenant: "t", RequestsPerMinute: 2})
			f := serve(t, ks, l)
			auth := func(h http.Header) { h.Set("Authorization", "Bearer "+ks.keys[ks.file.Keys[0].ID]) }
			for range 2 {
				answer, _, _, _, _ := f.call(t, api, "echo", auth)
				require.NotEmpty(t, answer)
			}
			_, status, code, header, body := f.call(t, api, "echo", auth)
			if api == "openai" {
				require.Equal(t, http.StatusTooManyRequests, status)
				require.Equal(t, "60", header.Get("Retry-After"))
				return
			}
			if api == "dapr-http" {
				require.Equal(t, http.StatusTooManyRequests, status)
				require.Equal(t, "60", header.Get("Retry-After"))
				require.JSONEq(t, `{"errorCode":"ERR_TOO_MANY_REQUESTS","message":"rate limit exceeded: requests per minute; retry after 60s"}`, body)
				return
			}
			require.Equal(t, connect.CodeResourceExhausted, code, body)
		})
	}
	// The Connect error carries a RetryInfo the client can read.
	ks := newKeyset(t, apikey.Key{ID: "retry", Tenant: "t", RequestsPerMinute: 1})
	f := serve(t, ks, l)
	ctx, ci := connect.NewClientContext(t.Context())
	ci.RequestHeader().Set("Authorization", "Bearer "+ks.keys["retry"])
	_, err := f.native.Converse(ctx, &conversationv1.ConverseRequest{Component: "echo"})
	require.NoError(t, err)
	_, err = f.native.Converse(ctx, &conversationv1.ConverseRequest{Component: "echo"})
	var ce *connect.Error
	require.True(t, errors.As(err, &ce))
	var found bool
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if ri, ok := v.(*errdetails.RetryInfo); ok {
				require.Equal(t, 60*time.Second, ri.GetRetryDelay().AsDuration())
				found = true
			}
		}
	}
	require.True(t, found, "RetryInfo detail")
}

// TestReload: a revoked key is refused after the reload; a file that does not parse keeps
// the previous keys and logs an error naming the file, not the key.
func TestReload(t *testing.T) {
	t.Parallel()
	ks := newKeyset(t, apikey.Key{ID: "a1", Tenant: "team-a"}, apikey.Key{ID: "b1", Tenant: "team-b"})
	f := serve(t, ks, nil)
	auth := func(id string) func(http.Header) {
		return func(h http.Header) { h.Set("Authorization", "Bearer "+ks.keys[id]) }
	}
	answer, _, _, _, _ := f.call(t, "connect", "echo", auth("b1"))
	require.Equal(t, "team-b/b1", answer)

	ks.file.Keys[1].Revoked = true
	ks.write(t, f.path)
	require.NoError(t, f.keys.Reload())
	_, _, code, _, _ := f.call(t, "connect", "echo", auth("b1"))
	require.Equal(t, connect.CodeUnauthenticated, code, "revoked within the reload")

	// A key pasted where its hash belongs: the file is refused, the keys stay.
	bad := strings.Replace(mustMarshal(t, &ks.file), ks.file.Keys[0].Hash, ks.keys["a1"], 1)
	require.NoError(t, os.WriteFile(f.path, []byte(bad), 0o600))
	err := f.keys.Reload()
	require.Error(t, err)
	require.NotContains(t, err.Error(), ks.keys["a1"])
	require.NoError(t, f.keys.Reload(), "the same bad file is reported once")
	answer, _, _, _, _ = f.call(t, "connect", "echo", auth("a1"))
	require.Equal(t, "team-a/a1", answer, "the previous keys stay in force")
}

func mustMarshal(t *testing.T, f *apikey.File) string {
	t.Helper()
	b, err := f.Marshal()
	require.NoError(t, err)
	return string(b)
}

// TestHotReloadUnderLoad: calls keep succeeding on every API while the keys file is
// rewritten and reloaded (keys added and removed around the ones in use).
func TestHotReloadUnderLoad(t *testing.T) {
	t.Parallel()
	ks := newKeyset(t, apikey.Key{ID: "a1", Tenant: "team-a"})
	f := serve(t, ks, nil)
	var stop atomic.Bool
	var failures atomic.Int64
	var calls atomic.Int64
	var wg sync.WaitGroup
	for _, api := range apis {
		wg.Go(func() {
			for !stop.Load() {
				answer, _, _, _, _ := f.call(t, api, "echo", func(h http.Header) { h.Set("Authorization", "Bearer "+ks.keys["a1"]) })
				calls.Add(1)
				if answer != "team-a/a1" {
					failures.Add(1)
				}
			}
		})
	}
	// At least 50 reloads, and on until the callers have made 200 calls among them.
	for i := 0; i < 50 || calls.Load() < 200; i++ {
		next := newKeyset(t, apikey.Key{ID: "extra", Tenant: "x"})
		file := apikey.File{Keys: append([]apikey.Key{ks.file.Keys[0]}, next.file.Keys...)}
		if i%2 == 1 {
			file.Keys = file.Keys[:1]
		}
		(&keyset{file: file}).write(t, f.path)
		require.NoError(t, f.keys.Reload())
	}
	stop.Store(true)
	wg.Wait()
	require.Zero(t, failures.Load())
}

// TestNoKeyMaterialAnywhere plants keys, makes calls that succeed and fail on every API,
// and scans the logs (at debug), the error texts and the metrics for them.
func TestNoKeyMaterialAnywhere(t *testing.T) {
	t.Parallel()
	ks := newKeyset(t, apikey.Key{ID: "a1", Tenant: "team-a", Components: []string{"echo"}, RequestsPerMinute: 3})
	f := serve(t, ks, limiter(t))
	planted := ks.keys["a1"]
	wrong := planted[:len(planted)-4] + "AAAA"
	var seen strings.Builder
	for _, api := range apis {
		for _, key := range []string{planted, wrong} {
			for _, comp := range []string{"echo", "other", "echo", "echo"} {
				for _, c := range creds {
					_, _, _, _, body := f.call(t, api, comp, func(h http.Header) { c.header(h, key) })
					seen.WriteString(body)
				}
			}
		}
	}
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	var metrics bytes.Buffer
	for _, mf := range mfs {
		_, err := expfmt.MetricFamilyToText(&metrics, mf)
		require.NoError(t, err)
	}
	require.Contains(t, metrics.String(), `parley_router_tenant_requests_total{outcome="rate_limited",tenant="team-a"}`)
	secret := strings.TrimPrefix(planted, apikey.Prefix)
	for name, text := range map[string]string{"logs": f.logs.String(), "errors": seen.String(), "metrics": metrics.String()} {
		require.NotContains(t, text, secret, name)
		require.NotContains(t, text, strings.TrimPrefix(wrong, apikey.Prefix), name)
	}
	require.NotEmpty(t, f.logs.String(), "the rejections were logged")
}
