package ingest_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/libs/pgtest"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// TestIngestSurvivesNodeLoss: on a three-node cluster with the stream at three replicas,
// the node the writer is connected to is lost while a backlog drains; every event still
// ends in PostgreSQL once. Deliveries sent through the lost node, and for a while after,
// never reach the writer; with a JetStream delivery limit (AUDIT_MAX_DELIVER, 5 here, at a
// 2 s ack wait) those events were dropped from the consumer and missing from the log.
func TestIngestSurvivesNodeLoss(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3, nil)
	js, err := jetstream.New(c.Connect(t, nats.Name("publisher")))
	require.NoError(t, err)
	_, err = auditevent.Ensure(t.Context(), js, 3)
	require.NoError(t, err)
	e := &env{js: js, pool: pgtest.NewDB(t, store.Migrations()), reg: prometheus.NewRegistry()}
	const events = 3000
	evs := newEvents(t, "tenant-a", 0, events)
	e.publishAll(t, evs)

	wjs, err := jetstream.New(c.Connect(t, nats.Name("writer")))
	require.NoError(t, err)
	w := &env{js: wjs, pool: e.pool, reg: e.reg}
	cfg := testConfig()
	cfg.AckWait = 2 * time.Second
	cfg.StreamReplicas = 3
	w.start(t, cfg)
	require.Eventually(t, func() bool { total, _ := e.rows(t); return total >= 500 }, waitFor, tick)
	lost := c.Serving("writer")
	require.GreaterOrEqual(t, lost, 0)
	c.Stop(t, lost)
	ok := assert.Eventually(t, func() bool {
		total, _ := e.rows(t)
		return total == events
	}, 20*time.Second, 100*time.Millisecond)
	if !ok {
		total, _ := e.rows(t)
		cons, err := js.Consumer(t.Context(), auditevent.Stream, cfg.Consumer)
		require.NoError(t, err)
		info, err := cons.Info(t.Context())
		require.NoError(t, err)
		t.Fatalf("%d of %d rows; consumer: pending %d, ack pending %d, redelivered %d, waiting %d, delivered %+v, ack floor %+v, leader %s (lost node %d)",
			total, events, info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting, info.Delivered, info.AckFloor, info.Cluster.Leader, lost)
	}
}
