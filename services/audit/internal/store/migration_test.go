package store_test

import (
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/libs/pg"
	"github.com/parleyhq/parley/libs/pgtest"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// TestMigrationFromUnpartitioned migrates a database that has rows in the table of the
// first migration: they move into day partitions and into the usage roll-up.
func TestMigrationFromUnpartitioned(t *testing.T) {
	t.Parallel()
	first, err := fs.ReadFile(store.Migrations(), "001_create_conversations.sql")
	require.NoError(t, err)
	pool := pgtest.NewDB(t, fstest.MapFS{"001_create_conversations.sql": {Data: first}})
	_, err = pool.Exec(t.Context(), `INSERT INTO conversations (request_id, created_at, tenant, api, component, model, status, latency_us, total_tokens, request)
		VALUES ('0195f0c4-0000-7000-8000-000000000001', '2026-03-01 23:00:00+00', 'acme', 'alpha2', 'echo', 'm', 'ok', 1500, 10, '{"a":"hello"}'),
		       ('0195f0c4-0000-7000-8000-000000000002', '2026-03-02 01:00:00+00', 'acme', 'native', 'echo', 'm', 'error', 50, 0, NULL),
		       ('0195f0c4-0000-7000-8000-000000000003', '2026-03-02 02:00:00+00', 'globex', 'alpha1', 'echo', 'm', 'ok', 200, 5, NULL)`)
	require.NoError(t, err)

	require.NoError(t, pg.Migrate(t.Context(), pool, store.Migrations()))
	s := store.New(pool)
	require.Equal(t, []string{"2026-03-01", "2026-03-02"}, days(t, s))
	ids, _ := listAll(t, s, "acme", &auditv1.ListConversationsRequest{})
	require.Equal(t, []string{"0195f0c4-0000-7000-8000-000000000002", "0195f0c4-0000-7000-8000-000000000001"}, ids)
	got, err := s.Get(t.Context(), "globex", "0195f0c4-0000-7000-8000-000000000003")
	require.NoError(t, err)
	require.EqualValues(t, 5, got.GetUsage().GetTotalTokens())

	var requests, errs, tokens int64
	require.NoError(t, pool.QueryRow(t.Context(),
		"SELECT sum(requests), sum(errors), sum(total_tokens) FROM usage_daily WHERE tenant = 'acme'").Scan(&requests, &errs, &tokens))
	require.Equal(t, [3]int64{2, 1, 10}, [3]int64{requests, errs, tokens})

	// The migrated database takes new rows like a fresh one.
	insert(t, s, event(t, "acme", 1))
}
