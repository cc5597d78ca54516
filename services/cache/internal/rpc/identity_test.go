package rpc_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	cachev1 "github.com/parleyhq/parley/gen/pb/parley/cache/v1"
	"github.com/parleyhq/parley/gen/pb/parley/cache/v1/cachev1connect"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/identity/identitytest"
	"github.com/parleyhq/parley/libs/natstest"
)

// TestCallersByIdentity is issue 11's cache attacks from inside: only routers read, fill
// and lease; only the admin identity purges; no certificate, another service's
// certificate or a certificate of another CA gets nothing.
func TestCallersByIdentity(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	fxApp, server := startApp(t, srv)
	t.Cleanup(fxApp.RequireStop)
	pki := identitytest.For(t)

	// An outsider with a router certificate from a CA of its own.
	foreign := identitytest.New(t).Files(identity.Router)
	pair, err := tls.LoadX509KeyPair(foreign.Cert, foreign.Key)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pki.CA().CertPEM())
	foreignClient := identitytest.TLSClient(t, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, Certificates: []tls.Certificate{pair}})

	const (
		ok      = connect.Code(0)
		refused = connect.CodeUnavailable // the handshake fails: no code from the server (see below)
	)
	callers := []struct {
		name   string
		client *http.Client
		want   map[string]connect.Code // by call
	}{
		{"router", pki.Client(identity.Router, identity.Cache), map[string]connect.Code{"put": ok, "get": ok, "lookup": ok, "lookup batch": ok, "put batch": ok, "purge": connect.CodePermissionDenied}},
		{"admin", pki.Client(identity.Admin, identity.Cache), map[string]connect.Code{"put": connect.CodePermissionDenied, "get": connect.CodePermissionDenied, "lookup": connect.CodePermissionDenied, "lookup batch": connect.CodePermissionDenied, "put batch": connect.CodePermissionDenied, "purge": ok}},
		{"another service", pki.Client(identity.Scrubber, identity.Cache), map[string]connect.Code{"put": connect.CodePermissionDenied, "get": connect.CodePermissionDenied, "lookup": connect.CodePermissionDenied, "lookup batch": connect.CodePermissionDenied, "put batch": connect.CodePermissionDenied, "purge": connect.CodePermissionDenied}},
		{"no certificate", pki.Client("", ""), map[string]connect.Code{"put": connect.CodeUnauthenticated, "get": connect.CodeUnauthenticated, "lookup": connect.CodeUnauthenticated, "lookup batch": connect.CodeUnauthenticated, "put batch": connect.CodeUnauthenticated, "purge": connect.CodeUnauthenticated}},
		{"router certificate of another CA", foreignClient, map[string]connect.Code{"put": refused, "get": refused, "lookup": refused, "lookup batch": refused, "put batch": refused, "purge": refused}},
	}
	for _, caller := range callers {
		for _, proto := range protocols {
			client := cachev1connect.NewCacheServiceClient(caller.client, server.URL(), proto.opts...)
			k := key(caller.name + "/" + proto.name)
			calls := map[string]func() error{
				"put": func() error {
					_, err := client.Put(t.Context(), &cachev1.PutRequest{Tenant: tenant, Component: component, Key: k, Value: []byte("forged"), Ttl: durationpb.New(time.Hour)})
					return err
				},
				"get": func() error {
					_, err := client.Get(t.Context(), &cachev1.GetRequest{Tenant: tenant, Component: component, Key: k})
					return err
				},
				"lookup": func() error {
					_, err := client.Lookup(t.Context(), &cachev1.LookupRequest{Tenant: tenant, Component: component, Key: key("lease " + k)})
					return err
				},
				"put batch": func() error {
					_, err := client.PutBatch(t.Context(), &cachev1.PutBatchRequest{Puts: []*cachev1.PutRequest{
						{Tenant: tenant, Component: component, Key: key("batch " + k), Value: []byte("forged"), Ttl: durationpb.New(time.Hour)},
					}})
					return err
				},
				"lookup batch": func() error {
					_, err := client.LookupBatch(t.Context(), &cachev1.LookupBatchRequest{Lookups: []*cachev1.LookupRequest{
						{Tenant: tenant, Component: component, Key: key("batch lease " + k)},
					}})
					return err
				},
				"purge": func() error {
					_, err := client.Purge(t.Context(), &cachev1.PurgeRequest{Tenant: "purged-by-" + caller.name})
					return err
				},
			}
			for _, call := range []string{"put", "put batch", "get", "lookup", "lookup batch", "purge"} {
				t.Run(caller.name+"/"+proto.name+"/"+call, func(t *testing.T) {
					err := calls[call]()
					switch want := caller.want[call]; want {
					case ok:
						require.NoError(t, err)
					case refused:
						// TLS 1.3 clients learn of a refused certificate on their first write or
						// read: Connect reports unavailable, canceled (a broken pipe) or unknown.
						require.Contains(t, []connect.Code{connect.CodeUnavailable, connect.CodeCanceled, connect.CodeUnknown}, connect.CodeOf(err), "err: %v", err)
					default:
						require.Equal(t, want, connect.CodeOf(err), "err: %v", err)
					}
				})
			}
		}
	}

	// Nothing the refused callers sent was stored: a router finds no forged entry.
	router := cachev1connect.NewCacheServiceClient(pki.Client(identity.Router, identity.Cache), server.URL())
	for _, name := range []string{"admin", "another service", "no certificate", "router certificate of another CA"} {
		res, err := router.Get(t.Context(), &cachev1.GetRequest{Tenant: tenant, Component: component, Key: key(name + "/connect")})
		require.NoError(t, err)
		require.False(t, res.GetFound(), "%s stored an entry", name)
	}
}
