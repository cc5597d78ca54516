package stack_test

import (
	"io"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/integration/stack"
)

// TestPrivatePostgres runs the fallback `make up` and `make test` use when no PostgreSQL
// is configured or listening: a private server from the system's binaries (installed
// with apt-get when missing and run as root), started, used, stopped and started again
// on its data.
func TestPrivatePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pg")
	for round := range 2 {
		port, err := stack.FreePort()
		require.NoError(t, err)
		pg, err := stack.StartPrivatePostgres(t.Context(), dir, port, true, io.Discard)
		require.NoError(t, err, "round %d", round)
		conn, err := pgx.Connect(t.Context(), pg.URL)
		require.NoError(t, err)
		var one int
		require.NoError(t, conn.QueryRow(t.Context(), "select 1").Scan(&one))
		require.Equal(t, 1, one)
		require.NoError(t, conn.Close(t.Context()))
		require.NoError(t, pg.Stop(t.Context()))
	}
}
