package serve

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// pendingBytes caps the bytes the NATS client buffers per subscription, as its default does.
const pendingBytes = 64 << 20

// Start joins the queue group of every component and waits until the server has
// registered the subscriptions, so a request published after Start returns is served.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.stopped {
		return errors.New("start worker: a worker starts only once")
	}
	w.started = true
	if err := w.subscribeControl(); err != nil {
		return err
	}
	for _, rt := range w.routes {
		sub, err := w.nc.QueueSubscribe(rt.subject, rt.subject, w.receive(rt))
		if err == nil {
			err = sub.SetPendingLimits(w.opts.PendingMsgs, pendingBytes)
			w.subs = append(w.subs, sub)
		}
		if err != nil {
			return errors.Join(fmt.Errorf("subscribe %s: %w", rt.subject, err), w.unsubscribeLocked())
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	if err := w.nc.FlushWithContext(ctx); err != nil {
		return errors.Join(fmt.Errorf("flush subscriptions: %w", err), w.unsubscribeLocked())
	}
	w.startPresence()
	w.logger.InfoContext(ctx, "worker subscribed",
		"components", w.Components(), "worker_id", w.opts.WorkerID, "concurrency", w.opts.Concurrency)
	for _, rt := range w.routes {
		if !rt.policy.Empty() {
			w.logger.InfoContext(ctx, "resiliency policy", "policy", rt.policy)
		}
	}
	return nil
}

func (w *Worker) unsubscribeLocked() error {
	var errs []error
	for _, sub := range w.subs {
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("unsubscribe %s: %w", sub.Subject, err))
		}
	}
	w.subs = nil
	return errors.Join(errs...)
}

// Stop drains the subscriptions, so no new request arrives and buffered ones are still
// answered, then waits until every running call has replied or ctx ends. Calls still
// running then are cancelled and answered UNAVAILABLE.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	subs := w.subs
	w.subs = nil
	w.stopped = true
	p := w.presence
	w.presence = nil
	w.mu.Unlock()
	// Goodbye first: the worker takes no more work.
	w.stopPresence(p)

	var errs []error
	closed := make([]<-chan nats.SubStatus, 0, len(subs))
	for _, sub := range subs {
		ch := sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			if !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
				errs = append(errs, fmt.Errorf("drain %s: %w", sub.Subject, err))
			}
			continue
		}
		closed = append(closed, ch)
	}
wait:
	for _, ch := range closed {
		select {
		case <-ch:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("drain subscriptions: %w", ctx.Err()))
			break wait
		}
	}
	if n, err := w.active.wait(ctx); err != nil {
		errs = append(errs, fmt.Errorf("wait for %d running calls: %w", n, err))
	}
	// Whatever still runs is past the stop budget: cancel it so that it answers now.
	w.abortOnce.Do(func() { close(w.abort) })
	if w.ctl.sub != nil {
		if err := w.ctl.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			errs = append(errs, fmt.Errorf("unsubscribe stream control: %w", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("stop worker: %w", errors.Join(errs...))
	}
	w.logger.InfoContext(ctx, "worker stopped", "worker_id", w.opts.WorkerID)
	return nil
}

// Ready reports whether every subscription is active.
func (w *Worker) Ready(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.stopped:
		return errors.New("worker is stopping")
	case !w.started || len(w.subs) == 0:
		return errors.New("not subscribed")
	}
	for _, sub := range w.subs {
		if !sub.IsValid() {
			return fmt.Errorf("subscription %s is closed", sub.Subject)
		}
	}
	return nil
}

// tracker counts the goroutines that serve requests, so Stop can wait for them. Unlike a
// sync.WaitGroup it may be waited on while counts still rise.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to zero
}

func (t *tracker) add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
	t.mu.Unlock()
}

// wait returns when the count is zero, or with the count left when ctx ends.
func (t *tracker) wait(ctx context.Context) (int, error) {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return 0, nil
	}
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return 0, nil
	case <-ctx.Done():
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.n, ctx.Err()
	}
}
