package command

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHashKeyVector is the router's vector (services/router/internal/apikey,
// TestHashVector): the CLI writes the hashes the router checks.
func TestHashKeyVector(t *testing.T) {
	t.Parallel()
	require.Equal(t, "hmac-sha256:f241b3219d9c138a3b68a6f054f9fba6f7d1f5415baf61dd5359a08a35400e01",
		HashKey([]byte("0123456789abcdef"), "pk_example"))
}

func runKeys(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, IO{
		Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] },
		Now: func() time.Time { return time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC) },
	})
	return out.String(), errOut.String(), code
}

// TestKeysCreateListRevoke: create prints the key once and writes only its hash; list
// shows ids, tenants and limits; revoke marks or deletes the entry.
func TestKeysCreateListRevoke(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.yaml")
	pepper := "a pepper of sixteen bytes or more"
	env := map[string]string{EnvKeysFile: file, EnvPepper: pepper}

	key, stderr, code := runKeys(t, env, "keys", "create", "-id", "ci", "-tenant", "team-a", "-components", "echo, openai", "-rpm", "60", "-budget", "100000", "-budget-period", "day")
	require.Equal(t, ExitOK, code, stderr)
	key = strings.TrimSpace(key)
	require.True(t, strings.HasPrefix(key, keyPrefix), key)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.NotContains(t, string(b), key[len(keyPrefix):], "the file holds the hash only")
	require.Contains(t, string(b), HashKey([]byte(pepper), key))
	info, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	_, stderr, code = runKeys(t, env, "keys", "create", "-id", "ci", "-tenant", "team-b")
	require.Equal(t, ExitError, code)
	require.Contains(t, stderr, "already in")
	_, _, code = runKeys(t, map[string]string{EnvKeysFile: file}, "keys", "create", "-id", "x", "-tenant", "t")
	require.Equal(t, ExitUsage, code, "no pepper")
	_, _, code = runKeys(t, env, "keys", "create", "-id", "x", "-tenant", "t", "-budget", "5")
	require.Equal(t, ExitUsage, code, "budget without period")
	_, stderr, code = runKeys(t, env, "keys", "create", "-id", "ops", "-tenant", "ops", "-admin")
	require.Equal(t, ExitOK, code, stderr)

	out, stderr, code := runKeys(t, env, "keys", "list")
	require.Equal(t, ExitOK, code, stderr)
	require.Equal(t, `ID   TENANT  STATUS  ADMIN  COMPONENTS   RPM  TPM  BUDGET      CREATED
ci   team-a  active  false  echo,openai  60   -    100000/day  2026-12-06T09:00:00Z
ops  ops     active  true   *            -    -    -           2026-12-06T09:00:00Z
`, out)

	out, _, code = runKeys(t, env, "keys", "revoke", "ci")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "revoked")
	out, _, _ = runKeys(t, env, "keys", "list", "-o", "json")
	require.Contains(t, out, `"revoked": true`)
	require.NotContains(t, out, "hmac")
	_, _, code = runKeys(t, env, "keys", "revoke", "ops", "-delete")
	require.Equal(t, ExitOK, code)
	out, _, _ = runKeys(t, env, "keys", "list")
	require.NotContains(t, out, "ops")
	_, stderr, code = runKeys(t, env, "keys", "revoke", "nobody")
	require.Equal(t, ExitError, code)
	require.Contains(t, stderr, `no key "nobody"`)
}
