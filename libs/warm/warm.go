// Package warm runs jobs on goroutines kept from job to job.
//
// A goroutine started for a job begins with a small stack and copies it to a larger one
// each time the job's calls go deeper (an RPC handler's interceptors, an RPC client's
// framing, a JetStream request, protobuf): CPU profiles of Parley's services at a miss's
// c=16 put 5–15 % of a process's CPU in growing the stacks of goroutines started per job
// (net/http's per-request goroutines, the cache service's batches, the router's writes
// after the reply). A kept goroutine has grown its stack already. Idle goroutines are
// taken last-in first-out, so the fewest do the most work and keep their stacks (the
// collector shrinks a stack left mostly unused); at most the pool's maximum wait, the
// others end with their job.
package warm

import "sync"

// Job is work for a pool's goroutine: Run, then Done once the goroutine is idle again (so
// that a caller waiting for Done finds it idle). A Run that ends its goroutine
// (runtime.Goexit) still gets its Done, and the goroutine is not kept. A Run must not
// panic: nothing recovers it.
type Job interface {
	Run()
	Done()
}

// Func is a Job made of two functions.
type Func struct{ F, Finish func() }

// Run runs F.
func (f Func) Run() { f.F() }

// Done runs Finish.
func (f Func) Done() { f.Finish() }

// Pool keeps up to max idle goroutines. Use New.
type Pool struct {
	max    int
	mu     sync.Mutex
	idle   []chan Job
	closed bool
	// started counts the goroutines started (Started).
	started int
}

// New returns a pool keeping up to maxIdle idle goroutines.
func New(maxIdle int) *Pool { return &Pool{max: maxIdle} }

// Go runs j on an idle goroutine, or on a new one when none is.
func (p *Pool) Go(j Job) {
	p.mu.Lock()
	var jobs chan Job
	if n := len(p.idle); n > 0 {
		jobs = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
	} else {
		p.started++
	}
	p.mu.Unlock()
	if jobs == nil {
		jobs = make(chan Job)
		go p.work(jobs)
	}
	jobs <- j
}

// Started is how many goroutines the pool has started.
func (p *Pool) Started() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

// Idle is how many goroutines wait for a job.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Close ends the idle goroutines, and the busy ones once their job is done. Jobs given
// after it run on goroutines that end with them.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, jobs := range p.idle {
		close(jobs)
	}
	p.idle = nil
}

// work runs the jobs given to it until it is not kept.
func (p *Pool) work(jobs chan Job) {
	for j := range jobs {
		if !p.run(j, jobs) {
			return
		}
	}
}

// run runs j, puts its goroutine back among the idle (unless the pool is closed or full,
// or j ended the goroutine) and then calls j.Done; it reports whether the goroutine is
// kept.
func (p *Pool) run(j Job, jobs chan Job) (kept bool) {
	returned := false
	defer func() {
		if !returned { // runtime.Goexit: this goroutine ends
			j.Done()
		}
	}()
	j.Run()
	returned = true
	kept = p.keep(jobs)
	j.Done()
	return kept
}

func (p *Pool) keep(jobs chan Job) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle) >= p.max {
		return false
	}
	p.idle = append(p.idle, jobs)
	return true
}
