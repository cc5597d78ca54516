package resiliency

import (
	"errors"
	"sync"
	"time"
)

// Circuit breaker errors. A call refused by the breaker is not retried: the breaker exists so
// that callers fail fast.
var (
	// ErrOpenState is returned while the breaker is open.
	ErrOpenState = errors.New("circuit breaker is open")
	// ErrTooManyRequests is returned while the breaker is half-open and already lets its
	// maxRequests probe calls through.
	ErrTooManyRequests = errors.New("too many requests")
)

// State is the state of a circuit breaker. Its numeric value is the one the metric
// parley_worker_circuit_breaker_state reports.
type State int

// Circuit breaker states.
const (
	// StateClosed lets every call through and counts failures.
	StateClosed State = 0
	// StateHalfOpen lets maxRequests probe calls through: as many successes close the
	// breaker, one failure opens it again.
	StateHalfOpen State = 1
	// StateOpen refuses every call until its timeout has passed.
	StateOpen State = 2
)

// String returns "closed", "half-open" or "open".
func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateHalfOpen:
		return "half-open"
	case StateOpen:
		return "open"
	default:
		return "unknown"
	}
}

// verdict is how one call counts for the breaker.
type verdict int

const (
	verdictSuccess verdict = iota
	verdictFailure
	// verdictExcluded counts neither way: the call says nothing about the component's health.
	verdictExcluded
)

// breaker is one component's circuit breaker, following the state machine of
// sony/gobreaker, which Dapr uses: counts live in generations, a new generation starts on
// every state change and, when interval is set, every interval while closed; results of
// calls from an earlier generation are ignored.
type breaker struct {
	cfg      *CircuitBreaker
	name     string
	clock    clock
	onChange func(name string, from, to State)

	mu         sync.Mutex
	state      State
	generation uint64
	counts     Counts
	expiry     time.Time // end of the generation; zero means none
}

func newBreaker(name string, cfg *CircuitBreaker, c clock, onChange func(string, State, State)) *breaker {
	b := &breaker{cfg: cfg, name: name, clock: c, onChange: onChange}
	b.newGeneration(c.Now())
	return b
}

// transition is a state change to report once the lock is released.
type transition struct {
	from, to State
	changed  bool
}

func (b *breaker) report(t transition) {
	if t.changed && b.onChange != nil {
		b.onChange(b.name, t.from, t.to)
	}
}

// State returns the current state.
func (b *breaker) State() State {
	b.mu.Lock()
	s, _, t := b.current(b.clock.Now())
	b.mu.Unlock()
	b.report(t)
	return s
}

// before admits a call or refuses it with ErrOpenState or ErrTooManyRequests. An admitted call
// must be reported to after with the returned generation.
func (b *breaker) before() (uint64, error) {
	b.mu.Lock()
	state, gen, t := b.current(b.clock.Now())
	var err error
	switch {
	case state == StateOpen:
		err = ErrOpenState
	case state == StateHalfOpen && b.counts.Requests >= b.cfg.MaxRequests:
		err = ErrTooManyRequests
	default:
		b.counts.Requests++
	}
	b.mu.Unlock()
	b.report(t)
	return gen, err
}

// after records the verdict of a call admitted in generation gen.
func (b *breaker) after(gen uint64, v verdict) {
	b.mu.Lock()
	now := b.clock.Now()
	state, current, t := b.current(now)
	if gen == current {
		switch v {
		case verdictSuccess:
			b.counts.TotalSuccesses++
			b.counts.ConsecutiveSuccesses++
			b.counts.ConsecutiveFailures = 0
			if state == StateHalfOpen && b.counts.ConsecutiveSuccesses >= b.cfg.MaxRequests {
				t = b.setState(StateClosed, now, t)
			}
		case verdictFailure:
			b.counts.TotalFailures++
			b.counts.ConsecutiveFailures++
			b.counts.ConsecutiveSuccesses = 0
			if state == StateHalfOpen || b.cfg.Trip.Eval(b.counts) {
				t = b.setState(StateOpen, now, t)
			}
		case verdictExcluded:
			// Give the slot back, so that a half-open breaker admits another probe.
			if b.counts.Requests > 0 {
				b.counts.Requests--
			}
		}
	}
	b.mu.Unlock()
	b.report(t)
}

// current applies the transitions that time causes and returns the state and generation.
// t carries a transition to report; the caller holds the lock.
func (b *breaker) current(now time.Time) (State, uint64, transition) {
	var t transition
	switch b.state {
	case StateClosed:
		if !b.expiry.IsZero() && !now.Before(b.expiry) {
			b.newGeneration(now)
		}
	case StateOpen:
		if !now.Before(b.expiry) {
			t = b.setState(StateHalfOpen, now, t)
		}
	}
	return b.state, b.generation, t
}

// setState changes state and folds the change into t, which keeps the first "from".
func (b *breaker) setState(s State, now time.Time, t transition) transition {
	if b.state == s {
		return t
	}
	if !t.changed {
		t.from = b.state
	}
	t.to, t.changed = s, true
	b.state = s
	b.newGeneration(now)
	return t
}

func (b *breaker) newGeneration(now time.Time) {
	b.generation++
	b.counts = Counts{}
	switch b.state {
	case StateClosed:
		if b.cfg.Interval > 0 {
			b.expiry = now.Add(b.cfg.Interval)
		} else {
			b.expiry = time.Time{}
		}
	case StateOpen:
		b.expiry = now.Add(b.cfg.Timeout)
	default:
		b.expiry = time.Time{}
	}
}
