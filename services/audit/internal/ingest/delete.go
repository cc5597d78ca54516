package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleyhq/parley/libs/auditevent"
)

// sweepInterval is how often, at most, the events already stored are purged from the
// stream: a sealed copy outlives its row's commit by about this much.
const sweepInterval = time.Second

// Outcomes of a sweep, the values of parley_audit_stream_purges_total's outcome label.
const (
	sweepOK     = "ok"
	sweepFailed = "failed"
)

// noteCommitted records that rows were committed and their messages acknowledged: the
// next sweep has work.
func (in *Ingester) noteCommitted() { in.dirty.Store(true) }

// sweepLoop purges the stored events from the stream every sweepInterval while there is
// something to purge, until ctx ends or stop is closed; then it sweeps once more unless
// ctx was cancelled (an abandoning stop).
func (in *Ingester) sweepLoop(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			if in.dirty.Swap(false) {
				in.sweep(ctx)
			}
			return
		case <-t.C:
			if in.dirty.Swap(false) {
				in.sweep(ctx)
			}
		}
	}
}

// sweep purges from the stream the conversation events below the durable consumer's ack
// floor: every one of them has been acknowledged, by this replica or another, and
// acknowledgements follow the commit of their rows, so each is in PostgreSQL. One
// consumer-info and one purge request per sweep, whatever the number of events: the raw
// audit copies, sealed, leave the stream within about sweepInterval of their ingestion,
// and the stream holds only what is still to be written. Dead letters (their own
// subject) are kept. A failed sweep is counted and tried again at the next tick. Its two
// requests are bounded by apiTimeout, as every JetStream call of the loop.
func (in *Ingester) sweep(ctx context.Context) {
	in.mu.Lock()
	s, c := in.stream, in.consumer
	in.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	if err := in.purgeBelowAckFloor(sctx, s, c); err != nil {
		in.dirty.Store(true)
		in.m.purges.WithLabelValues(sweepFailed).Inc()
		in.logger.WarnContext(context.WithoutCancel(ctx), "stored events not purged from the stream; tried again", "err", err)
		return
	}
	in.m.purges.WithLabelValues(sweepOK).Inc()
}

func (in *Ingester) purgeBelowAckFloor(ctx context.Context, s jetstream.Stream, c jetstream.Consumer) error {
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer info: %w", err)
	}
	floor := info.AckFloor.Stream
	if floor == 0 || floor <= in.purgedTo {
		return nil
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(auditevent.Subject), jetstream.WithPurgeSequence(floor+1)); err != nil {
		return fmt.Errorf("purge below %d: %w", floor+1, err)
	}
	in.purgedTo = floor
	return nil
}
