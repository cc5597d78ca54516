package identity

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// Source holds the service's current certificate, key and trust bundle, and hands out
// TLS configurations that always use the current ones: a reload changes what the next
// handshake presents and trusts, with no restart and no new listener or client.
type Source struct {
	cfg    Config
	self   ID
	logger *slog.Logger
	cur    atomic.Pointer[material]
	// badDigest is the digest of the last file set that failed to load, so that a bad
	// set is reported once, not on every poll.
	badDigest [sha256.Size]byte
	stop      chan struct{}
	done      chan struct{}
}

// material is one loaded set of files.
type material struct {
	cert   *tls.Certificate
	roots  *x509.CertPool
	digest [sha256.Size]byte
	server *tls.Config
	// grpcServer is server offering GRPCProtocol first (GRPCServerTLS).
	grpcServer *tls.Config
}

// NewSource loads the files of cfg for service name; the certificate must name
// spiffe://<trust domain>/<name>, chain to the bundle and be valid now. With
// INTERNAL_TLS=off it returns a disabled Source and loads nothing.
func NewSource(cfg Config, name string, logger *slog.Logger) (*Source, error) {
	s := &Source{cfg: cfg, self: ID{TrustDomain: cfg.TrustDomain, Name: name}, logger: logger}
	if !cfg.Enabled() {
		return s, nil
	}
	m, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	return s, nil
}

// Enabled reports whether internal calls use mutual TLS.
func (s *Source) Enabled() bool { return s.cfg.Enabled() }

// NotAfter is when the certificate in use expires (zero when disabled).
func (s *Source) NotAfter() time.Time {
	if m := s.cur.Load(); m != nil {
		return m.cert.Leaf.NotAfter
	}
	return time.Time{}
}

// TrustDomain is the trust domain every peer must belong to.
func (s *Source) TrustDomain() string { return s.cfg.TrustDomain }

// Start polls the files every ReloadInterval until Stop; it logs a warning when
// INTERNAL_TLS is off.
func (s *Source) Start(context.Context) error {
	if !s.Enabled() {
		s.logger.Warn("INTERNAL_TLS=off: internal calls are neither authenticated nor encrypted, and every internal RPC is open to whoever reaches the port")
		return nil
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.poll()
	m := s.cur.Load()
	s.logger.Info("service identity loaded", "identity", s.self.String(), "not_after", m.cert.Leaf.NotAfter.UTC())
	return nil
}

// Stop ends the polling.
func (s *Source) Stop(context.Context) error {
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
	return nil
}

func (s *Source) poll() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.reload()
		}
	}
}

// reload loads the files again when their content changed. A set that does not load
// (a half-written rotation, say) leaves the current one in place.
func (s *Source) reload() {
	files, digest, err := s.read()
	if err != nil {
		s.logger.Warn("reading certificate files failed; keeping the current certificate", "err", err.Error())
		return
	}
	if digest == s.cur.Load().digest || digest == s.badDigest {
		return
	}
	m, err := s.parse(files, digest)
	if err != nil {
		s.badDigest = digest
		s.logger.Warn("new certificate files do not load; keeping the current certificate", "err", err.Error())
		return
	}
	s.cur.Store(m)
	s.logger.Info("service identity reloaded", "identity", s.self.String(), "not_after", m.cert.Leaf.NotAfter.UTC())
}

func (s *Source) load() (*material, error) {
	files, digest, err := s.read()
	if err != nil {
		return nil, err
	}
	return s.parse(files, digest)
}

type pemFiles struct{ ca, cert, key []byte }

func (s *Source) read() (pemFiles, [sha256.Size]byte, error) {
	var f pemFiles
	var err error
	if f.ca, err = os.ReadFile(s.cfg.CAFile); err != nil {
		return f, [sha256.Size]byte{}, fmt.Errorf("TLS_CA_FILE: %w", err)
	}
	if f.cert, err = os.ReadFile(s.cfg.CertFile); err != nil {
		return f, [sha256.Size]byte{}, fmt.Errorf("TLS_CERT_FILE: %w", err)
	}
	if f.key, err = os.ReadFile(s.cfg.KeyFile); err != nil {
		return f, [sha256.Size]byte{}, fmt.Errorf("TLS_KEY_FILE: %w", err)
	}
	h := sha256.New()
	for _, b := range [][]byte{f.ca, f.cert, f.key} {
		_, _ = fmt.Fprintf(h, "%d:", len(b))
		_, _ = h.Write(b)
	}
	var digest [sha256.Size]byte
	h.Sum(digest[:0])
	return f, digest, nil
}

func (s *Source) parse(f pemFiles, digest [sha256.Size]byte) (*material, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(f.ca) {
		return nil, fmt.Errorf("TLS_CA_FILE %s holds no PEM certificate", s.cfg.CAFile)
	}
	cert, err := tls.X509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE (%s, %s): %w", s.cfg.CertFile, s.cfg.KeyFile, err)
	}
	leaf := cert.Leaf
	id, err := FromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("TLS_CERT_FILE %s: %w", s.cfg.CertFile, err)
	}
	if id != s.self {
		return nil, fmt.Errorf("TLS_CERT_FILE %s names %s, but this service is %s", s.cfg.CertFile, id, s.self)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: intermediates(cert.Certificate[1:]),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fmt.Errorf("TLS_CERT_FILE %s does not verify against TLS_CA_FILE %s: %w", s.cfg.CertFile, s.cfg.CAFile, err)
	}
	m := &material{cert: &cert, roots: roots, digest: digest}
	m.server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// A handshake without a certificate is allowed so that probes and metric scrapers
		// reach /healthz, /readyz and /metrics; every RPC requires a verified peer.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  roots,
		NextProtos: serverProtocols(false),
	}
	m.grpcServer = m.server.Clone()
	m.grpcServer.NextProtos = serverProtocols(true)
	return m, nil
}

func intermediates(ders [][]byte) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, der := range ders {
		if c, err := x509.ParseCertificate(der); err == nil {
			pool.AddCert(c)
		}
	}
	return pool
}

// ServerTLS is the listener's configuration: the current certificate, client
// certificates verified against the current bundle when given (see Peers), TLS 1.3,
// ALPN h2 and http/1.1. Session tickets stay on, so a reconnecting client resumes
// without a full handshake.
func (s *Source) ServerTLS() *tls.Config {
	return s.serverTLS(false)
}

// GRPCServerTLS is ServerTLS for a port that hands the connections whose client chose
// GRPCProtocol to grpc-go's server (libs/rpcserver, through grpcbridge.Split): it offers
// GRPCProtocol first, then h2 and http/1.1. A server that cannot serve GRPCProtocol's
// connections must use ServerTLS, so that such clients fall back to h2.
func (s *Source) GRPCServerTLS() *tls.Config {
	return s.serverTLS(true)
}

func (s *Source) serverTLS(grpc bool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: serverProtocols(grpc),
		// Returning the prebuilt per-material config keeps this Config's session ticket
		// keys (crypto/tls uses the original's when the returned one sets none).
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.cur.Load()
			if grpc {
				return m.grpcServer, nil
			}
			return m.server, nil
		},
	}
}

// serverProtocols are a server's ALPN protocols, in its order of preference: h2 and
// http/1.1, after GRPCProtocol when grpc.
func serverProtocols(grpc bool) []string {
	if grpc {
		return []string{GRPCProtocol, "h2", "http/1.1"}
	}
	return []string{"h2", "http/1.1"}
}

// GRPCProtocol is the ALPN protocol an internal caller offers, before h2, to have its
// connection served by the service's grpc-go server rather than net/http's (libs/rpcserver
// splits a TLS port by it, offering it with GRPCServerTLS). The connection then carries
// gRPC over HTTP/2 as h2 would; a server that does not offer it answers h2, which serves
// gRPC as well.
const GRPCProtocol = "parley-grpc"

// ClientTLS is the configuration for calls to service server: it presents the current
// certificate and accepts only a server whose certificate chains to the current bundle
// and names spiffe://<trust domain>/<server>. Host names play no part. Sessions are
// cached for resumption.
func (s *Source) ClientTLS(server string) *tls.Config {
	want := ID{TrustDomain: s.cfg.TrustDomain, Name: server}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		// Verification is VerifyConnection's below (chain plus SPIFFE identity, run on
		// resumed sessions too), not the host-name check.
		InsecureSkipVerify:   true, //nolint:gosec // VerifyConnection verifies the chain and the peer's identity
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return s.cur.Load().cert, nil },
		VerifyConnection:     func(cs tls.ConnectionState) error { return s.verifyServer(cs, want) },
		ClientSessionCache:   tls.NewLRUClientSessionCache(16),
	}
}

// ErrWrongPeer means the server's certificate names another identity than the one
// called.
var ErrWrongPeer = errors.New("peer has another identity")

func (s *Source) verifyServer(cs tls.ConnectionState, want ID) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("server sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	pool := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		pool.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: s.cur.Load().roots, Intermediates: pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	got, err := FromCert(leaf)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	if got != want {
		return fmt.Errorf("%w: server is %s, want %s", ErrWrongPeer, got, want)
	}
	return nil
}
