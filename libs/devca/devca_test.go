package devca_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/devca"
)

func TestEnsure(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tls")
	names := []string{"router", "cache"}

	issued, err := devca.Ensure(dir, "parley.local", names)
	require.NoError(t, err)
	require.Equal(t, names, issued, "first run issues everything")
	for _, n := range names {
		f := devca.FilesOf(dir, n)
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		require.NoError(t, err)
		require.Equal(t, "spiffe://parley.local/"+n, pair.Leaf.URIs[0].String())
		info, err := os.Stat(f.Key)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "keys are private")
	}
	caBefore, err := os.ReadFile(devca.FilesOf(dir, "").CA)
	require.NoError(t, err)

	issued, err = devca.Ensure(dir, "parley.local", names)
	require.NoError(t, err)
	require.Empty(t, issued, "a second run reuses everything")

	// An expired certificate is issued again; the others and the CA stay.
	ca, err := devca.Load("parley.local", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	require.NoError(t, err)
	certPEM, _, err := ca.Issue("cache", -time.Second)
	require.NoError(t, err)
	require.NoError(t, devca.WriteFile(devca.FilesOf(dir, "cache").Cert, certPEM, 0o644))
	issued, err = devca.Ensure(dir, "parley.local", append(names, "admin"))
	require.NoError(t, err)
	require.Equal(t, []string{"cache", "admin"}, issued)
	caAfter, err := os.ReadFile(devca.FilesOf(dir, "").CA)
	require.NoError(t, err)
	require.Equal(t, caBefore, caAfter)

	// Another trust domain replaces the CA and with it every certificate.
	issued, err = devca.Ensure(dir, "other.local", names)
	require.NoError(t, err)
	require.Equal(t, names, issued)
}
