package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
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
	cfg     AuditConfig
	retries prometheus.Counter
	prop    propagation.TextMapPropagator
	tracer  trace.Tracer
}

// AuditConfig bounds the wait for the audit stream's ack.
type AuditConfig struct {
	// Timeout bounds the whole publish, retries included.
	Timeout time.Duration
	// AttemptTimeout bounds the wait for one attempt's ack, for each MiB of the event
	// begun (attemptFor). An ack can be lost with the NATS node it travelled through, or
	// while the stream elects a new leader; the event is then sent again with the same
	// Nats-Msg-Id, which the stream stores once.
	AttemptTimeout time.Duration
}

// attemptFor is the wait for one attempt's ack of an event of n bytes: AttemptTimeout for
// each MiB begun, at most half of Timeout (so that a lost ack is still sent again) and
// never less than AttemptTimeout. A stream takes longer to store a large event (its file
// write, its replication in a cluster); an attempt given up while the stream is still
// storing it would send the whole event again, adding load when the stream is slowest.
func (c AuditConfig) attemptFor(n int) time.Duration {
	const mib = 1 << 20
	mibs := max(1, (n+mib-1)/mib)
	return max(c.AttemptTimeout, min(c.AttemptTimeout*time.Duration(mibs), c.Timeout/2))
}

// auditRetryWait is the pause before an attempt that failed at once (no stream leader,
// no connection) is made again.
const auditRetryWait = 50 * time.Millisecond

// NewAuditPublisher returns a publisher bounded by cfg; it counts its retries in reg.
// prop writes the trace context into each event's headers, so the audit service's write
// links to the publish; tracer, when not nil (tracing on), records a producer span per
// publish.
func NewAuditPublisher(js jetstream.JetStream, cfg AuditConfig, prop propagation.TextMapPropagator, tracer trace.Tracer, reg prometheus.Registerer) (*AuditPublisher, error) {
	if cfg.AttemptTimeout <= 0 || cfg.AttemptTimeout > cfg.Timeout {
		cfg.AttemptTimeout = cfg.Timeout
	}
	a := &AuditPublisher{js: js, cfg: cfg, prop: prop, tracer: tracer, retries: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "parley_router_audit_publish_retries_total",
		Help: "Audit event publishes sent again after an attempt failed or its ack did not come within " +
			"ROUTER_AUDIT_PUBLISH_ATTEMPT_TIMEOUT (the stream stores each event once).",
	})}
	if err := reg.Register(a.retries); err != nil {
		return nil, fmt.Errorf("register audit publisher metrics: %w", err)
	}
	return a, nil
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
// stored event is never lost and a retried publish is never stored twice. An attempt
// whose ack does not come within its wait (attemptFor: AttemptTimeout per MiB begun), or
// that fails, is made again until Timeout. It does not stop when the caller goes away:
// the conversation happened and must be recorded.
func (a *AuditPublisher) Record(ctx context.Context, ev *auditv1.ConversationEvent) error {
	b, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode audit event: %w", err)
	}
	// One context per attempt, bounded by the whole publish's deadline too: no second
	// context (and timer) for the whole publish.
	ctx = context.WithoutCancel(ctx)
	deadline := time.Now().Add(a.cfg.Timeout)
	msg := &nats.Msg{Subject: auditevent.Subject, Data: b, Header: nats.Header{}}
	ctx, span := startSend(ctx, a.tracer, auditevent.Subject)
	if a.prop != nil {
		a.prop.Inject(ctx, bus.HeaderCarrier(msg.Header))
	}
	done := crossing.Track(ctx, crossing.AuditPublish)
	defer done()
	attempt := a.cfg.attemptFor(len(b))
	for {
		began := time.Now()
		attemptEnd := began.Add(attempt)
		if attemptEnd.After(deadline) {
			attemptEnd = deadline
		}
		actx, acancel := context.WithDeadline(ctx, attemptEnd)
		_, err = a.js.PublishMsg(actx, msg, jetstream.WithMsgID(ev.GetRequestId()))
		acancel()
		switch {
		case err == nil:
			endSend(span, "")
			return nil
		case errors.Is(err, nats.ErrMaxPayload) || !time.Now().Before(deadline):
			endSend(span, "publish")
			return fmt.Errorf("publish audit event: %w", err)
		}
		a.retries.Inc()
		if time.Since(began) < auditRetryWait {
			wait := min(auditRetryWait, time.Until(deadline))
			if wait <= 0 {
				endSend(span, "publish")
				return fmt.Errorf("publish audit event: %w", err)
			}
			<-time.After(wait)
		}
	}
}
