package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// After a fetch that took every event the stream held, the writer opens no pull request
// until MaxWait has passed: the events published meanwhile stay in the stream,
// undelivered. A Stop during that wait returns at once and leaves them there; the next
// writer asks for as many as the stream holds and gets them in one batch.
func TestGatherLeavesEventsInTheStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	cfg.MaxWait = time.Hour // the pause after the first fetch outlasts the test

	e.publishAll(t, newEvents(t, "acme", 0, 1))
	in := e.start(t, cfg)
	e.requireRows(t, cfg.Consumer, 1)
	require.Eventually(t, func() bool {
		return metric(t, e.reg, "parley_audit_fetch_pauses_total") >= 1
	}, waitFor, tick)

	const gathered = 50
	e.publishAll(t, newEvents(t, "acme", 1, gathered))
	// Published events reach the consumer's pending count a moment after their acks.
	require.Eventually(t, func() bool {
		pending, ackPending := e.consumerState(t, cfg.Consumer)
		return pending+uint64(ackPending) == gathered //nolint:gosec // a count of messages
	}, waitFor, tick)
	pending, ackPending := e.consumerState(t, cfg.Consumer)
	require.Equal(t, uint64(gathered), pending)
	require.Zero(t, ackPending, "an event was delivered during the pause")
	total, _ := e.rows(t)
	require.Equal(t, 1, total)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, in.Stop(ctx), "a stop during the pause returns at once")
	pending, ackPending = e.consumerState(t, cfg.Consumer)
	require.Equal(t, uint64(gathered), pending)
	require.Zero(t, ackPending)

	// The next writer takes them in one fetch, one batch. (Its long wait keeps a slow
	// delivery on a loaded machine from ending that fetch early.)
	reg := prometheus.NewRegistry()
	e.startWith(t, cfg, reg)
	e.requireRows(t, cfg.Consumer, 1+gathered)
	require.InDelta(t, 1, metric(t, reg, "parley_audit_batches_total", "outcome", "ok"), 0)
}

// A backlog is fetched batch after batch with no pause: each fetch asks for a full
// batch, so none of them took "every event the stream held" until the stream is empty,
// and a fetch of an empty stream waits for events instead.
func TestBacklogIsFetchedWithoutPausing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	cfg.MaxRows = 100
	cfg.MaxWait = 2 * time.Second
	const backlog = 1200
	e.publishAll(t, newEvents(t, "acme", 0, backlog))
	e.start(t, cfg)
	e.requireRows(t, cfg.Consumer, backlog)
	require.GreaterOrEqual(t, metric(t, e.reg, "parley_audit_batches_total", "outcome", "ok"), float64(backlog/cfg.MaxRows))
	require.Zero(t, metric(t, e.reg, "parley_audit_fetch_pauses_total"))
}
