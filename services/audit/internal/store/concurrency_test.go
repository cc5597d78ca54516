package store_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// TestConcurrentWritersCreateTheSamePartitions runs writers (several replicas' stores on
// one database) that all need the same new days at once: each day's partition is created
// once, and no writer fails.
func TestConcurrentWritersCreateTheSamePartitions(t *testing.T) {
	t.Parallel()
	_, pool := newStore(t)
	const writers = 4
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		s := store.New(pool) // a replica: its own cache of known partitions
		wg.Go(func() {
			var events []*auditv1.ConversationEvent
			for d := range 5 {
				events = append(events, eventAt(t, date("2026-04-01T12:00:00Z").Add(time.Duration(d)*24*time.Hour)))
			}
			_, errs[w] = s.InsertBatch(t.Context(), events)
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	var rows int
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM conversations").Scan(&rows))
	require.Equal(t, writers*5, rows)
	require.Len(t, days(t, store.New(pool)), 5)
}
