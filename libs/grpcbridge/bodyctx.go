package grpcbridge

import (
	"context"
	"sync"
	"time"
)

type bodyCtxKey struct{}

// bodyCtx is a call's stream context while its request is on the way: done when the
// call's own context is, or when the request has not arrived within the read timeout,
// then with context.DeadlineExceeded, which grpc-go's receive reports to the client as
// DEADLINE_EXCEEDED. Once the request has arrived (arrived) the timeout no longer
// applies. Only grpc-go's transport waits on it: the handler runs on the call's own
// context (Context), so nothing derives from a bodyCtx that Go's context package would
// have to watch with a goroutine.
type bodyCtx struct {
	context.Context

	done  chan struct{}
	mu    sync.Mutex
	err   error
	timer *time.Timer
}

func newBodyCtx(parent context.Context, timeout time.Duration) *bodyCtx {
	c := &bodyCtx{Context: parent, done: make(chan struct{})}
	c.timer = time.AfterFunc(timeout, func() { c.end(context.DeadlineExceeded) })
	context.AfterFunc(parent, func() { c.end(parent.Err()) })
	return c
}

func (c *bodyCtx) Done() <-chan struct{} { return c.done }

func (c *bodyCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *bodyCtx) Value(key any) any {
	if key == (bodyCtxKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (c *bodyCtx) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.done)
	}
}

// arrived lifts the timeout: the request is whole.
func (c *bodyCtx) arrived() { c.timer.Stop() }
