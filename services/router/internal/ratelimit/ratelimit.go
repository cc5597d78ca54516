// Package ratelimit enforces per-key limits shared by every router replica without new
// infrastructure: counters in a NATS JetStream key-value bucket (bus.LimitsBucket).
//
// Each limit is a fixed window (the UTC minute for requests and tokens per minute, the
// UTC day or month for a token budget) with one counter per key in the bucket: the units
// leased by all routers in the current window. A router takes units from a local
// allowance held in memory and leases more, with a compare-and-set on the counter, only
// when its allowance runs out. A lease is at least what the request needs and at most
// an eighth of what is left in the window (and MaxLease), so leases shrink to single units
// as the limit nears.
//
// Tolerance: the routers together never admit more than the limit in a window (every
// admitted unit was leased first). They may admit fewer: units one router leased and did
// not use are lost to the others until the window ends, at most an eighth of what was
// left when it leased them. With a limit of 8 or less per window every lease is one unit
// and the limit is exact. Windows are fixed, so a caller may spend one window's limit at
// its end and the next one's at its start. Token limits take the caller's estimate before
// the call and are settled with the real usage after it; usage above the estimate is owed
// and leased with the next request, so the window's count stays exact but one call may
// end above the limit.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleyhq/parley/libs/bus"
)

// Limits are one key's limits; 0 is no limit.
type Limits struct {
	// Key names the counters: the API key's id (letters, digits, '-' and '_').
	Key               string
	RequestsPerMinute int64
	TokensPerMinute   int64
	TokenBudget       int64
	// BudgetMonthly makes the budget per UTC month rather than per UTC day.
	BudgetMonthly bool
}

// ExceededError refuses a request over a limit. Its text names the limit and when to
// retry and nothing else, so any API may show it to the caller.
type ExceededError struct {
	// Limit names the limit: "requests per minute", "tokens per minute", "token budget
	// per day" or "token budget per month".
	Limit string
	// RetryAfter is the time until the window resets.
	RetryAfter time.Duration
}

func (e *ExceededError) Error() string {
	return fmt.Sprintf("rate limit exceeded: %s; retry after %ds", e.Limit, e.RetryAfterSeconds())
}

// RetryAfterSeconds is RetryAfter rounded up to whole seconds, at least 1: the value of an
// HTTP Retry-After header.
func (e *ExceededError) RetryAfterSeconds() int64 {
	s := int64((e.RetryAfter + time.Second - 1) / time.Second)
	return max(s, 1)
}

// AsExceeded returns the ExceededError in err's chain.
func AsExceeded(err error) (*ExceededError, bool) {
	var e *ExceededError
	ok := errors.As(err, &e)
	return e, ok
}

// Options tune a Limiter.
type Options struct {
	// MaxLease caps the units one lease takes; 0 means 64 for requests, 64 times that for
	// tokens.
	MaxLease int64
	// Now is the clock (tests fix it); nil is time.Now.
	Now func() time.Time
	// Replicas is used when Start creates the limits bucket; 0 means 1.
	Replicas int
}

// Limiter admits requests against Limits.
type Limiter struct {
	js       jetstream.JetStream
	replicas int
	kv       jetstream.KeyValue
	maxLease int64
	now      func() time.Time

	mu    sync.Mutex
	local map[string]*allowance

	leases   *prometheus.CounterVec
	refusals *prometheus.CounterVec
}

// allowance is what this router holds of one counter's window.
type allowance struct {
	mu     sync.Mutex
	window int64
	left   int64 // negative: owed (usage above the estimate)
}

// Start creates or updates the limits bucket; Admit may be called once it returns.
// Entries older than 32 days are dropped: a counter names its window, so an old one is
// worthless.
func (l *Limiter) Start(ctx context.Context) error {
	kv, err := bus.RetryAPI(ctx, bus.APIAttempt, func(ctx context.Context) (jetstream.KeyValue, error) {
		return l.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bus.LimitsBucket, History: 1, TTL: 32 * 24 * time.Hour, Replicas: l.replicas,
			Description: "Parley routers' shared rate limits and token budgets",
		})
	})
	if err != nil {
		return fmt.Errorf("limits bucket %s: %w", bus.LimitsBucket, err)
	}
	l.kv = kv
	return nil
}

// New returns a Limiter over the limits bucket of js; Start opens the bucket.
func New(js jetstream.JetStream, opts Options, reg prometheus.Registerer) (*Limiter, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxLease <= 0 {
		opts.MaxLease = 64
	}
	l := &Limiter{
		js: js, replicas: max(opts.Replicas, 1), maxLease: opts.MaxLease, now: opts.Now, local: map[string]*allowance{},
		leases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_limit_leases_total",
			Help: "Leases of shared rate-limit units from the NATS limits bucket, by limit and outcome.",
		}, []string{"limit", "outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_limit_refusals_total",
			Help: "Requests refused by a rate limit or token budget, by limit.",
		}, []string{"limit"}),
	}
	for _, c := range []prometheus.Collector{l.leases, l.refusals} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register limit metrics: %w", err)
		}
	}
	return l, nil
}

// dimension is one kind of counter.
type dimension struct {
	prefix string
	name   string
	tokens bool
	window func(time.Time) (index int64, end time.Time)
}

func minute(t time.Time) (int64, time.Time) {
	t = t.UTC().Truncate(time.Minute)
	return t.Unix() / 60, t.Add(time.Minute)
}

func day(t time.Time) (int64, time.Time) {
	t = t.UTC()
	start := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return start.Unix() / 86400, start.AddDate(0, 0, 1)
}

func month(t time.Time) (int64, time.Time) {
	t = t.UTC()
	return int64(t.Year())*12 + int64(t.Month()) - 1, time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0)
}

var (
	requests     = dimension{prefix: "rpm", name: "requests per minute", window: minute}
	tokens       = dimension{prefix: "tpm", name: "tokens per minute", tokens: true, window: minute}
	dailyBudget  = dimension{prefix: "bday", name: "token budget per day", tokens: true, window: day}
	monthlyBudge = dimension{prefix: "bmon", name: "token budget per month", tokens: true, window: month}
)

// taken is a unit count taken from one counter's window, for giving back.
type taken struct {
	l      *Limiter
	name   string
	d      dimension
	a      *allowance
	window int64
	n      int64
}

// Admit takes one request and estimate tokens from lim's limits, or refuses with an
// *ExceededError. The returned settle function must be called once with the real token
// usage (0 on failure or a cache hit): it gives back or owes the difference from the
// estimate.
func (l *Limiter) Admit(ctx context.Context, lim Limits, estimate int64) (settle func(used int64), err error) {
	estimate = max(estimate, 0)
	type check struct {
		d     dimension
		limit int64
		n     int64
	}
	checks := []check{{requests, lim.RequestsPerMinute, 1}, {tokens, lim.TokensPerMinute, estimate}}
	if lim.BudgetMonthly {
		checks = append(checks, check{monthlyBudge, lim.TokenBudget, estimate})
	} else {
		checks = append(checks, check{dailyBudget, lim.TokenBudget, estimate})
	}
	var got []taken
	for _, c := range checks {
		if c.limit <= 0 {
			continue
		}
		tk, err := l.take(ctx, c.d, lim.Key, c.limit, c.n)
		if err != nil {
			for _, t := range got {
				t.give(ctx, t.n)
			}
			if _, ok := AsExceeded(err); ok {
				l.refusals.WithLabelValues(c.d.prefix).Inc()
			}
			return nil, err
		}
		got = append(got, tk)
	}
	var once sync.Once
	return func(used int64) {
		once.Do(func() {
			for _, t := range got {
				if t.d.tokens {
					t.give(ctx, estimate-max(used, 0))
				}
			}
		})
	}, nil
}

// settleTimeout bounds the charge of usage above the estimate to the shared counter.
const settleTimeout = 2 * time.Second

// give returns n units to the allowance, if its window is still the current one (a past
// window's units are spent). A negative n is usage above the estimate: what the
// allowance cannot cover is charged to the shared counter at once, so the other routers
// see it, even beyond the limit.
func (t taken) give(ctx context.Context, n int64) {
	t.a.mu.Lock()
	defer t.a.mu.Unlock()
	if t.a.window != t.window {
		return
	}
	t.a.left += n
	if t.a.left >= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err := t.l.charge(ctx, t.name, t.window, -t.a.left); err != nil {
		return // owed locally: the next lease of this router covers it
	}
	t.a.left = 0
}

// charge adds n units to the counter's window regardless of its limit.
func (l *Limiter) charge(ctx context.Context, name string, w, n int64) error {
	for range maxCASAttempts {
		var used int64
		var rev uint64
		e, err := l.kv.Get(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			rev = e.Revision()
			if cw, cu, ok := parseCounter(e.Value()); ok && cw == w {
				used = cu
			}
		}
		if err := l.write(ctx, name, rev, w, used+n); err == nil {
			return nil
		} else if !conflict(err) {
			return err
		}
	}
	return errors.New("limit counter too contended")
}

// write sets the counter to window:used if it is still at revision rev (0: absent).
func (l *Limiter) write(ctx context.Context, name string, rev uint64, w, used int64) error {
	value := []byte(strconv.FormatInt(w, 10) + ":" + strconv.FormatInt(used, 10))
	var err error
	if rev == 0 {
		_, err = l.kv.Create(ctx, name, value)
	} else {
		_, err = l.kv.Update(ctx, name, value, rev)
	}
	return err
}

// conflict: another router wrote the counter first.
func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err)
}

func (l *Limiter) allowance(name string) *allowance {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.local[name]
	if !ok {
		a = &allowance{}
		l.local[name] = a
	}
	return a
}

// take takes n units of key's counter of d from the local allowance, leasing what it
// lacks.
func (l *Limiter) take(ctx context.Context, d dimension, key string, limit, n int64) (taken, error) {
	name := d.prefix + "." + key
	a := l.allowance(name)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := l.now()
	w, end := d.window(now)
	if a.window != w {
		a.window, a.left = w, 0
	}
	tk := taken{l: l, name: name, d: d, a: a, window: w, n: n}
	if a.left >= n {
		a.left -= n
		return tk, nil
	}
	need := n - a.left
	got, err := l.lease(ctx, name, d, w, limit, need, end.Sub(now))
	if err != nil {
		return taken{}, err
	}
	a.left += got - n
	return tk, nil
}

// maxCASAttempts bounds the compare-and-set retries of one lease under contention.
const maxCASAttempts = 32

// lease adds at least need units to the counter's current window, or refuses.
func (l *Limiter) lease(ctx context.Context, name string, d dimension, w, limit, need int64, retryAfter time.Duration) (int64, error) {
	maxLease := l.maxLease
	if d.tokens {
		maxLease *= 64
	}
	for range maxCASAttempts {
		var used int64
		var rev uint64
		e, err := l.kv.Get(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			l.leases.WithLabelValues(d.prefix, "error").Inc()
			return 0, fmt.Errorf("read limit counter: %w", err)
		default:
			rev = e.Revision()
			if cw, cu, ok := parseCounter(e.Value()); ok && cw == w {
				used = cu
			}
		}
		left := limit - used
		if left < need {
			l.leases.WithLabelValues(d.prefix, "refused").Inc()
			return 0, &ExceededError{Limit: d.name, RetryAfter: retryAfter}
		}
		chunk := min(max(need, min(maxLease, left/8)), left)
		err = l.write(ctx, name, rev, w, used+chunk)
		if err == nil {
			l.leases.WithLabelValues(d.prefix, "granted").Inc()
			return chunk, nil
		}
		if !conflict(err) {
			l.leases.WithLabelValues(d.prefix, "error").Inc()
			return 0, fmt.Errorf("write limit counter: %w", err)
		}
		// Another router leased first: read again.
	}
	l.leases.WithLabelValues(d.prefix, "error").Inc()
	return 0, errors.New("limit counter too contended")
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// parseCounter reads "window:used".
func parseCounter(b []byte) (window, used int64, ok bool) {
	ws, us, found := strings.Cut(string(b), ":")
	if !found {
		return 0, 0, false
	}
	w, err1 := strconv.ParseInt(ws, 10, 64)
	u, err2 := strconv.ParseInt(us, 10, 64)
	return w, u, err1 == nil && err2 == nil
}
