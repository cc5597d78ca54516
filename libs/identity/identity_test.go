package identity_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/libs/devca"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/identity/identitytest"
)

// scrubber answers with the caller's identity, so tests see what the handler saw.
type scrubber struct {
	piiv1connect.UnimplementedScrubberServiceHandler
}

func (scrubber) Scrub(ctx context.Context, _ *piiv1.ScrubRequest) (*piiv1.ScrubResponse, error) {
	id, _ := identity.PeerFrom(ctx)
	return &piiv1.ScrubResponse{Results: []*piiv1.ScrubResult{{Text: id.String()}}}, nil
}

var policy = identity.Policy{piiv1connect.ScrubberServiceScrubProcedure: {identity.Router}}

// serve runs a TLS server for src the way rpcserver does: the listener's TLS config, the
// Peers middleware and the policy on the handler.
func serve(t *testing.T, src *identity.Source) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(piiv1connect.NewScrubberServiceHandler(scrubber{}, src.Authorize(policy)))
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv := &http.Server{Handler: src.Peers(mux), TLSConfig: src.ServerTLS(), Protocols: protocols, ReadHeaderTimeout: time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return "https://" + ln.Addr().String()
}

func scrub(t *testing.T, c *http.Client, url string, opts ...connect.ClientOption) (string, error) {
	t.Helper()
	res, err := piiv1connect.NewScrubberServiceClient(c, url, opts...).Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"x"}})
	if err != nil {
		return "", err
	}
	return res.GetResults()[0].GetText(), nil
}

func TestMutualTLSAndPolicy(t *testing.T) {
	t.Parallel()
	pki := identitytest.New(t)
	url := serve(t, pki.Source(identity.Scrubber))
	other := identitytest.New(t) // another CA, same trust domain and names

	tests := []struct {
		name      string
		client    *http.Client
		wantCode  connect.Code // 0: success
		wantTLS   bool         // the handshake fails, so no code
		wantPeer  string
		wantInErr string
	}{
		{name: "router may scrub", client: pki.Client(identity.Router, identity.Scrubber), wantPeer: "spiffe://parley.test/router"},
		{name: "another service may not", client: pki.Client(identity.Cache, identity.Scrubber), wantCode: connect.CodePermissionDenied, wantInErr: "spiffe://parley.test/cache may not call"},
		{name: "admin may not", client: pki.Client(identity.Admin, identity.Scrubber), wantCode: connect.CodePermissionDenied},
		{name: "no certificate", client: pki.Client("", ""), wantCode: connect.CodeUnauthenticated, wantInErr: "client certificate"},
		{name: "router certificate of another CA", client: identitytest.TLSClient(t, foreignClient(t, other, pki)), wantTLS: true},
		{name: "client expecting another server identity", client: pki.Client(identity.Router, identity.Cache), wantTLS: true, wantInErr: "server is spiffe://parley.test/pii-scrubber, want spiffe://parley.test/cache"},
	}
	for _, tt := range tests {
		for _, proto := range []struct {
			name string
			opts []connect.ClientOption
		}{{"connect", nil}, {"grpc", []connect.ClientOption{connect.WithGRPC()}}} {
			t.Run(tt.name+"/"+proto.name, func(t *testing.T) {
				t.Parallel()
				peer, err := scrub(t, tt.client, url, proto.opts...)
				switch {
				case tt.wantTLS:
					// TLS 1.3 clients learn of a refused certificate on their first write or
					// read: Connect reports unavailable, canceled (a broken pipe) or unknown,
					// never a code from the server.
					require.Error(t, err)
					require.Contains(t, []connect.Code{connect.CodeUnavailable, connect.CodeCanceled, connect.CodeUnknown}, connect.CodeOf(err), "err: %v", err)
				case tt.wantCode != 0:
					require.Equal(t, tt.wantCode, connect.CodeOf(err), "err: %v", err)
				default:
					require.NoError(t, err)
					require.Equal(t, tt.wantPeer, peer)
				}
				if tt.wantInErr != "" {
					require.ErrorContains(t, err, tt.wantInErr)
				}
			})
		}
	}
}

// foreignClient presents a router certificate from CA other, trusting pki's CA for the
// server, as an outsider with its own CA would.
func foreignClient(t *testing.T, other, pki *identitytest.PKI) *tls.Config {
	t.Helper()
	f := other.Files(identity.Router)
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pki.CA().CertPEM())
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}}
}

func TestPolicyIsDenyByDefault(t *testing.T) {
	t.Parallel()
	pki := identitytest.New(t)
	src := pki.Source(identity.Scrubber)
	mux := http.NewServeMux()
	// The policy lists only Scrub: ScrubStream is refused to everyone, routers included.
	mux.Handle(piiv1connect.NewScrubberServiceHandler(scrubber{}, src.Authorize(policy)))
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	srv := &http.Server{Handler: src.Peers(mux), TLSConfig: src.ServerTLS(), Protocols: protocols, ReadHeaderTimeout: time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	stream, err := piiv1connect.NewScrubberServiceClient(pki.Client(identity.Router, identity.Scrubber), "https://"+ln.Addr().String()).ScrubStream(t.Context())
	require.NoError(t, err)
	_ = stream.Send(&piiv1.ScrubStreamRequest{})
	_, err = stream.Receive()
	require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "err: %v", err)
	require.NoError(t, stream.CloseRequest())
	require.NoError(t, stream.CloseResponse())
}

func TestReloadWithoutRestart(t *testing.T) {
	t.Parallel()
	pki := identitytest.New(t)
	logs := &syncBuffer{}
	src, err := identity.NewSource(pki.Config(identity.Scrubber), identity.Scrubber, slog.New(slog.NewTextHandler(logs, nil)))
	require.NoError(t, err)
	require.NoError(t, src.Start(t.Context()))
	t.Cleanup(func() { _ = src.Stop(context.Background()) })
	url := serve(t, src)

	serverSerial := func() string {
		// A fresh client each time: a new connection, so a new handshake.
		c := pki.Client(identity.Router, identity.Scrubber)
		var serial string
		c.Transport.(*http.Transport).TLSClientConfig.VerifyConnection = func(cs tls.ConnectionState) error {
			serial = cs.PeerCertificates[0].SerialNumber.String()
			return nil
		}
		_, err := scrub(t, c, url)
		require.NoError(t, err)
		return serial
	}
	before := serverSerial()
	pki.Reissue(identity.Scrubber)
	require.Eventually(t, func() bool { return serverSerial() != before }, 10*time.Second, 50*time.Millisecond,
		"the server never presented the reissued certificate")

	// A broken file set (a key of another certificate) is refused; the current pair stays.
	current := serverSerial()
	f := pki.Files(identity.Scrubber)
	_, otherKey, err := pki.CA().Issue(identity.Scrubber, time.Hour)
	require.NoError(t, err)
	require.NoError(t, devca.WriteFile(f.Key, otherKey, 0o600))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "do not load; keeping the current certificate") },
		10*time.Second, 50*time.Millisecond, "the broken set was never tried")
	require.Equal(t, current, serverSerial())
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

func TestSourceRefusesBadFiles(t *testing.T) {
	t.Parallel()
	pki := identitytest.New(t)
	other := identitytest.New(t)
	good := pki.Config(identity.Cache)
	foreign := other.Config(identity.Cache)
	tests := []struct {
		name    string
		cfg     func() identity.Config
		service string
		wantErr string
	}{
		{name: "loads", cfg: func() identity.Config { return good }, service: identity.Cache},
		{name: "certificate names another service", cfg: func() identity.Config { return good }, service: identity.Audit, wantErr: "names spiffe://parley.test/cache, but this service is spiffe://parley.test/audit"},
		{name: "certificate of another CA", cfg: func() identity.Config { c := good; c.CertFile, c.KeyFile = foreign.CertFile, foreign.KeyFile; return c }, service: identity.Cache, wantErr: "does not verify against TLS_CA_FILE"},
		{name: "missing key", cfg: func() identity.Config { c := good; c.KeyFile = good.KeyFile + ".missing"; return c }, service: identity.Cache, wantErr: "TLS_KEY_FILE"},
		{name: "other trust domain", cfg: func() identity.Config { c := good; c.TrustDomain = "elsewhere"; return c }, service: identity.Cache, wantErr: "names spiffe://parley.test/cache, but this service is spiffe://elsewhere/cache"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := identity.NewSource(tt.cfg(), tt.service, slog.New(slog.DiscardHandler))
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestOffAllowsEverything(t *testing.T) {
	t.Parallel()
	src, err := identity.NewSource(identity.Config{Mode: identity.ModeOff}, identity.Scrubber, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.False(t, src.Enabled())
	mux := http.NewServeMux()
	mux.Handle(piiv1connect.NewScrubberServiceHandler(scrubber{}, src.Authorize(policy)))
	srv := &http.Server{Handler: src.Peers(mux), ReadHeaderTimeout: time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	peer, err := scrub(t, http.DefaultClient, "http://"+ln.Addr().String())
	require.NoError(t, err)
	require.Equal(t, "spiffe:///", peer, "no identity in plaintext mode")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := identity.Config{Mode: "on", CAFile: "a", CertFile: "b", KeyFile: "c", TrustDomain: "parley.local", ReloadInterval: time.Second}
	tests := []struct {
		name    string
		edit    func(*identity.Config)
		wantErr string
	}{
		{name: "ok", edit: func(*identity.Config) {}},
		{name: "off needs no files", edit: func(c *identity.Config) { *c = identity.Config{Mode: "off"} }},
		{name: "bad mode", edit: func(c *identity.Config) { c.Mode = "maybe" }, wantErr: "INTERNAL_TLS must be on or off"},
		{name: "no cert", edit: func(c *identity.Config) { c.CertFile = "" }, wantErr: "TLS_CERT_FILE must be set"},
		{name: "bad trust domain", edit: func(c *identity.Config) { c.TrustDomain = "Parley Local" }, wantErr: "TLS_TRUST_DOMAIN"},
		{name: "fast reload", edit: func(c *identity.Config) { c.ReloadInterval = time.Millisecond }, wantErr: "TLS_RELOAD_INTERVAL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tt.edit(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestFromCert(t *testing.T) {
	t.Parallel()
	u := func(s string) *url.URL { v, err := url.Parse(s); require.NoError(t, err); return v }
	tests := []struct {
		name    string
		uris    []*url.URL
		want    identity.ID
		wantErr bool
	}{
		{name: "one", uris: []*url.URL{u("spiffe://parley.local/cache")}, want: identity.ID{TrustDomain: "parley.local", Name: "cache"}},
		{name: "none", wantErr: true},
		{name: "two", uris: []*url.URL{u("spiffe://parley.local/cache"), u("spiffe://parley.local/router")}, wantErr: true},
		{name: "nested path", uris: []*url.URL{u("spiffe://parley.local/ns/cache")}, wantErr: true},
		{name: "port", uris: []*url.URL{u("spiffe://parley.local:1/cache")}, wantErr: true},
		{name: "other schemes ignored", uris: []*url.URL{u("https://example.com/x"), u("spiffe://parley.local/router")}, want: identity.ID{TrustDomain: "parley.local", Name: "router"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := identity.FromCert(&x509.Certificate{URIs: tt.uris})
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, id)
			parsed, err := identity.Parse(id.String())
			require.NoError(t, err)
			require.Equal(t, tt.want, parsed)
		})
	}
}
