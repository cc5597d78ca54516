package upstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/services/router/internal/crossing"
)

// AuditPublisher stores audit events in the PARLEY_AUDIT stream.
type AuditPublisher struct {
	js      jetstream.JetStream
	timeout time.Duration
	prop    propagation.TextMapPropagator
	tracer  trace.Tracer
}

// NewAuditPublisher returns a publisher that waits at most timeout for the stream's ack.
// prop writes the trace context into each event's headers, so the audit service's write
// links to the publish; tracer, when not nil (tracing on), records a producer span per
// publish.
func NewAuditPublisher(js jetstream.JetStream, timeout time.Duration, prop propagation.TextMapPropagator, tracer trace.Tracer) *AuditPublisher {
	return &AuditPublisher{js: js, timeout: timeout, prop: prop, tracer: tracer}
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
	ctx, span := startSend(ctx, a.tracer, auditevent.Subject)
	if a.prop != nil {
		a.prop.Inject(ctx, bus.HeaderCarrier(msg.Header))
	}
	done := crossing.Track(ctx, crossing.AuditPublish)
	_, err = a.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.GetRequestId()))
	done()
	if err != nil {
		endSend(span, "publish")
		return fmt.Errorf("publish audit event: %w", err)
	}
	endSend(span, "")
	return nil
}
