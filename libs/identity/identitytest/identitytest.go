// Package identitytest gives tests a development CA in a temporary folder: certificate
// files and identity.Config for any service name, and HTTP clients presenting them.
package identitytest

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/libs/devca"
	"github.com/parleyhq/parley/libs/identity"
)

// TrustDomain is the tests' trust domain.
const TrustDomain = "parley.test"

// PKI is a CA whose files live in a test's temporary folder.
type PKI struct {
	tb     testing.TB
	dir    string
	ca     *devca.CA
	mu     sync.Mutex
	issued map[string]bool
}

// New creates a CA, removed with the test.
func New(tb testing.TB) *PKI {
	tb.Helper()
	ca, err := devca.New(TrustDomain, time.Hour)
	if err != nil {
		tb.Fatalf("identitytest: %v", err)
	}
	dir := tb.TempDir()
	if err := devca.WriteFile(devca.FilesOf(dir, "").CA, ca.CertPEM(), 0o644); err != nil {
		tb.Fatalf("identitytest: %v", err)
	}
	return &PKI{tb: tb, dir: dir, ca: ca, issued: map[string]bool{}}
}

// CA is the authority.
func (p *PKI) CA() *devca.CA { return p.ca }

// Files returns name's files, issuing its certificate on first use.
func (p *PKI) Files(name string) devca.Files {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	f := devca.FilesOf(p.dir, name)
	if !p.issued[name] {
		p.Reissue(name)
		p.issued[name] = true
	}
	return f
}

// Reissue writes a new certificate and key for name over its files.
func (p *PKI) Reissue(name string) {
	p.tb.Helper()
	f := devca.FilesOf(p.dir, name)
	certPEM, keyPEM, err := p.ca.Issue(name, time.Hour)
	if err != nil {
		p.tb.Fatalf("identitytest: %v", err)
	}
	if err := devca.WriteFile(f.Key, keyPEM, 0o600); err != nil {
		p.tb.Fatalf("identitytest: %v", err)
	}
	if err := devca.WriteFile(f.Cert, certPEM, 0o644); err != nil {
		p.tb.Fatalf("identitytest: %v", err)
	}
}

// Config is the identity configuration of service name, with a fast reload poll.
func (p *PKI) Config(name string) identity.Config {
	p.tb.Helper()
	f := p.Files(name)
	return identity.Config{
		Mode: identity.ModeOn, CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key,
		TrustDomain: TrustDomain, ReloadInterval: 100 * time.Millisecond,
	}
}

// Source loads name's identity (not polling: nothing calls Start).
func (p *PKI) Source(name string) *identity.Source {
	p.tb.Helper()
	s, err := identity.NewSource(p.Config(name), name, slog.New(slog.DiscardHandler))
	if err != nil {
		p.tb.Fatalf("identitytest: %v", err)
	}
	return s
}

// Client is an HTTP client (HTTP/2 over TLS, HTTP/1.1 fallback) presenting as's
// certificate to service server and verifying that server's identity. With as empty it
// presents no certificate and verifies the server by the CA and host name only.
func (p *PKI) Client(as, server string) *http.Client {
	p.tb.Helper()
	var cfg *tls.Config
	if as == "" {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(p.ca.CertPEM())
		cfg = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
	} else {
		cfg = p.Source(as).ClientTLS(server)
	}
	return TLSClient(p.tb, cfg)
}

// TLSClient wraps cfg in an HTTP client speaking HTTP/2 (ALPN) or HTTP/1.1, whose idle
// connections close with the test.
func TLSClient(tb testing.TB, cfg *tls.Config) *http.Client {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	transport := &http.Transport{TLSClientConfig: cfg, Protocols: protocols}
	tb.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport}
}

var (
	perTestMu sync.Mutex
	perTest   = map[testing.TB]*PKI{}
)

// For returns test tb's CA, created on first use: every helper of one test that asks
// gets the same CA, so an app booted by one helper and a client made by another trust
// each other.
func For(tb testing.TB) *PKI {
	tb.Helper()
	perTestMu.Lock()
	defer perTestMu.Unlock()
	if p, ok := perTest[tb]; ok {
		return p
	}
	p := New(tb)
	perTest[tb] = p
	tb.Cleanup(func() {
		perTestMu.Lock()
		defer perTestMu.Unlock()
		delete(perTest, tb)
	})
	return p
}
