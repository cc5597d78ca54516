package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
)

// events returns n valid events of tenant, numbered from first.
func events(t *testing.T, tenant string, first, n int) []*auditv1.ConversationEvent {
	t.Helper()
	evs := make([]*auditv1.ConversationEvent, n)
	for i := range evs {
		evs[i] = event(t, tenant, first+i, 0)
	}
	return evs
}

// After a fetch that leaves the stream empty the writer opens no pull request until
// MaxWait has passed: the events published meanwhile stay in the stream, undelivered,
// to be fetched together. A Stop during that wait returns at once and leaves them there
// for the next writer, which stores them all.
func TestGatherLeavesEventsInTheStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	cfg.MaxWait = time.Hour // the first fetch's pause outlasts the test

	in := e.start(t, cfg)
	// The first fetch found the stream empty.
	require.Eventually(t, func() bool {
		return metric(t, e.reg, "parley_audit_fetch_pauses_total") >= 1
	}, waitFor, tick)

	const gathered = 50
	e.publishAll(t, events(t, "acme", 0, gathered))
	// Published events reach the consumer's pending count a moment after their acks.
	require.Eventually(t, func() bool {
		pending, ackPending := e.consumerState(t, cfg.Consumer)
		return pending+uint64(ackPending) == gathered //nolint:gosec // a count of messages
	}, waitFor, tick)
	pending, ackPending := e.consumerState(t, cfg.Consumer)
	require.Equal(t, uint64(gathered), pending)
	require.Zero(t, ackPending, "an event was delivered during the pause")
	total, _ := e.rows(t)
	require.Zero(t, total)
	require.Zero(t, metric(t, e.reg, "parley_audit_batches_total", "outcome", "ok"))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, in.Stop(ctx), "a stop during the pause returns at once")
	pending, ackPending = e.consumerState(t, cfg.Consumer)
	require.Equal(t, uint64(gathered), pending)
	require.Zero(t, ackPending)

	// The next writer takes them.
	e.startWith(t, testConfig(), prometheus.NewRegistry())
	e.requireRows(t, cfg.Consumer, gathered)
}

// A backlog is fetched batch after batch with no pause while a batch's worth is pending:
// with MaxWait an hour, such a pause would keep the rows from arriving. (Once fewer than
// MaxRows are left, a fetch cut short by its brief pull request may pause.)
func TestBacklogIsFetchedWithoutPausing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	cfg.MaxRows = 100
	cfg.MaxWait = time.Hour
	const backlog = 1200
	e.publishAll(t, events(t, "acme", 0, backlog))
	e.start(t, cfg)
	require.Eventually(t, func() bool {
		total, _ := e.rows(t)
		return total > backlog-cfg.MaxRows
	}, waitFor, tick)
	require.GreaterOrEqual(t, metric(t, e.reg, "parley_audit_batches_total", "outcome", "ok"), float64(backlog/cfg.MaxRows-1))
}
