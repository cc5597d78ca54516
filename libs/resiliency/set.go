package resiliency

import (
	"sync"
	"time"
)

// Defaults of a circuit breaker, as Dapr's.
const (
	DefaultCircuitBreakerMaxRequests = 1
	DefaultCircuitBreakerTimeout     = 60 * time.Second
)

// CircuitBreaker is a named circuit breaker policy: a template from which each component
// that uses it gets its own breaker.
type CircuitBreaker struct {
	// Name is the policy's name in spec.policies.circuitBreakers.
	Name string
	// MaxRequests is how many probe calls the half-open breaker lets through; that many
	// successes close it.
	MaxRequests uint32
	// Interval is the period after which a closed breaker clears its counts; zero means never.
	Interval time.Duration
	// Timeout is how long the breaker stays open before it turns half-open.
	Timeout time.Duration
	// Trip decides, after each failure in the closed state, whether the breaker opens.
	Trip *Trip
}

// Set holds every resiliency policy and target loaded from a directory and hands out each
// component's Policy. It is safe for concurrent use. A nil Set has no policies.
type Set struct {
	timeouts map[string]time.Duration
	retries  map[string]*Retry
	breakers map[string]*CircuitBreaker
	targets  map[string]Names // component name → its outbound policy names

	clock    clock
	rand     func() float64
	onChange func(component string, from, to State)
	hooks    hooks

	mu       sync.Mutex
	policies map[string]*Policy
}

// Option configures Load.
type Option func(*Set)

// WithStateChange calls fn whenever a component's circuit breaker changes state. fn runs on
// the caller's goroutine, after the breaker's lock is released, and must not block.
func WithStateChange(fn func(component string, from, to State)) Option {
	return func(s *Set) { s.onChange = fn }
}

// WithRetryable adds the caller's say on which errors are retried: an error that IsRetryable
// accepts is retried only when fn(err) is true too. Permanent errors and circuit breaker
// refusals are never retried, whatever fn says.
func WithRetryable(fn func(err error) bool) Option {
	return func(s *Set) { s.hooks.retryable = fn }
}

// WithRetryAfter adds the caller's way of reading a Retry-After hint from an error, for
// error types that carry one without a method RetryAfter() (time.Duration, bool). It is asked
// when RetryAfter finds no hint; ok false means none.
func WithRetryAfter(fn func(err error) (d time.Duration, ok bool)) Option {
	return func(s *Set) { s.hooks.retryAfter = fn }
}

func newSet(opts ...Option) *Set {
	s := &Set{
		timeouts: make(map[string]time.Duration),
		retries:  make(map[string]*Retry),
		breakers: make(map[string]*CircuitBreaker),
		targets:  make(map[string]Names),
		clock:    realClock{},
		rand:     randFloat,
		policies: make(map[string]*Policy),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Empty reports whether the set defines no policy at all.
func (s *Set) Empty() bool {
	return s == nil || len(s.timeouts) == 0 && len(s.retries) == 0 && len(s.breakers) == 0
}

// Timeout returns the named timeout policy.
func (s *Set) Timeout(name string) (time.Duration, bool) {
	if s == nil {
		return 0, false
	}
	d, ok := s.timeouts[name]
	return d, ok
}

// Retry returns the named retry policy.
func (s *Set) Retry(name string) (Retry, bool) {
	if s == nil || s.retries[name] == nil {
		return Retry{}, false
	}
	return *s.retries[name], true
}

// CircuitBreaker returns the named circuit breaker policy.
func (s *Set) CircuitBreaker(name string) (CircuitBreaker, bool) {
	if s == nil || s.breakers[name] == nil {
		return CircuitBreaker{}, false
	}
	return *s.breakers[name], true
}

// ForComponent returns the policy of the named component: the policies its entry in
// spec.targets.components names under outbound, or, when no target names the component,
// the default policies found by name (see Dapr's "default policies"). Each kind is looked up
// on its own, most specific first: DefaultConversationComponentOutbound<Kind>Policy,
// DefaultComponentOutbound<Kind>Policy, DefaultComponent<Kind>Policy, Default<Kind>Policy.
// A component with a target entry gets no defaults, even for kinds its entry leaves out, as
// in Dapr.
//
// The same name always yields the same Policy, so a component has one circuit breaker.
func (s *Set) ForComponent(name string) *Policy {
	if s == nil {
		return &Policy{component: name}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.policies[name]; ok {
		return p
	}
	names, targeted := s.targets[name]
	if !targeted {
		names = Names{
			Timeout:        defaultName(s.timeouts, "Timeout"),
			Retry:          defaultName(s.retries, "Retry"),
			CircuitBreaker: defaultName(s.breakers, "CircuitBreaker"),
		}
	}
	p := &Policy{component: name, names: names, clock: s.clock, rand: s.rand, hooks: s.hooks}
	if names.Timeout != "" {
		p.timeout = s.timeouts[names.Timeout]
	}
	if names.Retry != "" {
		p.retry = s.retries[names.Retry]
	}
	if names.CircuitBreaker != "" {
		p.breaker = newBreaker(name, s.breakers[names.CircuitBreaker], s.clock, s.onChange)
	}
	s.policies[name] = p
	return p
}

// defaultName returns the default policy of kind (Retry, Timeout or CircuitBreaker) that a
// conversation component without a target falls back to, as Dapr's
// ComponentOutboundPolicy(name, "Conversation") looks it up; "" when there is none.
func defaultName[T any](policies map[string]T, kind string) string {
	for _, level := range [...]string{"ConversationComponentOutbound", "ComponentOutbound", "Component", ""} {
		name := "Default" + level + kind + "Policy"
		if _, ok := policies[name]; ok {
			return name
		}
	}
	return ""
}
