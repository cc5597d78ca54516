package rpcserver

import (
	"net/http"
	"sync"
	"sync/atomic"
)

// maxIdleWorkers bounds the goroutines a warmHandler keeps waiting for requests. More
// requests at once are served by goroutines that end with their request.
const maxIdleWorkers = 128

// warmHandler runs every request's handler on a goroutine kept from request to request.
//
// net/http's servers run each request on a goroutine of their own, started for it. Its
// stack starts small and is copied to a larger one each time the handler's calls go
// deeper (the interceptors, protobuf, a JSON decode inside the NATS client): a CPU
// profile of the cache service at a miss's c=16 put 15 % of its CPU in runtime.copystack,
// about 30 µs per call. A worker of the pool has grown its stack already; the request's
// own goroutine only hands the request over and waits. The calls grpc-go serves
// (RPC_GRPC_ADDRS, internal callers on a TLS port) run on a pool of their own.
//
// Idle workers are taken last-in first-out, so the fewest workers do the most work and
// keep their stacks warm; at most maxIdleWorkers wait, the others end. A panic in the
// handler is raised again on the request's own goroutine, where net/http expects it (an
// http.ErrAbortHandler aborts the response there), and the worker goes on.
type warmHandler struct {
	next http.Handler

	mu     sync.Mutex
	idle   []*warmWorker
	closed bool
	// started counts the workers started, for tests.
	started atomic.Int64
}

type warmWorker struct {
	jobs chan warmJob
	done chan any // the handler's panic value, or nil
}

type warmJob struct {
	w http.ResponseWriter
	r *http.Request
}

func newWarmHandler(next http.Handler) *warmHandler { return &warmHandler{next: next} }

func (h *warmHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	var wk *warmWorker
	if n := len(h.idle); n > 0 {
		wk = h.idle[n-1]
		h.idle[n-1] = nil
		h.idle = h.idle[:n-1]
	}
	h.mu.Unlock()
	if wk == nil {
		wk = &warmWorker{jobs: make(chan warmJob), done: make(chan any)}
		h.started.Add(1)
		go h.work(wk)
	}
	wk.jobs <- warmJob{w: w, r: r}
	if v := <-wk.done; v != nil {
		panic(v) //nolint:forbidigo // the handler's own panic, raised where net/http recovers it
	}
}

// work serves wk's jobs until serve lets it go.
func (h *warmHandler) work(wk *warmWorker) {
	for job := range wk.jobs {
		h.serve(wk, job)
	}
}

// serve runs one request, puts wk back among the idle workers (or lets it end: the pool
// is closed or has idle workers enough) and then hands back what the handler panicked
// with, nil if it did not. Back among the idle before the request's goroutine returns,
// the worker is free before the client can have the whole answer. A handler that ends
// its goroutine (runtime.Goexit) ends the worker, and its request is still answered.
func (h *warmHandler) serve(wk *warmWorker, job warmJob) {
	returned := false
	defer func() {
		v := recover()
		if (!returned && v == nil) || !h.release(wk) {
			close(wk.jobs)
		}
		wk.done <- v
	}()
	h.next.ServeHTTP(job.w, job.r)
	returned = true
}

// release puts wk among the idle workers, unless the pool is closed or full.
func (h *warmHandler) release(wk *warmWorker) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || len(h.idle) >= maxIdleWorkers {
		return false
	}
	h.idle = append(h.idle, wk)
	return true
}

// close ends the idle workers, and the busy ones once their request is done. Requests
// that come after it are served on goroutines that end with them.
func (h *warmHandler) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, wk := range h.idle {
		close(wk.jobs)
	}
	h.idle = nil
}
