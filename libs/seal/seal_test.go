package seal_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/parleyhq/parley/libs/seal"
	"github.com/parleyhq/parley/libs/seal/sealtest"
)

// keys is a fresh key pair whose sealer starts a new epoch every 3 messages.
func keys(t *testing.T) (*seal.Sealer, *seal.Opener) {
	t.Helper()
	return sealtest.PairWith(t, 3, time.Hour)
}

func TestSealOpen(t *testing.T) {
	s, o := keys(t)
	_, other := keys(t)
	msg := []byte("alice@example.com wrote this")
	b, err := s.Seal(msg, []byte("req-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b.Ciphertext, []byte("alice")) {
		t.Fatal("the ciphertext holds the plaintext")
	}
	flipped := bytes.Clone(b.Ciphertext)
	flipped[0] ^= 1
	for _, tc := range []struct {
		name   string
		opener *seal.Opener
		box    seal.Box
		aad    string
		ok     bool
	}{
		{"same key and aad", o, b, "req-1", true},
		{"another request id", o, b, "req-2", false},
		{"another key", other, b, "req-1", false},
		{"altered ciphertext", o, seal.Box{Enc: b.Enc, Nonce: b.Nonce, Ciphertext: flipped}, "req-1", false},
		{"short nonce", o, seal.Box{Enc: b.Enc, Nonce: b.Nonce[:4], Ciphertext: b.Ciphertext}, "req-1", false},
		{"bad enc", o, seal.Box{Enc: []byte("x"), Nonce: b.Nonce, Ciphertext: b.Ciphertext}, "req-1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.opener.Open(tc.box, []byte(tc.aad))
			if tc.ok {
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("Open = %q, %v", got, err)
				}
				return
			}
			if !errors.Is(err, seal.ErrOpen) {
				t.Fatalf("Open err = %v, want ErrOpen", err)
			}
		})
	}
}

// One key agreement per epoch on each side, not one per message.
func TestEpochs(t *testing.T) {
	s, o := keys(t) // 3 messages per epoch
	encs := map[string]bool{}
	for i := range 7 {
		b, err := s.Seal([]byte{byte(i)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		encs[string(b.Enc)] = true
		if got, err := o.Open(b, nil); err != nil || got[0] != byte(i) {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if len(encs) != 3 || o.Epochs() != 3 {
		t.Fatalf("7 messages at 3 per epoch: %d encs, %d opener epochs, want 3 and 3", len(encs), o.Epochs())
	}
}

func TestParseRefusesOtherKeys(t *testing.T) {
	privPEM, pubPEM, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		fn   func([]byte) error
		in   []byte
	}{
		{"public as private", func(b []byte) error { _, err := seal.ParsePrivateKey(b); return err }, pubPEM},
		{"private as public", func(b []byte) error { _, err := seal.ParsePublicKey(b); return err }, privPEM},
		{"garbage private", func(b []byte) error { _, err := seal.ParsePrivateKey(b); return err }, []byte("nope")},
		{"garbage public", func(b []byte) error { _, err := seal.ParsePublicKey(b); return err }, []byte("nope")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fn(tc.in) == nil {
				t.Fatal("parsed")
			}
		})
	}
}
