// Package sealtest gives tests a fresh audit seal key pair: the router's sealer and the
// audit service's opener, as the services build them from their key files.
package sealtest

import (
	"testing"
	"time"

	"github.com/parleyhq/parley/libs/seal"
)

// Pair returns a sealer to a new key, with the default epoch settings, and the opener of
// its private key.
func Pair(t testing.TB) (*seal.Sealer, *seal.Opener) {
	t.Helper()
	return PairWith(t, 0, 0)
}

// PairWith is Pair with a sealer whose epochs end after maxMessages or maxAge, as
// seal.NewSealer takes them.
func PairWith(t testing.TB, maxMessages int, maxAge time.Duration) (*seal.Sealer, *seal.Opener) {
	t.Helper()
	privPEM, pubPEM, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := seal.ParsePrivateKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := seal.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	s, err := seal.NewSealer(pub, maxMessages, maxAge)
	if err != nil {
		t.Fatal(err)
	}
	o, err := seal.NewOpener(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, o
}
