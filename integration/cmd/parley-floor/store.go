package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// keptTable is where the kept store writes: one row per event, keyed by its message id.
// The primary key is what storing each event once needs; the audit log's own table has
// more (its columns, its indexes for queries, a partition per day), so this is less work
// than any audit log can do.
const keptTable = "parley_floor_kept_events"

// keptStoreBatch is the most events one fetch, one COPY and one ack handle.
const keptStoreBatch = 1024

// keptStoreTick is how often the store fetches what the stream holds: events wait about
// that long before they are written, and arrive together (NATS writes a fetch's messages
// in a burst rather than each as it is published, to a consumer that waits for them).
const keptStoreTick = 50 * time.Millisecond

// keptStore is the audit storage a path keeps, with nothing else to do: it reads the
// events of a stream (filtered to the kept server's subject) from a durable pull consumer
// in batches, copies each batch into keptTable in one COPY (one transaction), and
// acknowledges the batch with one ack of its last message (AckAll). The audit service
// does more for each event (it decodes it, opens its sealed copy, scrubs it, acks each
// message so that several replicas can share the consumer); what storing an event durably
// and once in PostgreSQL cannot skip is here.
type keptStore struct {
	cons jetstream.Consumer
	db   *pgx.Conn
}

// newKeptStore creates keptTable and the consumer of stream's events on subject: an event
// published once it returns is stored.
func newKeptStore(ctx context.Context, js jetstream.JetStream, stream, subject string, db *pgx.Conn) (*keptStore, error) {
	if _, err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+keptTable+` (id text PRIMARY KEY, event bytea NOT NULL)`); err != nil {
		return nil, fmt.Errorf("create %s: %w", keptTable, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       "parley-floor-kept-store",
		FilterSubject: subject,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 4 * keptStoreBatch,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer on %s: %w", stream, err)
	}
	return &keptStore{cons: cons, db: db}, nil
}

// run stores events until ctx ends.
func (s *keptStore) run(ctx context.Context) error {
	rows := make([][]any, 0, keptStoreBatch)
	tick := time.NewTicker(keptStoreTick)
	defer tick.Stop()
	for full := false; ; {
		if !full {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
		batch, err := s.cons.FetchNoWait(keptStoreBatch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch: %w", err)
		}
		rows = rows[:0]
		var last jetstream.Msg
		for m := range batch.Messages() {
			rows = append(rows, []any{m.Headers().Get(nats.MsgIdHdr), m.Data()})
			last = m
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrBatchCompleted) && ctx.Err() == nil {
			return fmt.Errorf("fetch: %w", err)
		}
		full = len(rows) == keptStoreBatch
		if last == nil {
			continue
		}
		if _, err := s.db.CopyFrom(ctx, pgx.Identifier{keptTable}, []string{"id", "event"}, pgx.CopyFromRows(rows)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("copy into %s: %w", keptTable, err)
		}
		if err := last.Ack(); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
	}
}
