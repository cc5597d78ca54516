package pgtest_test

import (
	"os"
	"os/exec"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/pgtest"
)

func migrations() fstest.MapFS {
	return fstest.MapFS{
		"001_items.sql": {Data: []byte("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);")},
		"002_seed.sql":  {Data: []byte("INSERT INTO items VALUES (1, 'seed');")},
	}
}

func TestNewDBIsolatedAndMigrated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   int
	}{
		{name: "first", id: 2},
		{name: "second", id: 3},
		{name: "third", id: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := pgtest.NewDB(t, migrations())
			ctx := t.Context()

			var version int
			require.NoError(t, pool.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&version))
			require.Equal(t, 2, version)

			_, err := pool.Exec(ctx, "INSERT INTO items VALUES ($1, $2)", tt.id, tt.name)
			require.NoError(t, err)

			// Only the seed row and this test's row: parallel tests never share a database.
			var ids []int
			rows, err := pool.Query(ctx, "SELECT id FROM items ORDER BY id")
			require.NoError(t, err)
			for rows.Next() {
				var id int
				require.NoError(t, rows.Scan(&id))
				ids = append(ids, id)
			}
			require.NoError(t, rows.Err())
			require.Equal(t, []int{1, tt.id}, ids)
		})
	}
}

func TestNewDBCleanupDropsDatabase(t *testing.T) {
	t.Parallel()
	pgtest.DSN(t)
	var name string
	t.Run("use", func(t *testing.T) {
		pool := pgtest.NewDB(t, migrations())
		require.NoError(t, pool.QueryRow(t.Context(), "SELECT current_database()").Scan(&name))
	})
	require.NotEmpty(t, name)

	admin := pgtest.NewDB(t, migrations())
	var exists bool
	require.NoError(t, admin.QueryRow(t.Context(),
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists))
	require.False(t, exists, "database %s should have been dropped", name)
}

func TestNewDBBadMigrationFailsTest(t *testing.T) {
	t.Parallel()
	// A migration that does not parse must fail the test that asked for it, in a subprocess so
	// the failure does not fail this test.
	dsn := pgtest.DSN(t)
	out, err := runHelper(t, "badmigration", dsn)
	require.Error(t, err)
	require.Contains(t, out, "pgtest: build template database")
}

// TestMissingOrUnreachableServer checks the tier rule: outside -short a missing or unreachable
// server fails the test; under -short it skips.
func TestMissingOrUnreachableServer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		dsn     string
		short   bool
		wantErr bool
		wantOut string
	}{
		{name: "missing", dsn: "", wantErr: true, wantOut: "PG_TEST_DSN is not set"},
		{name: "unreachable", dsn: "postgres://postgres:secret@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5", wantErr: true, wantOut: "unreachable"},
		{name: "missing short", dsn: "", short: true, wantOut: "skipped under -short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mode := "dsn"
			if tt.short {
				mode = "dsn-short"
			}
			out, err := runHelper(t, mode, tt.dsn)
			if tt.wantErr {
				require.Error(t, err, out)
			} else {
				require.NoError(t, err, out)
			}
			require.Contains(t, out, tt.wantOut)
			require.NotContains(t, out, "secret")
		})
	}
}

func runHelper(t *testing.T, mode, dsn string) (string, error) {
	t.Helper()
	args := []string{"-test.run=^TestHelperProcess$", "-test.v"}
	if mode == "dsn-short" {
		args = append(args, "-test.short")
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PGTEST_HELPER_MODE="+mode, pgtest.EnvDSN+"="+dsn)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestHelperProcess is not a real test: runHelper runs it in a subprocess.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv("PGTEST_HELPER_MODE") {
	case "dsn", "dsn-short":
		pgtest.DSN(t)
	case "badmigration":
		pgtest.NewDB(t, fstest.MapFS{"001_bad.sql": {Data: []byte("CREATE TABLE (;")}})
	default:
		t.Skip("helper process only")
	}
}
