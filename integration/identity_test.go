package integration_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	cachev1 "github.com/parleyhq/parley/gen/pb/parley/cache/v1"
	"github.com/parleyhq/parley/gen/pb/parley/cache/v1/cachev1connect"
	"github.com/parleyhq/parley/libs/devca"
)

// foreignClient presents a certificate naming the router, issued by a CA of the
// attacker's own (same trust domain, same names), and trusts the real CA for the server.
func foreignClient(t *testing.T) *http.Client {
	t.Helper()
	dir := t.TempDir()
	_, err := devca.Ensure(dir, st.TrustDomain(), []string{"router"})
	require.NoError(t, err)
	f := devca.FilesOf(dir, "router")
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	require.NoError(t, err)
	cfg, err := st.TLSConfig("")
	require.NoError(t, err)
	cfg.Certificates = []tls.Certificate{pair}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	transport := &http.Transport{Protocols: protocols, TLSClientConfig: cfg}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport}
}

// TestInternalCallersNeedIdentity replays issue 11's attacks on the internal services
// from another process on the same machine: forged cache entries, purges and leases,
// and direct audit queries. Only the identity each RPC allows gets through.
func TestInternalCallersNeedIdentity(t *testing.T) {
	need(t)
	t.Parallel()
	const (
		ok      = connect.Code(0)
		refused = connect.CodeUnavailable // see handshakeRefused
	)
	tenant := "identity-" + nonce(t)
	key := strings.Repeat("cd", 32)
	callers := []struct {
		name   string
		client *http.Client
		want   map[string]connect.Code
	}{
		{"no certificate", clientAs(t, ""), map[string]connect.Code{
			"cache put": connect.CodeUnauthenticated, "cache lookup": connect.CodeUnauthenticated,
			"cache purge": connect.CodeUnauthenticated, "audit list": connect.CodeUnauthenticated,
		}},
		{"certificate of another CA", foreignClient(t), map[string]connect.Code{
			"cache put": refused, "cache lookup": refused, "cache purge": refused, "audit list": refused,
		}},
		{"another service (pii-scrubber)", clientAs(t, "pii-scrubber"), map[string]connect.Code{
			"cache put": connect.CodePermissionDenied, "cache lookup": connect.CodePermissionDenied,
			"cache purge": connect.CodePermissionDenied, "audit list": connect.CodePermissionDenied,
		}},
		{"router", clientAs(t, "router"), map[string]connect.Code{
			"cache purge": connect.CodePermissionDenied, "audit list": ok,
		}},
		{"admin", clientAs(t, "admin"), map[string]connect.Code{
			"cache put": connect.CodePermissionDenied, "cache lookup": connect.CodePermissionDenied,
			"cache purge": ok, "audit list": connect.CodePermissionDenied,
		}},
	}
	// A router stores an entry under each purge target first: the refused purges must leave
	// theirs, and the admin's purge must remove its own.
	routerCache := cachev1connect.NewCacheServiceClient(clientAs(t, "router"), st.URL("cache"))
	for _, target := range []string{tenant + "-purge", tenant + "-purge-admin"} {
		_, err := routerCache.Put(t.Context(), &cachev1.PutRequest{Tenant: target, Component: "echo", Key: key, Value: []byte("genuine answer"), Ttl: durationpb.New(time.Hour)})
		require.NoError(t, err)
	}
	// The group returns once every caller's subtest is done.
	t.Run("callers", func(t *testing.T) {
		for _, caller := range callers {
			t.Run(caller.name, func(t *testing.T) {
				t.Parallel()
				cache := cachev1connect.NewCacheServiceClient(caller.client, st.URL("cache"))
				audit := auditv1connect.NewAuditServiceClient(caller.client, st.URL("audit"))
				calls := map[string]func(ctx context.Context) error{
					"cache put": func(ctx context.Context) error {
						_, err := cache.Put(ctx, &cachev1.PutRequest{Tenant: tenant, Component: "echo", Key: key, Value: []byte("forged answer"), Ttl: durationpb.New(time.Hour)})
						return err
					},
					"cache lookup": func(ctx context.Context) error {
						_, err := cache.Lookup(ctx, &cachev1.LookupRequest{Tenant: tenant + "-lease", Component: "echo", Key: key, LeaseTtl: durationpb.New(time.Minute)})
						return err
					},
					"cache purge": func(ctx context.Context) error {
						target := tenant + "-purge"
						if caller.want["cache purge"] == ok {
							target = tenant + "-purge-admin"
						}
						_, err := cache.Purge(ctx, &cachev1.PurgeRequest{Tenant: target})
						return err
					},
					"audit list": func(ctx context.Context) error {
						ctx, ci := connect.NewClientContext(ctx)
						ci.RequestHeader().Set("Parley-Tenant", "default")
						_, err := audit.ListConversations(ctx, &auditv1.ListConversationsRequest{PageSize: 1})
						return err
					},
				}
				for call, want := range caller.want {
					err := calls[call](t.Context())
					switch want {
					case ok:
						require.NoError(t, err, call)
					case refused:
						require.True(t, handshakeRefused(err), "%s: %v", call, err)
					default:
						require.Equal(t, want, connect.CodeOf(err), "%s: %v", call, err)
					}
				}
			})
		}
	})

	t.Run("nothing the refused callers sent took effect", func(t *testing.T) {
		router := cachev1connect.NewCacheServiceClient(clientAs(t, "router"), st.URL("cache"))
		got, err := router.Get(t.Context(), &cachev1.GetRequest{Tenant: tenant, Component: "echo", Key: key})
		require.NoError(t, err)
		require.False(t, got.GetFound(), "a forged entry was stored")
		// The refused purges removed nothing; the admin's did its job.
		got, err = router.Get(t.Context(), &cachev1.GetRequest{Tenant: tenant + "-purge", Component: "echo", Key: key})
		require.NoError(t, err)
		require.True(t, got.GetFound(), "a refused purge removed an entry")
		require.Equal(t, "genuine answer", string(got.GetValue()))
		got, err = router.Get(t.Context(), &cachev1.GetRequest{Tenant: tenant + "-purge-admin", Component: "echo", Key: key})
		require.NoError(t, err)
		require.False(t, got.GetFound(), "the admin's purge left its entry")
		// No outsider holds the lease: a router's lookup takes it instead of being told to wait.
		res, err := router.Lookup(t.Context(), &cachev1.LookupRequest{Tenant: tenant + "-lease", Component: "echo", Key: key, LeaseTtl: durationpb.New(time.Second)})
		require.NoError(t, err)
		require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, res.GetOutcome())
		_, err = router.Release(t.Context(), &cachev1.ReleaseRequest{Tenant: tenant + "-lease", Component: "echo", Key: key, Lease: res.GetLease()})
		require.NoError(t, err)
	})
}

// TestCertificateReload issues the cache a new certificate in the stack's folder, as a
// renewal by cert-manager would, and waits for the running process to present it: no
// restart, and routers keep calling it.
func TestCertificateReload(t *testing.T) {
	need(t)
	t.Parallel()
	serial := func() string {
		cfg, err := st.TLSConfig("")
		require.NoError(t, err)
		host := strings.TrimPrefix(st.URL("cache"), "https://")
		conn, err := (&tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}).DialContext(t.Context(), "tcp", host)
		require.NoError(t, err)
		defer func() { _ = conn.Close() }()
		return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	pid := st.Process("cache")

	ca, err := devca.Load(st.TrustDomain(), st.Files("").CA, strings.TrimSuffix(st.Files("").CA, ".crt")+".key")
	require.NoError(t, err)
	certPEM, keyPEM, err := ca.Issue("cache", devca.LeafLifetime)
	require.NoError(t, err)
	f := st.Files("cache")
	require.NoError(t, devca.WriteFile(f.Key, keyPEM, 0o600))
	require.NoError(t, devca.WriteFile(f.Cert, certPEM, 0o644))

	require.Eventually(t, func() bool { return serial() != before }, 30*time.Second, 100*time.Millisecond,
		"the cache never presented its new certificate")
	require.Same(t, pid, st.Process("cache"), "the cache was restarted")
	// A router identity still reaches it.
	res, err := cachev1connect.NewCacheServiceClient(clientAs(t, "router"), st.URL("cache")).
		Get(t.Context(), &cachev1.GetRequest{Tenant: "default", Component: "echo", Key: strings.Repeat("ef", 32)})
	require.NoError(t, err)
	require.False(t, res.GetFound())
}

// handshakeRefused reports whether a call failed in the transport, as one does when the
// server rejects the client certificate: TLS 1.3 clients learn it on their first write
// or read, which Connect reports as unavailable, canceled (a broken pipe) or unknown,
// never with a code the server chose.
func handshakeRefused(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeCanceled, connect.CodeUnknown:
		return err != nil
	}
	return false
}
