package ingest_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/pgtest"
	"github.com/parleyhq/parley/services/audit/internal/ingest"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestIngestWritesEveryEventOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		events   int
		copies   int // publishes of each event, under distinct message ids
		size     int // request JSON padding
		maxRows  int
		maxBytes int
		// wantMinBatches is the fewest committed batches the limits allow.
		wantMinBatches int
	}{
		{name: "one event", events: 1, copies: 1, maxRows: 500, maxBytes: 4 << 20, wantMinBatches: 1},
		{name: "several batches by rows", events: 1234, copies: 1, maxRows: 100, maxBytes: 4 << 20, wantMinBatches: 13},
		{name: "redelivered copies", events: 60, copies: 3, maxRows: 500, maxBytes: 4 << 20, wantMinBatches: 1},
		// A byte limit below the server's max_payload (1 MiB here) is raised to it, so at
		// most four of these events fit in a batch.
		{name: "batches by bytes", events: 20, copies: 1, size: 256 << 10, maxRows: 500, maxBytes: 1, wantMinBatches: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			cfg := testConfig()
			cfg.MaxRows, cfg.MaxBytes = tt.maxRows, tt.maxBytes
			e.start(t, cfg)

			for i := range tt.events {
				ev := event(t, "tenant-a", i, tt.size)
				for c := range tt.copies {
					e.publish(t, encode(t, ev), fmt.Sprintf("%s-%d", ev.GetRequestId(), c))
				}
			}

			e.requireDrained(t, cfg.Consumer)
			total, distinct := e.rows(t)
			require.Equal(t, tt.events, total)
			require.Equal(t, tt.events, distinct)
			require.InDelta(t, tt.events, metric(t, e.reg, "parley_audit_rows_written_total"), 0)
			require.GreaterOrEqual(t, metric(t, e.reg, "parley_audit_batches_total", "outcome", "ok"), float64(tt.wantMinBatches))
			require.Zero(t, metric(t, e.reg, "parley_audit_batches_total", "outcome", "error"))
			require.Empty(t, e.deadLetters(t))
			require.Eventually(t, func() bool { return metric(t, e.reg, "parley_audit_ingest_lag") == 0 }, waitFor, tick)
		})
	}
}

func TestIngestDeadLettersPoison(t *testing.T) {
	t.Parallel()
	invalid := func(t *testing.T, mutate func(*auditv1.ConversationEvent)) []byte {
		ev := event(t, "tenant-a", 99, 0)
		mutate(ev)
		return encode(t, ev)
	}
	tests := []struct {
		name       string
		payload    func(t *testing.T) []byte
		wantReason string
	}{
		{name: "not protobuf", payload: func(*testing.T) []byte { return []byte{0xff, 0xff, 0xff} }, wantReason: ingest.ReasonDecode},
		{name: "wrong message type", payload: func(*testing.T) []byte { return []byte(`{"request_id":"x"}`) }, wantReason: ingest.ReasonDecode},
		{name: "empty tenant", payload: func(t *testing.T) []byte {
			return invalid(t, func(ev *auditv1.ConversationEvent) { ev.Tenant = "" })
		}, wantReason: ingest.ReasonInvalid},
		{name: "request id not a uuid", payload: func(t *testing.T) []byte {
			return invalid(t, func(ev *auditv1.ConversationEvent) { ev.RequestId = "req-1" })
		}, wantReason: ingest.ReasonInvalid},
		{name: "unknown status", payload: func(t *testing.T) []byte {
			return invalid(t, func(ev *auditv1.ConversationEvent) { ev.Status = 42 })
		}, wantReason: ingest.ReasonInvalid},
		{name: "request json not json", payload: func(t *testing.T) []byte {
			return invalid(t, func(ev *auditv1.ConversationEvent) { ev.RequestJson = []byte("{") })
		}, wantReason: ingest.ReasonInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			cfg := testConfig()
			e.start(t, cfg)

			before, after := event(t, "tenant-a", 1, 0), event(t, "tenant-a", 2, 0)
			poison := tt.payload(t)
			e.publish(t, encode(t, before), before.GetRequestId())
			seq := e.publish(t, poison, "poison-1")
			e.publish(t, encode(t, after), after.GetRequestId())

			e.requireDrained(t, cfg.Consumer)
			total, _ := e.rows(t)
			require.Equal(t, 2, total)
			dead := e.deadLetters(t)
			require.Len(t, dead, 1)
			require.Equal(t, poison, dead[0].Data())
			h := dead[0].Headers()
			require.Equal(t, tt.wantReason, h.Get(ingest.HeaderReason))
			require.NotEmpty(t, h.Get(ingest.HeaderError))
			require.Equal(t, strconv.FormatUint(seq, 10), h.Get(ingest.HeaderStreamSeq))
			require.Equal(t, "poison-1", h.Get(ingest.HeaderMsgID))
			require.Equal(t, auditevent.Subject, h.Get(ingest.HeaderSubject))
			require.Equal(t, "1", h.Get(ingest.HeaderDelivered))
			require.InDelta(t, 1, metric(t, e.reg, "parley_audit_dead_letters_total", "reason", tt.wantReason), 0)
		})
	}
}

// TestIngestDeadLettersRowsTheDatabaseRejects covers events that pass validation but that
// PostgreSQL refuses: here a CHECK constraint added to the test database rejects one row.
// The rows around it are written at once; the bad one is retried until its last delivery.
func TestIngestDeadLettersRowsTheDatabaseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		maxDeliver int
		good       int
	}{
		{name: "single delivery", maxDeliver: 1, good: 9},
		{name: "three deliveries", maxDeliver: 3, good: 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			_, err := e.pool.Exec(t.Context(), "ALTER TABLE conversations ADD CONSTRAINT test_reject CHECK (model <> 'rejected')")
			require.NoError(t, err)
			cfg := testConfig()
			cfg.MaxDeliver = tt.maxDeliver
			e.start(t, cfg)

			bad := event(t, "tenant-a", 0, 0)
			bad.Model = "rejected"
			events := append([]*auditv1.ConversationEvent{bad}, newEvents(t, "tenant-a", 1, tt.good)...)
			events[0], events[len(events)/2] = events[len(events)/2], events[0]
			e.publishAll(t, events)

			e.requireDrained(t, cfg.Consumer)
			total, _ := e.rows(t)
			require.Equal(t, tt.good, total)
			dead := e.deadLetters(t)
			require.Len(t, dead, 1)
			require.Equal(t, ingest.ReasonMaxDeliver, dead[0].Headers().Get(ingest.HeaderReason))
			require.Equal(t, strconv.Itoa(tt.maxDeliver), dead[0].Headers().Get(ingest.HeaderDelivered))
			require.Equal(t, bad.GetRequestId(), dead[0].Headers().Get(ingest.HeaderMsgID))
			require.Contains(t, dead[0].Headers().Get(ingest.HeaderError), "23514")
			require.InDelta(t, 1, metric(t, e.reg, "parley_audit_dead_letters_total", "reason", ingest.ReasonMaxDeliver), 0)
		})
	}
}

// TestIngestHoldsEventsWhileDatabaseIsDown takes the test database away for real: it stops
// accepting connections and its sessions are terminated. With AUDIT_MAX_DELIVER=1, any
// delivery spent on the outage would dead-letter an event, so the test also shows that an
// outage spends none.
func TestIngestHoldsEventsWhileDatabaseIsDown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		before int // events written before the outage
		during int // events published during the outage
	}{
		{name: "down before the first event", before: 0, during: 120},
		{name: "down between batches", before: 30, during: 70},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			cfg := testConfig()
			cfg.MaxDeliver = 1
			e.start(t, cfg)
			db := databaseOf(t, e.pool)

			events := newEvents(t, "tenant-a", 0, tt.before+tt.during)
			e.publishAll(t, events[:tt.before])
			e.requireDrained(t, cfg.Consumer)

			setConnections(t, db, false)
			e.publishAll(t, events[tt.before:])
			// Several failed attempts, then the events must all still be in the stream.
			require.Eventually(t, func() bool {
				return metric(t, e.reg, "parley_audit_batches_total", "outcome", "error") >= 3
			}, waitFor, tick)
			pending, ackPending := e.consumerState(t, cfg.Consumer)
			require.Equal(t, tt.during, int(pending)+ackPending) //nolint:gosec // small
			require.Eventually(t, func() bool {
				return metric(t, e.reg, "parley_audit_ingest_lag") == float64(tt.during)
			}, waitFor, tick)

			setConnections(t, db, true)
			e.requireDrained(t, cfg.Consumer)
			total, distinct := e.rows(t)
			require.Equal(t, tt.before+tt.during, total)
			require.Equal(t, total, distinct)
			require.Empty(t, e.deadLetters(t))
		})
	}
}

func TestIngestStop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// outage holds the published events in the stopping ingester.
		outage bool
	}{
		{name: "idle", outage: false},
		{name: "holding a batch", outage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			cfg := testConfig()
			db := databaseOf(t, e.pool)
			in, err := ingest.New(e.js, store.New(e.pool), cfg, testLogger(t), e.reg)
			require.NoError(t, err)
			require.NoError(t, in.Start(t.Context()))
			require.NoError(t, in.Ready(t.Context()))

			setConnections(t, db, !tt.outage)
			events := []*auditv1.ConversationEvent{event(t, "tenant-a", 1, 0), event(t, "tenant-a", 2, 0)}
			e.publishAll(t, events)
			if tt.outage {
				require.Eventually(t, func() bool {
					return metric(t, e.reg, "parley_audit_batches_total", "outcome", "error") >= 1
				}, waitFor, tick)
			} else {
				e.requireDrained(t, cfg.Consumer)
			}

			// Stop ends the loop by itself, a held batch included: it returns nil, not the
			// error of a context that expired (the bound only keeps a hang from lasting).
			ctx, cancel := context.WithTimeout(t.Context(), waitFor)
			defer cancel()
			require.NoError(t, in.Stop(ctx))
			require.Error(t, in.Ready(t.Context()))
			require.NoError(t, in.Stop(ctx), "a second Stop is a no-op")

			// A new instance on the same durable consumer finishes the work.
			setConnections(t, db, true)
			late := event(t, "tenant-a", 3, 0)
			e.publish(t, encode(t, late), late.GetRequestId())
			next, err := ingest.New(e.js, store.New(e.pool), cfg, testLogger(t), prometheus.NewRegistry())
			require.NoError(t, err)
			require.NoError(t, next.Start(t.Context()))
			t.Cleanup(func() { require.NoError(t, next.Stop(context.WithoutCancel(t.Context()))) })
			e.requireDrained(t, cfg.Consumer)
			total, distinct := e.rows(t)
			require.Equal(t, 3, total)
			require.Equal(t, 3, distinct)
			require.Empty(t, e.deadLetters(t))
		})
	}
}

// databaseOf returns the name of the database pool is connected to.
func databaseOf(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var name string
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT current_database()").Scan(&name))
	return name
}

// setConnections opens or closes database db to new connections through an administrative
// connection to PG_TEST_DSN's database. Closing it also terminates its sessions, so the
// ingester's pool loses every connection, as in a server restart.
func setConnections(t *testing.T, db string, allow bool) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	dsn := pgtest.DSN(t)
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close(ctx)) }()
	_, err = conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS %t", pgx.Identifier{db}.Sanitize(), allow))
	require.NoError(t, err)
	if !allow {
		_, err = conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", db)
		require.NoError(t, err)
	}
	// The cleanup drops the database whatever its state, but reopen it for later steps.
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return
		}
		defer func() { _ = c.Close(context.Background()) }()
		_, _ = c.Exec(context.Background(), fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS true", pgx.Identifier{db}.Sanitize()))
	})
}
