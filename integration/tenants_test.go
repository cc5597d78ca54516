package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	"github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1/runtimev1connect"
	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	componentv1 "github.com/parleyhq/parley/gen/pb/parley/component/v1"
	"github.com/parleyhq/parley/gen/pb/parley/component/v1/componentv1connect"
	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
)

// keyed carries a key on every call of a client: as a bearer token.
type keyed struct {
	next http.RoundTripper
	key  string
}

func (k keyed) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if k.key != "" {
		r.Header.Set("Authorization", "Bearer "+k.key)
	}
	return k.next.RoundTrip(r)
}

func keyedClient(key string) *http.Client {
	return &http.Client{Transport: keyed{next: h2cClient().Transport, key: key}}
}

var protocols = []struct {
	name string
	opt  []connect.ClientOption
}{{"connect", nil}, {"grpc", []connect.ClientOption{connect.WithGRPC()}}, {"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}}}

// TestTenants runs two routers with one keys file made by `parley keys create`: the
// routers share one rate limit; tenants never see each other's cache entries or audit
// rows on any API; missing, wrong and revoked keys are refused everywhere; and no key
// appears in the routers' logs or the audit log.
func TestTenants(t *testing.T) {
	need(t)
	t.Parallel()
	dir := t.TempDir()
	keysFile := filepath.Join(dir, "keys.yaml")
	const pepper = "integration pepper of the tenants test"
	env := map[string]string{"ROUTER_API_KEYS_FILE": keysFile, "ROUTER_API_KEY_PEPPER": pepper}
	keys := map[string]string{}
	for _, k := range [][]string{
		{"-id", "a", "-tenant", "team-a"},
		{"-id", "b", "-tenant", "team-b"},
		{"-id", "ops", "-tenant", "ops", "-admin"},
		{"-id", "lim", "-tenant", "team-c", "-rpm", "5"},
		{"-id", "gone", "-tenant", "team-a"},
		{"-id", "echo-only", "-tenant", "team-a", "-components", "echo-nocache"},
	} {
		res := runParley(t, env, "", append([]string{"keys", "create"}, k...)...)
		require.Equal(t, 0, res.code, res.stderr)
		keys[k[1]] = strings.TrimSpace(res.stdout)
	}
	routers := []string{"router-keys-1", "router-keys-2"}
	for _, name := range routers {
		require.NoError(t, st.StartInstance(t.Context(), "router", name, map[string]string{
			"ROUTER_API_KEYS_FILE": keysFile, "ROUTER_API_KEY_PEPPER": pepper, "ROUTER_API_KEYS_RELOAD_INTERVAL": "200ms",
		}))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
			defer cancel()
			require.NoError(t, st.StopService(ctx, name))
		})
	}
	native := func(router, key string, opt ...connect.ClientOption) conversationv1connect.ConversationServiceClient {
		return conversationv1connect.NewConversationServiceClient(keyedClient(key), st.URL(router), opt...)
	}
	audit := func(router, key string, opt ...connect.ClientOption) auditv1connect.AuditServiceClient {
		return auditv1connect.NewAuditServiceClient(keyedClient(key), st.URL(router), opt...)
	}
	daprHTTP := func(router, header, key, component, text string) httpResult {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, st.URL(router)+"/v1.0-alpha1/conversation/"+component+"/converse",
			strings.NewReader(fmt.Sprintf(`{"inputs":[{"content":%q}]}`, text)))
		require.NoError(t, err)
		if key != "" {
			req.Header.Set(header, key)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = res.Body.Close() }()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return httpResult{status: res.StatusCode, header: res.Header, body: string(b)}
	}
	converse := func(client conversationv1connect.ConversationServiceClient, component, text string) (*conversationv1.ConverseResponse, error) {
		return client.Converse(t.Context(), &conversationv1.ConverseRequest{
			Component: component, Messages: []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: text}},
		})
	}

	t.Run("two routers share one limit", func(t *testing.T) {
		// N = 5 requests a minute for key lim, over both routers and two APIs; a minute
		// that turns during the run starts it again.
		for attempt := 0; ; attempt++ {
			require.Less(t, attempt, 3, "the minute turned during every attempt")
			minute := time.Now().UTC().Truncate(time.Minute)
			var admitted, refused int
			for i := range 10 {
				router := routers[i%2]
				if i%4 < 2 {
					res := daprHTTP(router, "dapr-api-token", keys["lim"], "echo-nocache", "limit")
					switch res.status {
					case http.StatusOK:
						admitted++
					case http.StatusTooManyRequests:
						refused++
						require.NotEmpty(t, res.header.Get("Retry-After"))
					default:
						t.Fatalf("status %d", res.status)
					}
					continue
				}
				_, err := converse(native(router, keys["lim"]), "echo-nocache", "limit")
				switch {
				case err == nil:
					admitted++
				case connect.CodeOf(err) == connect.CodeResourceExhausted:
					refused++
				default:
					t.Fatalf("error %v", err)
				}
			}
			if !time.Now().UTC().Truncate(time.Minute).Equal(minute) {
				continue
			}
			if attempt == 0 {
				require.Equal(t, 5, admitted, "N allowed across both routers")
			} else {
				require.LessOrEqual(t, admitted, 5)
			}
			require.Equal(t, 10-admitted, refused)
			break
		}
	})

	n := nonce(t)
	var requestID string
	t.Run("cache isolation", func(t *testing.T) {
		text := "tenant secret " + n
		res, err := converse(native(routers[0], keys["a"]), "echo", text)
		require.NoError(t, err)
		require.False(t, res.GetCacheHit())
		requestID = res.GetRequestId()
		require.Eventually(t, func() bool {
			res, err := converse(native(routers[1], keys["a"]), "echo", text)
			return err == nil && res.GetCacheHit()
		}, 10*time.Second, 50*time.Millisecond, "tenant a's own entry answers it on the other router")
		// Tenant b sends what tenant a's entries hold, first over each protocol and router:
		// never a hit.
		for i, p := range protocols {
			text := fmt.Sprintf("tenant secret %s over %s", n, p.name)
			_, err := converse(native(routers[0], keys["a"]), "echo", text)
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				res, err := converse(native(routers[1], keys["a"]), "echo", text)
				return err == nil && res.GetCacheHit()
			}, 10*time.Second, 50*time.Millisecond)
			res, err := converse(native(routers[i%2], keys["b"], p.opt...), "echo", text)
			require.NoError(t, err)
			require.False(t, res.GetCacheHit(), "tenant b must not get tenant a's cached answer (%s)", p.name)
		}
	})

	t.Run("audit isolation", func(t *testing.T) {
		require.NotEmpty(t, requestID)
		auditRow(t, audit(routers[0], keys["a"]), requestID)
		for _, p := range protocols {
			for _, router := range routers {
				a, b := audit(router, keys["a"], p.opt...), audit(router, keys["b"], p.opt...)
				_, err := b.GetConversation(t.Context(), &auditv1.GetConversationRequest{RequestId: requestID})
				require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "get (%s)", p.name)
				list, err := b.ListConversations(t.Context(), &auditv1.ListConversationsRequest{TextQuery: n})
				require.NoError(t, err)
				for _, c := range list.GetConversations() {
					require.Equal(t, "team-b", c.GetTenant(), "list (%s)", p.name)
					require.NotEqual(t, requestID, c.GetRequestId())
				}
				list, err = a.ListConversations(t.Context(), &auditv1.ListConversationsRequest{TextQuery: n})
				require.NoError(t, err)
				require.NotEmpty(t, list.GetConversations())
				for _, c := range list.GetConversations() {
					require.Equal(t, "team-a", c.GetTenant())
					require.Equal(t, "a", c.GetKeyId())
				}
				byKey := &auditv1.GetUsageStatsRequest{Bucket: auditv1.UsageBucket_USAGE_BUCKET_HOUR, GroupBy: []auditv1.UsageDimension{auditv1.UsageDimension_USAGE_DIMENSION_KEY}}
				stats, err := b.GetUsageStats(t.Context(), byKey)
				require.NoError(t, err)
				for _, s := range stats.GetStats() {
					require.Equal(t, "team-b", s.GetTenant(), "stats (%s)", p.name)
					require.NotEqual(t, "a", s.GetKeyId())
				}
				// Naming another tenant: refused for b, allowed for the admin key.
				ctx, ci := connect.NewClientContext(t.Context())
				ci.RequestHeader().Set("Parley-Tenant", "team-a")
				_, err = b.ListConversations(ctx, &auditv1.ListConversationsRequest{TextQuery: n})
				require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err))
				got, err := audit(router, keys["ops"], p.opt...).GetConversation(ctx, &auditv1.GetConversationRequest{RequestId: requestID})
				require.NoError(t, err)
				require.Equal(t, "a", got.GetConversation().GetKeyId())
				stats, err = audit(router, keys["ops"], p.opt...).GetUsageStats(ctx, byKey)
				require.NoError(t, err)
				var seen bool
				for _, s := range stats.GetStats() {
					seen = seen || s.GetKeyId() == "a"
				}
				require.True(t, seen, "the admin sees team-a's usage by key")
			}
		}
	})

	t.Run("bad keys refused on every API", func(t *testing.T) {
		res := runParley(t, env, "", "keys", "revoke", "gone")
		require.Equal(t, 0, res.code, res.stderr)
		require.Eventually(t, func() bool {
			_, err := converse(native(routers[0], keys["gone"]), "echo-nocache", "x")
			_, err2 := converse(native(routers[1], keys["gone"]), "echo-nocache", "x")
			return connect.CodeOf(err) == connect.CodeUnauthenticated && connect.CodeOf(err2) == connect.CodeUnauthenticated
		}, 10*time.Second, 50*time.Millisecond, "the revoked key is refused within the reload interval")
		wrong := keys["a"][:len(keys["a"])-4] + "AAAA"
		for _, key := range []string{"", wrong, keys["gone"]} {
			for _, router := range routers {
				for _, header := range []string{"dapr-api-token", "Authorization"} {
					k := key
					if header == "Authorization" && k != "" {
						k = "Bearer " + k
					}
					require.Equal(t, http.StatusUnauthorized, daprHTTP(router, header, k, "echo-nocache", "x").status)
				}
				dapr := runtimev1connect.NewDaprClient(keyedClient(key), st.URL(router), connect.WithGRPC())
				_, err := dapr.ConverseAlpha2(t.Context(), &runtimev1.ConversationRequestAlpha2{Name: "echo-nocache"})
				require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
				for _, p := range protocols {
					_, err := converse(native(router, key, p.opt...), "echo-nocache", "x")
					require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), p.name)
					_, err = audit(router, key, p.opt...).ListConversations(t.Context(), &auditv1.ListConversationsRequest{})
					require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), p.name)
				}
			}
		}
		// A component outside the key's list.
		require.Equal(t, http.StatusForbidden, daprHTTP(routers[0], "dapr-api-token", keys["echo-only"], "echo", "x").status)
		_, err := converse(native(routers[1], keys["echo-only"]), "echo", "x")
		require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err))
	})

	t.Run("openai-compatible api", func(t *testing.T) {
		chat := func(router, key, model string) httpResult {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, st.URL(router)+"/v1/chat/completions",
				strings.NewReader(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"openai %s"}]}`, model, n)))
			require.NoError(t, err)
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer func() { _ = res.Body.Close() }()
			b, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			return httpResult{status: res.StatusCode, header: res.Header, body: string(b)}
		}
		// A key's conversation runs as its tenant: the audit row names it and the key.
		res := chat(routers[0], keys["a"], "echo-nocache")
		require.Equal(t, http.StatusOK, res.status, res.body)
		row := auditRow(t, audit(routers[0], keys["a"]), res.header.Get("Parley-Request-Id"))
		require.Equal(t, auditv1.Api_API_OPENAI, row.GetApi())
		require.Equal(t, "team-a", row.GetTenant())
		require.Equal(t, "a", row.GetKeyId())
		// Refusals in OpenAI's shape.
		for _, tc := range []struct {
			key, model string
			status     int
			code       string
		}{
			{"", "echo-nocache", http.StatusUnauthorized, `"code":null`},
			{keys["gone"], "echo-nocache", http.StatusUnauthorized, `"code":"invalid_api_key"`},
			{keys["echo-only"], "echo", http.StatusForbidden, `"code":"model_not_allowed"`},
		} {
			res := chat(routers[1], tc.key, tc.model)
			require.Equal(t, tc.status, res.status, res.body)
			require.Contains(t, res.body, tc.code)
		}
		// A key limited to echo-nocache lists only it.
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, st.URL(routers[0])+"/v1/models", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+keys["echo-only"])
		models, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(models.Body)
		_ = models.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, models.StatusCode, string(b))
		require.Contains(t, string(b), `"id":"echo-nocache"`)
		require.NotContains(t, string(b), `"id":"echo"`)
		// Key lim admits 5 requests a minute over both routers: of 12 quick calls (two
		// minutes at most) at least two are refused, with Retry-After.
		var limited httpResult
		for i := range 12 {
			if limited = chat(routers[i%2], keys["lim"], "echo-nocache"); limited.status == http.StatusTooManyRequests {
				break
			}
		}
		require.Equal(t, http.StatusTooManyRequests, limited.status, limited.body)
		require.Contains(t, limited.body, `"code":"rate_limit_exceeded"`)
		require.NotEmpty(t, limited.header.Get("Retry-After"))
	})

	t.Run("listings follow the key", func(t *testing.T) {
		// Dapr's metadata (HTTP and gRPC) and the console's component list: a key with a
		// components list sees only those; a key without one sees every loaded component.
		list := func(router, key string) (httpNames, grpcNames, consoleNames []string) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, st.URL(router)+"/v1.0/metadata", nil)
			require.NoError(t, err)
			req.Header.Set("dapr-api-token", key)
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer func() { _ = res.Body.Close() }()
			require.Equal(t, http.StatusOK, res.StatusCode)
			var md struct {
				Components []struct{ Name string } `json:"components"`
			}
			require.NoError(t, json.NewDecoder(res.Body).Decode(&md))
			for _, c := range md.Components {
				httpNames = append(httpNames, c.Name)
			}
			grpcMD, err := runtimev1connect.NewDaprClient(keyedClient(key), st.URL(router), connect.WithGRPC()).GetMetadata(t.Context(), &runtimev1.GetMetadataRequest{})
			require.NoError(t, err)
			for _, c := range grpcMD.GetRegisteredComponents() {
				grpcNames = append(grpcNames, c.GetName())
			}
			comps, err := componentv1connect.NewComponentServiceClient(keyedClient(key), st.URL(router)).ListComponents(t.Context(), &componentv1.ListComponentsRequest{})
			require.NoError(t, err)
			for _, c := range comps.GetComponents() {
				consoleNames = append(consoleNames, c.GetName())
			}
			return httpNames, grpcNames, consoleNames
		}
		for _, router := range routers {
			h, g, c := list(router, keys["echo-only"])
			require.Equal(t, []string{"echo-nocache"}, h)
			require.Equal(t, h, g)
			require.Equal(t, h, c)
			h, g, c = list(router, keys["a"])
			require.Contains(t, h, "echo")
			require.Contains(t, h, "echo-nocache")
			require.Equal(t, h, g)
			require.Equal(t, h, c)
		}
	})

	t.Run("hot reload under load", func(t *testing.T) {
		// Callers on both routers while the file is rewritten (keys added by the CLI,
		// each a reload of every router): no call fails.
		var stop atomic.Bool
		var calls, failures atomic.Int64
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				client := native(routers[i%2], keys["a"], protocols[i%3].opt...)
				for !stop.Load() {
					_, err := converse(client, "echo-nocache", "reload")
					calls.Add(1)
					if err != nil {
						failures.Add(1)
						t.Errorf("call during reload: %v", err)
					}
				}
			})
		}
		for i := range 6 {
			res := runParley(t, env, "", "keys", "create", "-id", fmt.Sprintf("reload-%d", i), "-tenant", "team-r")
			require.Equal(t, 0, res.code, res.stderr)
			keys[fmt.Sprintf("reload-%d", i)] = strings.TrimSpace(res.stdout)
		}
		// The last key works on both routers once they reloaded: every router reloaded
		// while the callers ran.
		require.Eventually(t, func() bool {
			_, err1 := converse(native(routers[0], keys["reload-5"]), "echo-nocache", "x")
			_, err2 := converse(native(routers[1], keys["reload-5"]), "echo-nocache", "x")
			return err1 == nil && err2 == nil
		}, 10*time.Second, 50*time.Millisecond)
		stop.Store(true)
		wg.Wait()
		require.Positive(t, calls.Load())
		require.Zero(t, failures.Load())
	})

	t.Run("no key material in logs or the audit log", func(t *testing.T) {
		row := auditRow(t, audit(routers[0], keys["a"]), requestID)
		rowText := jsonText(t, row.GetRequest()) + jsonText(t, row.GetResponse()) + row.String()
		metrics := map[string]string{}
		for _, router := range routers {
			m := get(t, st.URL(router)+"/metrics")
			require.Equal(t, http.StatusOK, m.status)
			require.Contains(t, m.body, `parley_router_tenant_requests_total{outcome="rate_limited",tenant="team-c"}`)
			metrics[router] = m.body
		}
		for id, key := range keys {
			secret := strings.TrimPrefix(key, "pk_")
			for _, router := range routers {
				require.NotContains(t, st.Process(router).Log(), secret, "key %s in %s's log", id, router)
				require.NotContains(t, metrics[router], secret, "key %s in %s's metrics", id, router)
			}
			require.NotContains(t, rowText, secret, "key %s in the audit row", id)
		}
	})
}
