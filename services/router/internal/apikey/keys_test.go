package apikey_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/services/router/internal/apikey"
)

const goodHash = "hmac-sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, file, wantErr string
		keys                int
	}{
		{name: "empty file", file: "", keys: 0},
		{name: "one key", file: "keys:\n- id: a\n  tenant: t\n  hash: " + goodHash + "\n", keys: 1},
		{name: "json", file: `{"keys":[{"id":"a","tenant":"t","hash":"` + goodHash + `","tokenBudget":5,"budgetPeriod":"month"}]}`, keys: 1},
		{name: "unknown field", file: "keys:\n- id: a\n  tenant: t\n  hash: " + goodHash + "\n  rpm: 3\n", wantErr: "field rpm not found"},
		{name: "a key where the hash belongs", file: "keys:\n- id: a\n  tenant: t\n  hash: pk_secretsecret\n", wantErr: "the file holds hashes, never keys"},
		{name: "bad id", file: "keys:\n- id: a.b\n  tenant: t\n  hash: " + goodHash + "\n", wantErr: "id must be"},
		{name: "bad tenant", file: "keys:\n- id: a\n  tenant: ''\n  hash: " + goodHash + "\n", wantErr: "tenant must be"},
		{name: "duplicate id", file: "keys:\n- {id: a, tenant: t, hash: " + goodHash + "}\n- {id: a, tenant: t, hash: " + strings.Replace(goodHash, "0", "1", 1) + "}\n", wantErr: "id used twice"},
		{name: "duplicate hash", file: "keys:\n- {id: a, tenant: t, hash: " + goodHash + "}\n- {id: b, tenant: t, hash: " + goodHash + "}\n", wantErr: "hash used twice"},
		{name: "budget without period", file: "keys:\n- {id: a, tenant: t, hash: " + goodHash + ", tokenBudget: 5}\n", wantErr: "budgetPeriod must be day or month"},
		{name: "negative limit", file: "keys:\n- {id: a, tenant: t, hash: " + goodHash + ", requestsPerMinute: -1}\n", wantErr: "must not be negative"},
		{name: "bad yaml", file: "keys: [pk_secretsecret", wantErr: "yaml: line 1"},
		{name: "yaml quoting a key", file: "keys:\n- id: a\n  tenant: t\n  hash: " + goodHash + "\n  requestsPerMinute: pk_secretsecret\n", wantErr: "withheld"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := apikey.Parse([]byte(tc.file))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.NotContains(t, err.Error(), "secretsecret")
				return
			}
			require.NoError(t, err)
			require.Len(t, f.Keys, tc.keys)
		})
	}
}

// TestHashVector pins the stored form, which the CLI (cli/internal/command) computes too.
func TestHashVector(t *testing.T) {
	t.Parallel()
	require.Equal(t, "hmac-sha256:f241b3219d9c138a3b68a6f054f9fba6f7d1f5415baf61dd5359a08a35400e01",
		apikey.Hash([]byte("0123456789abcdef"), "pk_example"))
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("keys:\n- id: a\n  tenant: t\n  hash: " + goodHash + "\n"))
	f.Add([]byte(`{"keys":[{"id":"a","tenant":"t","hash":"` + goodHash + `"}]}`))
	f.Add([]byte("keys: [pk_x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := apikey.Parse(data)
		if err == nil {
			require.NoError(t, file.Validate())
		}
	})
}
