package store_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/libs/pgtest"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// eventAt returns a valid event of tenant acme stamped at.
func eventAt(t testing.TB, at time.Time) *auditv1.ConversationEvent {
	t.Helper()
	ev := event(t, "acme", 0)
	ev.CreatedAt = timestamppb.New(at)
	return ev
}

func date(s string) time.Time {
	d, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return d
}

// partitionOf returns the partition that holds request id's row.
func partitionOf(t *testing.T, pool *pgxpool.Pool, id string) string {
	t.Helper()
	var name string
	require.NoError(t, pool.QueryRow(t.Context(),
		"SELECT tableoid::regclass::text FROM conversations WHERE request_id = $1", id).Scan(&name))
	return name
}

func days(t *testing.T, s *store.Store) []string {
	t.Helper()
	ds, err := s.Partitions(t.Context())
	require.NoError(t, err)
	var out []string
	for _, d := range ds {
		out = append(out, d.Format("2006-01-02"))
	}
	return out
}

func TestInsertCreatesPartitionsOnDemand(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	tests := []struct {
		name string
		at   time.Time
		want string
	}{
		{name: "last instant of a day", at: date("2026-02-28T23:59:59.999999Z"), want: "conversations_p20260228"},
		{name: "midnight starts the next day", at: date("2026-03-01T00:00:00Z"), want: "conversations_p20260301"},
		{name: "another time zone's evening is the UTC next day", at: date("2026-03-01T20:00:00-05:00"), want: "conversations_p20260302"},
		{name: "long ago", at: date("1999-12-31T12:00:00Z"), want: "conversations_p19991231"},
		{name: "far ahead", at: date("2100-01-01T00:00:01Z"), want: "conversations_p21000101"},
	}
	var events []*auditv1.ConversationEvent
	for _, tt := range tests {
		events = append(events, eventAt(t, tt.at))
	}
	insert(t, s, events...) // one batch across every day
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, partitionOf(t, pool, events[i].GetRequestId()))
		})
	}
	require.Equal(t, []string{"1999-12-31", "2026-02-28", "2026-03-01", "2026-03-02", "2100-01-01"}, days(t, s))
}

// TestInsertRecreatesPartitionDroppedElsewhere covers another replica's retention job
// dropping a partition this store believes exists (an event older than the retention
// arriving late): the insert creates it again instead of failing.
func TestInsertRecreatesPartitionDroppedElsewhere(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	at := date("2026-03-01T12:00:00Z")
	insert(t, s, eventAt(t, at))
	_, err := pool.Exec(t.Context(), "DROP TABLE conversations_p20260301")
	require.NoError(t, err)

	late := eventAt(t, at.Add(time.Hour))
	insert(t, s, late)
	require.Equal(t, "conversations_p20260301", partitionOf(t, pool, late.GetRequestId()))
}

// indexes returns the valid search indexes of the partitions.
func searchIndexes(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT c.relname FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
		WHERE c.relname LIKE 'conversations_p%_search_idx' AND i.indisvalid ORDER BY 1`)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

func usageDays(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), "SELECT DISTINCT to_char(day, 'YYYY-MM-DD') FROM usage_daily ORDER BY 1")
	require.NoError(t, err)
	ds, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ds
}

func TestMaintain(t *testing.T) {
	t.Parallel()
	now := date("2026-03-10T12:00:00Z")
	opts := store.MaintainOptions{
		Now: now, Ahead: 3, Retention: 5 * 24 * time.Hour, UsageRetention: 7 * 24 * time.Hour,
		SearchIndexDelay: time.Hour, LockTimeout: time.Second,
	}

	t.Run("sealed", func(t *testing.T) {
		t.Parallel()
		s, pool := newStore(t)
		for _, d := range []string{"2026-03-01", "2026-03-04", "2026-03-05", "2026-03-09", "2026-03-10"} {
			insert(t, s, eventAt(t, date(d+"T06:00:00Z")))
		}

		r, err := s.Maintain(t.Context(), opts)
		require.NoError(t, err)
		require.False(t, r.Skipped)
		require.Equal(t, []string{"conversations_p20260311", "conversations_p20260312", "conversations_p20260313"}, r.Created)
		// 03-04 ended on 03-05 00:00, more than 5 days before now; 03-05 ends later.
		require.Equal(t, []string{"conversations_p20260301", "conversations_p20260304"}, r.Dropped)
		// Days over for an hour: 03-05 and 03-09; not today or the days ahead.
		require.Equal(t, []string{"conversations_p20260305", "conversations_p20260309"}, r.Indexed)
		require.EqualValues(t, 1, r.UsageDeleted) // 03-01; 03-04 is within 7 days
		require.Equal(t, []string{"2026-03-05", "2026-03-09", "2026-03-10", "2026-03-11", "2026-03-12", "2026-03-13"}, days(t, s))
		require.Equal(t, []string{"conversations_p20260305_search_idx", "conversations_p20260309_search_idx"}, searchIndexes(t, pool))
		require.Equal(t, []string{"2026-03-04", "2026-03-05", "2026-03-09", "2026-03-10"}, usageDays(t, pool))

		again, err := s.Maintain(t.Context(), opts)
		require.NoError(t, err)
		require.Equal(t, store.MaintainReport{}, again, "a second run has nothing to do")

		// A late event for a dropped day is stored; the next run drops it again.
		insert(t, s, eventAt(t, date("2026-03-01T07:00:00Z")))
		r, err = s.Maintain(t.Context(), opts)
		require.NoError(t, err)
		require.Equal(t, []string{"conversations_p20260301"}, r.Dropped)
	})

	t.Run("live search index", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.NewDB(t, store.Migrations())
		s := store.New(pool, store.WithLiveSearchIndex(true))
		insert(t, s, eventAt(t, date("2026-03-10T06:00:00Z")))
		require.Equal(t, []string{"conversations_p20260310_search_idx"}, searchIndexes(t, pool), "created with the partition")
		_, err := s.Maintain(t.Context(), opts)
		require.NoError(t, err)
		require.Len(t, searchIndexes(t, pool), 4, "today and the days ahead")
	})

	t.Run("keeps everything with zero retention", func(t *testing.T) {
		t.Parallel()
		s, pool := newStore(t)
		insert(t, s, eventAt(t, date("2020-01-01T06:00:00Z")))
		o := opts
		o.Retention, o.UsageRetention = 0, 0
		r, err := s.Maintain(t.Context(), o)
		require.NoError(t, err)
		require.Empty(t, r.Dropped)
		require.Zero(t, r.UsageDeleted)
		require.Contains(t, days(t, s), "2020-01-01")
		require.Equal(t, []string{"2020-01-01"}, usageDays(t, pool))
	})

	t.Run("one replica at a time", func(t *testing.T) {
		t.Parallel()
		s, pool := newStore(t)
		conn, err := pool.Acquire(t.Context())
		require.NoError(t, err)
		defer conn.Release()
		_, err = conn.Exec(t.Context(), "SELECT pg_advisory_lock(hashtext('parley.audit.maintenance'))")
		require.NoError(t, err)
		r, err := s.Maintain(t.Context(), opts)
		require.NoError(t, err)
		require.True(t, r.Skipped)
		require.Empty(t, days(t, s))

		_, err = conn.Exec(t.Context(), "SELECT pg_advisory_unlock(hashtext('parley.audit.maintenance'))")
		require.NoError(t, err)
		r, err = s.Maintain(t.Context(), opts)
		require.NoError(t, err)
		require.False(t, r.Skipped)
		require.Len(t, r.Created, 4)
	})

	t.Run("rebuilds an index left invalid", func(t *testing.T) {
		t.Parallel()
		s, pool := newStore(t)
		insert(t, s, eventAt(t, date("2026-03-09T06:00:00Z")))
		_, err := s.Maintain(t.Context(), opts)
		require.NoError(t, err)
		// What an interrupted CREATE INDEX CONCURRENTLY leaves behind.
		_, err = pool.Exec(t.Context(), "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'conversations_p20260309_search_idx'::regclass")
		require.NoError(t, err)
		require.Empty(t, searchIndexes(t, pool))

		r, err := s.Maintain(t.Context(), opts)
		require.NoError(t, err)
		require.Equal(t, []string{"conversations_p20260309"}, r.Indexed)
		require.Equal(t, []string{"conversations_p20260309_search_idx"}, searchIndexes(t, pool))
	})
}

// TestTextSearchWithAndWithoutIndex checks that a day's search index changes how rows are
// found, not which.
func TestTextSearchWithAndWithoutIndex(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	var events []*auditv1.ConversationEvent
	for i := range 40 {
		ev := eventAt(t, date("2026-03-09T06:00:00Z").Add(time.Duration(i)*time.Minute))
		ev.RequestJson = []byte([]string{`["alpha beta"]`, `["beta gamma"]`, `["gamma delta"]`, `["Alpha, Gamma!"]`}[i%4])
		events = append(events, ev)
	}
	insert(t, s, events...)
	queries := []string{"alpha", "gamma", "alpha gamma", "beta delta", "epsilon"}
	search := func() map[string][]string {
		got := map[string][]string{}
		for _, q := range queries {
			ids, _ := listAll(t, s, "acme", &auditv1.ListConversationsRequest{TextQuery: q, PageSize: 7})
			got[q] = ids
		}
		return got
	}
	without := search()
	require.Len(t, without["alpha"], 20)
	require.Len(t, without["alpha gamma"], 10)
	require.Empty(t, without["beta delta"])

	_, err := s.Maintain(t.Context(), store.MaintainOptions{Now: date("2026-03-12T00:00:00Z"), Ahead: 1, LockTimeout: time.Second})
	require.NoError(t, err)
	require.Equal(t, []string{"conversations_p20260309_search_idx"}, searchIndexes(t, pool))
	_, err = pool.Exec(t.Context(), "ANALYZE conversations")
	require.NoError(t, err)
	require.Equal(t, without, search())
}
