// Package devca is a development certificate authority: it creates a CA and issues
// each service (and the admin operator) a certificate naming it SPIFFE style, the way a
// cluster's cert-manager would. `make up` and the tests use it; production takes its
// certificates from files a real issuer writes.
package devca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/parleyhq/parley/libs/identity"
)

// Lifetimes and renewal margins. A certificate is issued again once less than a third
// of its lifetime is left, as cert-manager does by default.
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	LeafLifetime = 90 * 24 * time.Hour
)

// CA is a certificate authority for one trust domain.
type CA struct {
	trustDomain string
	cert        *x509.Certificate
	key         crypto.Signer
	certPEM     []byte
	keyPEM      []byte
}

// New creates a CA valid from now for lifetime.
func New(trustDomain string, lifetime time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"Parley development"}, CommonName: "Parley development CA (" + trustDomain + ")"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(lifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	return parse(trustDomain, pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER))
}

// Load reads a CA written by Save.
func Load(trustDomain, certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	return parse(trustDomain, certPEM, keyPEM)
}

func parse(trustDomain string, certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("CA files hold no PEM block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key cannot sign")
	}
	return &CA{trustDomain: trustDomain, cert: cert, key: signer, certPEM: certPEM, keyPEM: keyPEM}, nil
}

// CertPEM is the CA certificate, the trust bundle peers are given.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// Save writes the CA's certificate and key.
func (ca *CA) Save(certFile, keyFile string) error {
	if err := WriteFile(certFile, ca.certPEM, 0o644); err != nil {
		return err
	}
	return WriteFile(keyFile, ca.keyPEM, 0o600)
}

// Issue creates a key and a certificate for name, valid for lifetime: URI SAN
// spiffe://<trust domain>/<name>, DNS SANs name and localhost, IP SANs for loopback,
// usable for both TLS servers and clients.
func (ca *CA) Issue(name string, lifetime time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"Parley development"}, CommonName: name},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{identity.ID{TrustDomain: ca.trustDomain, Name: name}.URL()},
		DNSNames:     []string{name, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %s: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER), nil
}

// Files are the paths of one identity's files in a directory Ensure manages.
type Files struct {
	CA, Cert, Key string
}

// FilesOf returns the paths of name's files under dir.
func FilesOf(dir, name string) Files {
	return Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
}

// Ensure keeps dir holding a CA (ca.crt, ca.key) and a certificate and key per name
// (<name>.crt, <name>.key): it creates what is missing, and issues again what has
// expired, is due for renewal, names another identity or no longer chains to the CA. A
// CA due for renewal is replaced, and every certificate with it. It returns the names
// it (re)issued.
func Ensure(dir, trustDomain string, names []string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	caCert, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	ca, err := Load(trustDomain, caCert, caKey)
	if err != nil || dueForRenewal(ca.cert.NotBefore, ca.cert.NotAfter) || !ownsTrustDomain(ca.cert, trustDomain) {
		if ca, err = New(trustDomain, CALifetime); err != nil {
			return nil, err
		}
		if err := ca.Save(caCert, caKey); err != nil {
			return nil, err
		}
	}
	var issued []string
	for _, name := range names {
		f := FilesOf(dir, name)
		if ca.valid(f, name) {
			continue
		}
		certPEM, keyPEM, err := ca.Issue(name, LeafLifetime)
		if err != nil {
			return nil, err
		}
		// Key first: a service reloading between the two writes sees a mismatched pair,
		// which it refuses, and picks up the pair on its next poll.
		if err := WriteFile(f.Key, keyPEM, 0o600); err != nil {
			return nil, err
		}
		if err := WriteFile(f.Cert, certPEM, 0o644); err != nil {
			return nil, err
		}
		issued = append(issued, name)
	}
	return issued, nil
}

// valid reports whether name's files hold a current certificate from ca for name.
func (ca *CA) valid(f Files, name string) bool {
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return false
	}
	if _, err := os.Stat(f.Key); err != nil {
		return false
	}
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return false
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil || dueForRenewal(c.NotBefore, c.NotAfter) {
		return false
	}
	want := identity.ID{TrustDomain: ca.trustDomain, Name: name}.String()
	if len(c.URIs) != 1 || c.URIs[0].String() != want {
		return false
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	_, err = c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

func ownsTrustDomain(c *x509.Certificate, trustDomain string) bool {
	return len(c.URIs) == 1 && c.URIs[0].Scheme == "spiffe" && c.URIs[0].Host == trustDomain
}

// dueForRenewal reports whether less than a third of the lifetime is left.
func dueForRenewal(notBefore, notAfter time.Time) bool {
	return time.Until(notAfter) < notAfter.Sub(notBefore)/3
}

// WriteFile writes b to path atomically (a temporary file renamed over it), so a
// reader never sees half a file.
func WriteFile(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
