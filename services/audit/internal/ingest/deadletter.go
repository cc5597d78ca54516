package ingest

import (
	"context"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleyhq/parley/libs/auditevent"
)

// Headers of a dead letter. The payload is the original message's, unchanged, and the
// original's own headers are kept, except JetStream's Nats-* control headers.
const (
	// HeaderReason is why the event was set aside: ReasonDecode, ReasonInvalid or
	// ReasonMaxDeliver.
	HeaderReason = "Parley-Dead-Letter-Reason"
	// HeaderError is the error that made the event a dead letter, shortened.
	HeaderError = "Parley-Dead-Letter-Error"
	// HeaderStreamSeq is the original message's sequence in the stream, where it stays
	// until the stream's retention removes it.
	HeaderStreamSeq = "Parley-Original-Stream-Seq"
	// HeaderSubject is the original message's subject.
	HeaderSubject = "Parley-Original-Subject"
	// HeaderMsgID is the original message's Nats-Msg-Id, the router's request id.
	HeaderMsgID = "Parley-Original-Msg-Id"
	// HeaderDelivered is how many times the consumer had delivered the original.
	HeaderDelivered = "Parley-Num-Delivered"
)

// maxErrorHeader bounds HeaderError's length.
const maxErrorHeader = 512

// deadLetter publishes a copy of m to the dead-letter subject, waits for the stream to
// store it, and only then terminates m. When the copy cannot be stored, m is left to be
// redelivered, never dropped.
func (in *Ingester) deadLetter(ctx context.Context, m jetstream.Msg, reason string, cause error) {
	seq, delivered := meta(m)
	seqText := strconv.FormatUint(seq, 10)
	h := nats.Header{}
	for k, vs := range m.Headers() {
		if strings.HasPrefix(k, "Nats-") {
			continue
		}
		h[k] = append([]string(nil), vs...)
	}
	if id := m.Headers().Get(jetstream.MsgIDHeader); id != "" {
		h.Set(HeaderMsgID, id)
	}
	// Deduplicates the copy when m is redelivered after a lost Term.
	h.Set(jetstream.MsgIDHeader, "deadletter-"+seqText)
	h.Set(HeaderReason, reason)
	h.Set(HeaderError, headerValue(cause.Error(), maxErrorHeader))
	h.Set(HeaderStreamSeq, seqText)
	h.Set(HeaderSubject, m.Subject())
	h.Set(HeaderDelivered, strconv.FormatUint(delivered, 10))

	pctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	if _, err := in.js.PublishMsg(pctx, &nats.Msg{Subject: auditevent.DeadLetterSubject, Header: h, Data: m.Data()}); err != nil {
		in.m.deadLetterFails.Inc()
		in.logger.ErrorContext(ctx, "dead letter failed", "stream_seq", seq, "reason", reason,
			"num_delivered", delivered, "err", err)
		if delivered < uint64(in.cfg.MaxDeliver) {
			_ = m.NakWithDelay(backoff(int(delivered), maxBackoff)) //nolint:gosec // delivered < MaxDeliver, an int
		}
		return
	}
	if err := m.TermWithReason("parley audit dead letter: " + reason); err != nil {
		// The copy is stored; a redelivery is dead-lettered again and deduplicated.
		in.logger.WarnContext(ctx, "term failed", "stream_seq", seq, "err", err)
	}
	in.m.deadLetters.WithLabelValues(reason).Inc()
	in.logger.WarnContext(ctx, "event dead-lettered", "stream_seq", seq, "reason", reason,
		"num_delivered", delivered, "err", cause)
}

// meta returns m's stream sequence and delivery count. A message from a pull consumer
// always carries them; zero values stand in if not.
func meta(m jetstream.Msg) (seq, delivered uint64) {
	md, err := m.Metadata()
	if err != nil {
		return 0, 0
	}
	return md.Sequence.Stream, md.NumDelivered
}

// headerValue makes s safe as a NATS header value: one line of at most n bytes.
func headerValue(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
