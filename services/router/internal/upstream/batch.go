package upstream

import (
	"context"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
)

// batcher sends a router's calls of one kind to a service one call at a time. A call
// that finds none in flight goes at once, alone: one at a time, nothing waits. Calls
// that come while one is in flight queue, and when it ends they go together in one batch
// call (at most maxBatch, and at most maxWeight of weight; the rest wait for the next). So under load many
// conversations share one crossing to the service and back, and a batch is as large as
// the load makes it: no timer holds a call back.
//
// The batch is sent by the goroutine of its first call, which the batcher wakes, so no
// goroutine is started for it; that caller stays for the batch call (bounded by timeout)
// even when its own context ends, since the others' answers depend on it. A caller whose
// context ends while it queues leaves the queue. One whose context ends while its batch
// is in flight leaves too, unless stayWhenSent, and its answer then goes to left (a
// lookup's lease is given back). A service that answers the batch call Unimplemented (an
// older version, in a rolling upgrade) gets that batch's calls alone, and every call alone
// for unbatchedRetry, before a batch is tried again.
type batcher[Req, Res any] struct {
	alone func(ctx context.Context, req Req) (Res, error)
	// many sends reqs in one call: their answers in order, each with its error (nil: its
	// result), or err for the whole call. An answer with another count than reqs fails
	// every call of the batch.
	many func(ctx context.Context, reqs []Req) (res []Res, errs []error, err error)
	// weight, when set, is what a call adds to a batch, and a batch holds at most
	// maxWeight of it; its first call goes whatever its weight.
	weight    func(Req) int
	maxWeight int
	// left gets the answer of a call whose caller had gone; nil: dropped.
	left func(req Req, res Res)
	// stayWhenSent: a caller whose context ends once its call is in a batch in flight
	// waits for the batch's answer (bounded by timeout) instead of leaving. For Puts: a
	// caller that gave up would Release a lease the batch then fills.
	stayWhenSent bool
	timeout      time.Duration // of one batch call
	// sizes observes the calls' sizes: 1 alone, n in a batch.
	sizes prometheus.Observer

	mu             sync.Mutex
	busy           bool // a call is in flight
	queue          []*pendingCall[Req, Res]
	unbatchedUntil time.Time
	// stayed counts the callers that stayed for their batch after their context ended
	// (stayWhenSent), for tests.
	stayed int
}

// maxBatch is the most calls one batch carries: the cache service's own limit
// (proto/parley/cache/v1/cache.proto).
const maxBatch = 64

// unbatchedRetry is how long calls go alone after the service answered a batch
// Unimplemented, before a batch is tried again.
const unbatchedRetry = time.Minute

// callState is where a queued call is; it changes under the batcher's mutex.
type callState int

const (
	callQueued   callState = iota
	callSent               // in a batch in flight
	callLeading            // woken to send its batch
	callAnswered           // res and err are set
)

type pendingCall[Req, Res any] struct {
	ctx  context.Context //nolint:containedctx // a batch's first call lends its trace to the batch
	req  Req
	done chan struct{} // closed when state becomes callLeading or callAnswered

	state callState
	gone  bool                     // its caller returned before its answer
	batch []*pendingCall[Req, Res] // callLeading: the batch to send
	res   Res
	err   error
}

// do sends req alone when no call is in flight, else in the next batch. ctx bounds the
// wait; the call itself is bounded by ctx (alone) or by the batcher's timeout.
func (b *batcher[Req, Res]) do(ctx context.Context, req Req) (Res, error) {
	b.mu.Lock()
	if !b.unbatchedUntil.IsZero() {
		if time.Now().Before(b.unbatchedUntil) {
			b.mu.Unlock()
			b.observe(1)
			return b.alone(ctx, req)
		}
		b.unbatchedUntil = time.Time{}
	}
	if !b.busy {
		b.busy = true
		b.mu.Unlock()
		b.observe(1)
		res, err := b.alone(ctx, req)
		b.next()
		return res, err
	}
	p := &pendingCall[Req, Res]{ctx: ctx, req: req, done: make(chan struct{})}
	b.queue = append(b.queue, p)
	b.mu.Unlock()

	select {
	case <-p.done:
	case <-ctx.Done():
		b.mu.Lock()
		state := p.state
		leave := state == callQueued || (state == callSent && !b.stayWhenSent)
		if leave {
			p.gone = true
		} else if state == callSent {
			b.stayed++
		}
		b.mu.Unlock()
		if leave {
			var zero Res
			return zero, ctx.Err()
		}
		// Leading or answered: done is closed already, or about to be (the state changed
		// under the mutex). Sent and staying: done closes with the batch's answer.
		<-p.done
	}
	if p.state == callLeading {
		b.send(p.batch)
	}
	return p.res, p.err
}

// next ends the call in flight: it hands the queued calls, if any, to the first of them
// to send as a batch, or marks the batcher idle.
func (b *batcher[Req, Res]) next() {
	b.mu.Lock()
	var batch []*pendingCall[Req, Res]
	n, weight := 0, 0
	for _, p := range b.queue {
		if p.gone {
			n++
			continue
		}
		if len(batch) == maxBatch {
			break
		}
		if b.weight != nil {
			w := b.weight(p.req)
			if len(batch) > 0 && weight+w > b.maxWeight {
				break
			}
			weight += w
		}
		n++
		batch = append(batch, p)
	}
	clear(b.queue[:n]) // the backing array keeps no finished call (nor its value)
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // let the backing array go
	}
	if len(batch) == 0 {
		b.busy = false
		b.mu.Unlock()
		return
	}
	for _, p := range batch {
		p.state = callSent
	}
	lead := batch[0]
	lead.state, lead.batch = callLeading, batch
	b.mu.Unlock()
	close(lead.done)
}

// send makes batch's call, answers each of its calls and ends the call.
func (b *batcher[Req, Res]) send(batch []*pendingCall[Req, Res]) {
	reqs := make([]Req, len(batch))
	for i, p := range batch {
		reqs[i] = p.req
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), b.timeout)
	b.observe(len(batch))
	res, errs, err := b.many(ctx, reqs)
	cancel()
	if connect.CodeOf(err) == connect.CodeUnimplemented {
		b.unbatched(batch)
		return
	}
	if err == nil && (len(res) != len(batch) || len(errs) != len(batch)) {
		err = fmt.Errorf("%d answers for %d calls", len(res), len(batch))
	}
	for i, p := range batch {
		var r Res
		rerr := err
		if err == nil {
			r, rerr = res[i], errs[i]
		}
		b.answer(p, r, rerr)
	}
	b.next()
}

// answer gives p its answer: to its caller, or to left when the caller has gone.
func (b *batcher[Req, Res]) answer(p *pendingCall[Req, Res], res Res, err error) {
	b.mu.Lock()
	gone := p.gone
	p.res, p.err = res, err
	leading := p.state == callLeading
	p.state = callAnswered
	b.mu.Unlock()
	if gone && err == nil && b.left != nil {
		b.left(p.req, res)
	}
	if !leading {
		close(p.done)
	}
}

// unbatched sends each call of batch alone, concurrently, for a service without the
// batch call, and has later calls go alone for unbatchedRetry.
func (b *batcher[Req, Res]) unbatched(batch []*pendingCall[Req, Res]) {
	b.mu.Lock()
	b.unbatchedUntil = time.Now().Add(unbatchedRetry)
	b.mu.Unlock()
	type result struct {
		res Res
		err error
	}
	results := make([]result, len(batch))
	var wg sync.WaitGroup
	for i, p := range batch {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), b.timeout)
			defer cancel()
			b.observe(1)
			res, err := b.alone(ctx, p.req)
			results[i] = result{res, err}
		})
	}
	wg.Wait()
	for i, p := range batch {
		b.answer(p, results[i].res, results[i].err)
	}
	b.next()
}

func (b *batcher[Req, Res]) observe(n int) {
	if b.sizes != nil {
		b.sizes.Observe(float64(n))
	}
}
