// Package warm runs jobs on goroutines kept from job to job.
//
// A goroutine started for a job begins with a small stack and copies it to a larger one
// each time the job's calls go deeper (an RPC client's interceptors and framing, a
// JetStream request, protobuf): CPU profiles of Parley's services at a miss's c=16 put
// 5–9 % of a process's CPU in growing the stacks of goroutines started per job (the cache
// service's batches, the router's writes after the reply). A kept goroutine has grown its
// stack already. Idle goroutines are taken last-in first-out, so the fewest do the most
// work and keep their stacks (the collector shrinks a stack left mostly unused); at most
// the pool's maximum wait, the others end with their job.
package warm

import "sync"

// Pool keeps up to max idle goroutines. Its zero value keeps none; use New.
type Pool struct {
	max  int
	mu   sync.Mutex
	idle []chan job
	// started counts the goroutines started (Started).
	started int
}

// job is a function to run, and what to do once its goroutine is idle again.
type job struct{ run, done func() }

// New returns a pool keeping up to maxIdle idle goroutines.
func New(maxIdle int) *Pool { return &Pool{max: maxIdle} }

// Go runs f on an idle goroutine, or on a new one when none is, and then done once that
// goroutine is idle again, so that a caller waiting for done finds it idle. f must not
// panic: the goroutine would end without calling done.
func (p *Pool) Go(f, done func()) {
	p.mu.Lock()
	var jobs chan job
	if n := len(p.idle); n > 0 {
		jobs = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
	} else {
		p.started++
	}
	p.mu.Unlock()
	if jobs == nil {
		jobs = make(chan job)
		go p.work(jobs)
	}
	jobs <- job{run: f, done: done}
}

// Started is how many goroutines the pool has started.
func (p *Pool) Started() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

// work runs the jobs given to it until it is not kept.
func (p *Pool) work(jobs chan job) {
	for j := range jobs {
		j.run()
		kept := p.keep(jobs)
		j.done()
		if !kept {
			return
		}
	}
}

func (p *Pool) keep(jobs chan job) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= p.max {
		return false
	}
	p.idle = append(p.idle, jobs)
	return true
}
