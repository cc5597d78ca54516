package ingest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const (
	// deleteWorkers is how many deletions are in flight at once: each is a JetStream API
	// round trip, made off the write path.
	deleteWorkers = 4
	// deleteQueue bounds the committed sealed messages waiting for deletion; a full queue
	// slows the writer rather than dropping a deletion.
	deleteQueue = 4096
	// deleteAttempts is how many times a deletion is tried before it is counted failed
	// (the message then stays, sealed, until the stream's MaxAge).
	deleteAttempts = 5
)

// queueDeletes hands the stream sequences of b's sealed messages, whose rows are
// committed, to the deleters: the raw copy, sealed, does not outlive its ingestion.
func (in *Ingester) queueDeletes(ctx context.Context, b batch) {
	for i, m := range b.msgs {
		if !b.sealed[i] {
			continue
		}
		seq, _ := meta(m)
		if seq == 0 {
			in.m.deletes.WithLabelValues(deleteFailed).Inc()
			continue
		}
		select {
		case in.deletes <- seq:
		case <-ctx.Done():
			in.m.deletes.WithLabelValues(deleteSkipped).Inc()
		}
	}
}

// deleteLoop deletes queued messages until the queue is closed.
func (in *Ingester) deleteLoop(ctx context.Context) {
	for seq := range in.deletes {
		in.deleteSealed(ctx, seq)
	}
}

// deleteSealed deletes the message seq from the stream, retrying a few times. The
// deletion is secure: JetStream overwrites the message's bytes in its block with random
// data, so the ciphertext does not stay on disk until the block is compacted. A message
// already gone (another replica deleted its redelivered copy) counts as deleted. At an
// abandoning stop the deletion is skipped and counted.
func (in *Ingester) deleteSealed(ctx context.Context, seq uint64) {
	in.mu.Lock()
	s := in.stream
	in.mu.Unlock()
	var err error
	for attempt := 1; attempt <= deleteAttempts; attempt++ {
		if ctx.Err() != nil {
			in.m.deletes.WithLabelValues(deleteSkipped).Inc()
			in.logger.WarnContext(context.WithoutCancel(ctx), "sealed message not deleted at stop", "stream_seq", seq)
			return
		}
		dctx, cancel := context.WithTimeout(ctx, apiTimeout)
		err = s.SecureDeleteMsg(dctx, seq)
		cancel()
		if err == nil || gone(err) {
			in.m.deletes.WithLabelValues(deleteOK).Inc()
			return
		}
		t := time.NewTimer(backoff(attempt, maxBackoff))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	in.m.deletes.WithLabelValues(deleteFailed).Inc()
	in.logger.WarnContext(ctx, "sealed message not deleted; it stays sealed until the stream's max age",
		"stream_seq", seq, "attempts", deleteAttempts, "err", err)
}

// notFound is how JetStream reports deleting a message that is not there: the client
// folds the API error into a string.
var notFound = fmt.Sprintf("err_code=%d", jetstream.JSErrCodeMessageNotFound)

func gone(err error) bool { return strings.Contains(err.Error(), notFound) }
