package rpcserver

import (
	"net/http"
	"sync"

	"github.com/parleyhq/parley/libs/warm"
)

// maxIdleWorkers bounds the goroutines a warmHandler keeps waiting for requests. More
// requests at once are served by goroutines that end with their request.
const maxIdleWorkers = 128

// warmHandler runs every request's handler on a goroutine kept from request to request
// (libs/warm).
//
// net/http's servers run each request on a goroutine of their own, started for it. Its
// stack starts small and is copied to a larger one each time the handler's calls go
// deeper (the interceptors, protobuf, a JSON decode inside the NATS client): a CPU
// profile of the cache service at a miss's c=16 put 15 % of its CPU in runtime.copystack,
// about 30 µs per call. A worker of the pool has grown its stack already; the request's
// own goroutine only hands the request over and waits. The calls grpc-go serves
// (RPC_GRPC_ADDRS, internal callers on a TLS port) run on a pool of their own.
//
// At most maxIdleWorkers wait. A panic in the handler is raised again on the request's
// own goroutine, where net/http expects it (an http.ErrAbortHandler aborts the response
// there), and the worker goes on. A handler that ends its goroutine (runtime.Goexit) ends
// the worker, and its request is still answered.
type warmHandler struct {
	next  http.Handler
	pool  *warm.Pool
	calls sync.Pool // of *warmCall, reused from request to request
}

// warmCall is one request handed to a worker: the handler's panic value, nil if it did
// not panic, and done, signalled once the worker is free again (before the request's
// goroutine returns, so the worker is free before the client can have the whole answer).
type warmCall struct {
	h     *warmHandler
	w     http.ResponseWriter
	r     *http.Request
	panic any
	done  chan struct{}
}

func newWarmHandler(next http.Handler) *warmHandler {
	return &warmHandler{next: next, pool: warm.New(maxIdleWorkers)}
}

func (h *warmHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, ok := h.calls.Get().(*warmCall)
	if !ok {
		c = &warmCall{h: h, done: make(chan struct{}, 1)}
	}
	c.w, c.r = w, r
	h.pool.Go(c)
	<-c.done
	v := c.panic
	c.w, c.r, c.panic = nil, nil, nil
	h.calls.Put(c)
	if v != nil {
		panic(v) //nolint:forbidigo // the handler's own panic, raised where net/http recovers it
	}
}

// Run serves the request on the worker, keeping what the handler panicked with.
func (c *warmCall) Run() {
	defer func() { c.panic = recover() }()
	c.h.next.ServeHTTP(c.w, c.r)
}

// Done lets the request's goroutine go on.
func (c *warmCall) Done() { c.done <- struct{}{} }

// close ends the idle workers, and the busy ones once their request is done. Requests
// that come after it are served on goroutines that end with them.
func (h *warmHandler) close() { h.pool.Close() }
