package upstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/services/router/internal/crossing"
)

// AuditPublisher stores audit events in the PARLEY_AUDIT stream.
type AuditPublisher struct {
	js      jetstream.JetStream
	timeout time.Duration
}

// NewAuditPublisher returns a publisher that waits at most timeout for the stream's ack.
func NewAuditPublisher(js jetstream.JetStream, timeout time.Duration) *AuditPublisher {
	return &AuditPublisher{js: js, timeout: timeout}
}

// HeaderAllowance is kept free of max_payload for the message's headers (Nats-Msg-Id,
// trace context).
const HeaderAllowance = 1024

// MaxEventBytes is the largest encoded event the connected NATS server takes.
func (a *AuditPublisher) MaxEventBytes() int {
	if nc := a.js.Conn(); nc != nil {
		if n := int(nc.MaxPayload()) - HeaderAllowance; n > 0 {
			return n
		}
	}
	return 0
}

// Record publishes ev with Nats-Msg-Id = request id and waits for the stream's ack, so a
// stored event is never lost and a retried publish is never stored twice. It does not
// stop when the caller goes away: the conversation happened and must be recorded.
func (a *AuditPublisher) Record(ctx context.Context, ev *auditv1.ConversationEvent) error {
	b, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode audit event: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.timeout)
	defer cancel()
	msg := &nats.Msg{Subject: auditevent.Subject, Data: b, Header: nats.Header{}}
	done := crossing.Track(ctx, crossing.AuditPublish)
	_, err = a.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.GetRequestId()))
	done()
	if err != nil {
		return fmt.Errorf("publish audit event: %w", err)
	}
	return nil
}
