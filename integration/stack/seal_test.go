package stack

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/seal"
)

// TestEnsureSealKeys: the pair is made once, the private key readable by its owner
// only, and kept afterwards; a box sealed to the public key opens with the private key.
func TestEnsureSealKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys, created, err := EnsureSealKeys(dir)
	require.NoError(t, err)
	require.True(t, created)
	st, err := os.Stat(keys.Private)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	before, err := os.ReadFile(keys.Private)
	require.NoError(t, err)

	again, created, err := EnsureSealKeys(dir)
	require.NoError(t, err)
	require.False(t, created, "an existing pair is kept")
	require.Equal(t, keys, again)
	after, err := os.ReadFile(keys.Private)
	require.NoError(t, err)
	require.Equal(t, before, after)

	pub, err := seal.ReadPublicKeyFile(keys.Public)
	require.NoError(t, err)
	priv, err := seal.ReadPrivateKeyFile(keys.Private)
	require.NoError(t, err)
	s, err := seal.NewSealer(pub, 0, 0)
	require.NoError(t, err)
	o, err := seal.NewOpener(priv)
	require.NoError(t, err)
	box, err := s.Seal([]byte("raw"), []byte("id"))
	require.NoError(t, err)
	msg, err := o.Open(box, []byte("id"))
	require.NoError(t, err)
	require.Equal(t, "raw", string(msg))
}
