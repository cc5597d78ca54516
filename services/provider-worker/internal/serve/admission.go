package serve

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
)

// receive returns the message callback of rt. It never blocks: it hands the message to a
// goroutine that holds a slot or waits for one, or it rejects the message.
func (w *Worker) receive(rt *route) nats.MsgHandler {
	return func(m *nats.Msg) {
		received := time.Now()
		// A NATS message is the root of its request: nothing upstream of the worker carries
		// a Go context, only the trace headers.
		ctx := w.opts.Propagator.Extract(context.Background(), bus.HeaderCarrier(m.Header))
		if m.Reply == "" {
			rt.requests[outcomeInvalidArgument].Inc()
			w.logger.WarnContext(ctx, "request without reply subject", "component", rt.name)
			return
		}
		select {
		case w.slots <- struct{}{}:
			w.active.add()
			go func() {
				defer w.active.done()
				w.handle(ctx, rt, m, received)
			}()
			return
		default:
		}
		if w.waiting.Add(1) > int64(cap(w.slots)) {
			w.waiting.Add(-1)
			w.reject(ctx, rt, m)
			return
		}
		w.active.add()
		go func() {
			defer w.active.done()
			w.admit(ctx, rt, m, received)
		}()
	}
}

// admit waits up to AdmissionWait for a slot, then handles or rejects m.
func (w *Worker) admit(ctx context.Context, rt *route, m *nats.Msg, received time.Time) {
	timer := time.NewTimer(w.opts.AdmissionWait)
	defer timer.Stop()
	select {
	case w.slots <- struct{}{}:
		w.waiting.Add(-1)
		w.handle(ctx, rt, m, received)
	case <-timer.C:
		w.waiting.Add(-1)
		w.reject(ctx, rt, m)
	case <-w.abort:
		w.waiting.Add(-1)
		w.reject(ctx, rt, m)
	}
}

func (w *Worker) reject(ctx context.Context, rt *route, m *nats.Msg) {
	rt.rejected.Inc()
	rt.requests[outcomeRejected].Inc()
	w.replyError(ctx, rt, m.Reply, providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "worker saturated")
}

// handle serves m while holding a slot, which it releases.
func (w *Worker) handle(ctx context.Context, rt *route, m *nats.Msg, received time.Time) {
	defer func() { <-w.slots }()
	rt.queueWait.Observe(time.Since(received).Seconds())
	rt.inflight.Inc()
	defer rt.inflight.Dec()
	out := w.process(ctx, rt, m, received)
	rt.requests[out].Inc()
	rt.duration.Observe(time.Since(received).Seconds())
}
