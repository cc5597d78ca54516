// Package seal encrypts a message to one recipient's public key, so that only the holder
// of the private key can read it: the router seals the raw audit copy of a conversation to
// the audit service, which opens it, scrubs it and stores only the scrubbed copy.
//
// The scheme is HPKE (RFC 9180, crypto/hpke) with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256
// and the export-only mode: a Sealer sets up one HPKE context per epoch (one X25519 key
// agreement), exports a 256-bit AES-GCM key from it, and seals each message under that key
// with a random 96-bit nonce. A Box carries the epoch's encapsulated key (enc, 32 bytes),
// so the Opener derives the same AES key with one key agreement per epoch it meets, not
// per message. Additional data (for the audit copy, the request id) binds a box to its
// message: a box moved to another event does not open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// info is HPKE's context string: a key derived for one purpose never serves another.
const info = "parley seal v1"

// exportContext names the exported AES key.
const exportContext = "aes-256-gcm key"

// The limits of one epoch's key: far below AES-GCM's 2^32 random-nonce bound, and short
// enough that a key kept in memory protects little traffic.
const (
	DefaultEpochMessages = 1 << 20
	DefaultEpochDuration = 10 * time.Minute
)

// openerCacheSize bounds the epochs whose keys an Opener keeps: a few per router.
const openerCacheSize = 1024

// ErrOpen means a box did not open: another key sealed it, it was altered, or its
// additional data differs.
var ErrOpen = errors.New("seal: box does not open with this key")

// Box is one sealed message.
type Box struct {
	// Enc is the epoch's encapsulated key (HPKE's enc).
	Enc []byte
	// Nonce is the AES-GCM nonce.
	Nonce []byte
	// Ciphertext is the message sealed with its tag.
	Ciphertext []byte
}

func suite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.ExportOnly() }

// Sealer seals messages to one public key. It is safe for concurrent use.
type Sealer struct {
	pub         hpke.PublicKey
	maxMessages int
	maxAge      time.Duration

	mu      sync.Mutex
	enc     []byte
	aead    cipher.AEAD
	used    int
	started time.Time
}

// NewSealer seals to pub, with a new epoch every maxMessages messages or maxAge,
// whichever comes first (0 takes the defaults).
func NewSealer(pub *ecdh.PublicKey, maxMessages int, maxAge time.Duration) (*Sealer, error) {
	if pub == nil || pub.Curve() != ecdh.X25519() {
		return nil, errors.New("seal: the public key must be X25519")
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if maxMessages <= 0 {
		maxMessages = DefaultEpochMessages
	}
	if maxAge <= 0 {
		maxAge = DefaultEpochDuration
	}
	return &Sealer{pub: pk, maxMessages: maxMessages, maxAge: maxAge}, nil
}

// Seal seals msg with additional data aad.
func (s *Sealer) Seal(msg, aad []byte) (Box, error) {
	enc, aead, err := s.epoch()
	if err != nil {
		return Box{}, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return Box{}, fmt.Errorf("seal: %w", err)
	}
	return Box{Enc: enc, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, msg, aad)}, nil
}

// epoch returns the current epoch's enc and key, starting a new epoch when the current
// one is spent.
func (s *Sealer) epoch() ([]byte, cipher.AEAD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aead != nil && s.used < s.maxMessages && time.Since(s.started) < s.maxAge {
		s.used++
		return s.enc, s.aead, nil
	}
	kdf, mode := suite()
	enc, sender, err := hpke.NewSender(s.pub, kdf, mode, []byte(info))
	if err != nil {
		return nil, nil, fmt.Errorf("seal: new epoch: %w", err)
	}
	key, err := sender.Export(exportContext, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: new epoch: %w", err)
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, nil, err
	}
	s.enc, s.aead, s.used, s.started = enc, aead, 1, time.Now()
	return enc, aead, nil
}

// Opener opens boxes sealed to its private key. It is safe for concurrent use.
type Opener struct {
	priv hpke.PrivateKey

	mu     sync.Mutex
	keys   map[string]cipher.AEAD
	epochs int
}

// NewOpener opens with priv.
func NewOpener(priv *ecdh.PrivateKey) (*Opener, error) {
	if priv == nil || priv.Curve() != ecdh.X25519() {
		return nil, errors.New("seal: the private key must be X25519")
	}
	k, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Opener{priv: k, keys: make(map[string]cipher.AEAD)}, nil
}

// Open returns the message in b, which must have been sealed with the same aad.
func (o *Opener) Open(b Box, aad []byte) ([]byte, error) {
	aead, err := o.key(b.Enc)
	if err != nil {
		return nil, err
	}
	if len(b.Nonce) != aead.NonceSize() {
		return nil, ErrOpen
	}
	msg, err := aead.Open(nil, b.Nonce, b.Ciphertext, aad)
	if err != nil {
		return nil, ErrOpen
	}
	return msg, nil
}

// Epochs is how many epoch keys the Opener has derived (one key agreement each).
func (o *Opener) Epochs() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.epochs
}

func (o *Opener) key(enc []byte) (cipher.AEAD, error) {
	o.mu.Lock()
	aead, ok := o.keys[string(enc)]
	o.mu.Unlock()
	if ok {
		return aead, nil
	}
	kdf, mode := suite()
	r, err := hpke.NewRecipient(enc, o.priv, kdf, mode, []byte(info))
	if err != nil {
		return nil, ErrOpen
	}
	key, err := r.Export(exportContext, 32)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err = newAEAD(key)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.keys) >= openerCacheSize {
		clear(o.keys)
	}
	o.keys[string(enc)] = aead
	o.epochs++
	return aead, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return aead, nil
}

// GenerateKey returns a new X25519 key pair as PEM: the private key in PKCS #8 ("PRIVATE
// KEY"), the public key in PKIX ("PUBLIC KEY").
func GenerateKey() (privPEM, pubPEM []byte, err error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.PublicKey())
	if err != nil {
		return nil, nil, fmt.Errorf("seal: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

// ParsePrivateKey reads an X25519 private key from PEM (PKCS #8).
func ParsePrivateKey(b []byte) (*ecdh.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("seal: no PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	priv, ok := k.(*ecdh.PrivateKey)
	if !ok || priv.Curve() != ecdh.X25519() {
		return nil, errors.New("seal: the private key is not X25519")
	}
	return priv, nil
}

// ParsePublicKey reads an X25519 public key from PEM (PKIX).
func ParsePublicKey(b []byte) (*ecdh.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("seal: no PEM \"PUBLIC KEY\" block")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	pub, ok := k.(*ecdh.PublicKey)
	if !ok || pub.Curve() != ecdh.X25519() {
		return nil, errors.New("seal: the public key is not X25519")
	}
	return pub, nil
}

// ReadPrivateKeyFile reads ParsePrivateKey's PEM from path.
func ReadPrivateKeyFile(path string) (*ecdh.PrivateKey, error) {
	b, err := os.ReadFile(path) //nolint:gosec // a configured key file
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return ParsePrivateKey(b)
}

// ReadPublicKeyFile reads ParsePublicKey's PEM from path.
func ReadPublicKeyFile(path string) (*ecdh.PublicKey, error) {
	b, err := os.ReadFile(path) //nolint:gosec // a configured key file
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return ParsePublicKey(b)
}
