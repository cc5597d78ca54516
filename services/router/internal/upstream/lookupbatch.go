package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	cachev1 "github.com/parleyhq/parley/gen/pb/parley/cache/v1"
)

// maxLookupBatch is the most lookups one LookupBatch carries: the cache service's own
// limit (MaxLookupBatch of its rpc package; proto/parley/cache/v1/cache.proto).
const maxLookupBatch = 64

// lookupClient is what the batcher needs of the cache service's client.
type lookupClient interface {
	Lookup(ctx context.Context, req *cachev1.LookupRequest) (*cachev1.LookupResponse, error)
	LookupBatch(ctx context.Context, req *cachev1.LookupBatchRequest) (*cachev1.LookupBatchResponse, error)
}

// lookupBatcher sends a router's cache lookups one call at a time. A lookup that finds
// no call in flight goes at once, alone, as a plain Lookup: one at a time, nothing
// waits. Lookups that come while a call is in flight queue, and when it ends they go
// together in one LookupBatch (at most maxLookupBatch; the rest wait for the next). So
// under load many conversations share one crossing to the cache and back, and the
// batch is as large as the load makes it: no timer holds a lookup back.
//
// The batch is sent by the goroutine of its first lookup, which the batcher wakes, so no
// goroutine is started for it. A lookup whose context ends while it queues leaves the
// queue; one whose context ends while its batch is in flight leaves too, and a lease the
// batch then grants it is released (release), so that no other caller waits for it.
type lookupBatcher struct {
	client  lookupClient
	timeout time.Duration // of one batch call
	release func(req *cachev1.LookupRequest, lease uint64)
	// sizes observes the lookups of each call: 1 alone, n in a batch.
	sizes prometheus.Observer

	mu    sync.Mutex
	busy  bool // a call is in flight
	queue []*pendingLookup
	// unbatchedUntil: the cache service answered a batch Unimplemented (an older
	// version, in a rolling upgrade); until then lookups go alone, as before batching.
	unbatchedUntil time.Time
}

// lookupState is where a queued lookup is; it changes under the batcher's mutex.
type lookupState int

const (
	lookupQueued   lookupState = iota
	lookupSent                 // in a batch in flight
	lookupLeading              // woken to send its batch
	lookupAnswered             // res and err are set
)

type pendingLookup struct {
	ctx  context.Context //nolint:containedctx // the batch's first lookup lends its trace to the batch call
	req  *cachev1.LookupRequest
	done chan struct{} // closed when state becomes lookupLeading or lookupAnswered

	state lookupState
	gone  bool             // its caller returned before its answer
	batch []*pendingLookup // lookupLeading: the batch to send
	res   *cachev1.LookupResponse
	err   error
}

// Lookup sends req alone when no call is in flight, else in the next batch. ctx bounds
// the wait; the call itself is bounded by ctx (alone) or by the batcher's timeout.
func (b *lookupBatcher) Lookup(ctx context.Context, req *cachev1.LookupRequest) (*cachev1.LookupResponse, error) {
	b.mu.Lock()
	if !b.unbatchedUntil.IsZero() {
		if time.Now().Before(b.unbatchedUntil) {
			b.mu.Unlock()
			b.observe(1)
			return b.client.Lookup(ctx, req)
		}
		b.unbatchedUntil = time.Time{}
	}
	if !b.busy {
		b.busy = true
		b.mu.Unlock()
		b.observe(1)
		res, err := b.client.Lookup(ctx, req)
		b.next()
		return res, err
	}
	p := &pendingLookup{ctx: ctx, req: req, done: make(chan struct{})}
	b.queue = append(b.queue, p)
	b.mu.Unlock()

	select {
	case <-p.done:
	case <-ctx.Done():
		b.mu.Lock()
		state := p.state
		if state == lookupQueued || state == lookupSent {
			p.gone = true
		}
		b.mu.Unlock()
		switch state {
		case lookupQueued, lookupSent:
			return nil, ctx.Err()
		case lookupLeading, lookupAnswered:
			<-p.done // closed already, or about to be: the state changed under the mutex
		}
	}
	if p.state == lookupLeading {
		b.send(p.batch)
	}
	return p.res, p.err
}

// next ends the call in flight: it hands the queued lookups, if any, to the first of
// them to send as a batch, or marks the batcher idle.
func (b *lookupBatcher) next() {
	b.mu.Lock()
	var batch []*pendingLookup
	n := 0
	for _, p := range b.queue {
		n++
		if p.gone {
			continue
		}
		batch = append(batch, p)
		if len(batch) == maxLookupBatch {
			break
		}
	}
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
		p.state = lookupSent
	}
	lead := batch[0]
	lead.state, lead.batch = lookupLeading, batch
	b.mu.Unlock()
	close(lead.done)
}

// send calls LookupBatch for batch, answers each of its lookups and ends the call.
func (b *lookupBatcher) send(batch []*pendingLookup) {
	req := &cachev1.LookupBatchRequest{Lookups: make([]*cachev1.LookupRequest, len(batch))}
	for i, p := range batch {
		req.Lookups[i] = p.req
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), b.timeout)
	b.observe(len(batch))
	res, err := b.client.LookupBatch(ctx, req)
	cancel()
	if connect.CodeOf(err) == connect.CodeUnimplemented {
		b.unbatched(batch)
		return
	}
	if err == nil && len(res.GetResults()) != len(batch) {
		err = fmt.Errorf("%d results for %d lookups", len(res.GetResults()), len(batch))
	}
	for i, p := range batch {
		var r *cachev1.LookupResponse
		var rerr error
		switch {
		case err != nil:
			rerr = err
		case res.GetResults()[i].GetError() != nil:
			e := res.GetResults()[i].GetError()
			rerr = connect.NewError(connect.Code(e.GetCode()), errors.New(e.GetMessage()))
		default:
			r = res.GetResults()[i].GetResponse()
		}
		b.answer(p, r, rerr)
	}
	b.next()
}

// answer gives p its result: to its caller, or back to the cache when the caller has
// gone and was granted a lease.
func (b *lookupBatcher) answer(p *pendingLookup, res *cachev1.LookupResponse, err error) {
	b.mu.Lock()
	gone := p.gone
	p.res, p.err = res, err
	leading := p.state == lookupLeading
	p.state = lookupAnswered
	b.mu.Unlock()
	if gone && res.GetOutcome() == cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED {
		b.release(p.req, res.GetLease())
	}
	if !leading {
		close(p.done)
	}
}

func (b *lookupBatcher) observe(n int) {
	if b.sizes != nil {
		b.sizes.Observe(float64(n))
	}
}

// unbatchedRetry is how long lookups go alone after the cache service answered a batch
// Unimplemented, before a batch is tried again.
const unbatchedRetry = time.Minute

// unbatched sends each lookup of batch alone, concurrently, for a cache service that
// has no LookupBatch, and has later lookups go alone for unbatchedRetry.
func (b *lookupBatcher) unbatched(batch []*pendingLookup) {
	b.mu.Lock()
	b.unbatchedUntil = time.Now().Add(unbatchedRetry)
	b.mu.Unlock()
	type result struct {
		res *cachev1.LookupResponse
		err error
	}
	results := make([]result, len(batch))
	var wg sync.WaitGroup
	for i, p := range batch {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), b.timeout)
			defer cancel()
			b.observe(1)
			res, err := b.client.Lookup(ctx, p.req)
			results[i] = result{res, err}
		})
	}
	wg.Wait()
	for i, p := range batch {
		b.answer(p, results[i].res, results[i].err)
	}
	b.next()
}
