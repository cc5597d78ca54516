// Package presence keeps the router's table of live provider workers: what they announce on
// parley.workers.<component> (worker id, slots, slots in use). A worker unheard for three
// of its announced intervals is gone; a goodbye removes it at once. The table serves the
// console's live worker count (ComponentService) and the parley_router_workers gauge.
package presence

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
)

const (
	// Misses is how many announced intervals a worker may stay silent before it is gone.
	Misses = 3
	// DefaultInterval stands for an announcement's interval when it has none.
	DefaultInterval = 2 * time.Second
	// minInterval and maxInterval bound an announced interval: a worker cannot keep itself
	// listed for long, nor make the table churn.
	minInterval = 100 * time.Millisecond
	maxInterval = time.Minute
	// maxWorkerID bounds the worker ids the table keeps, in bytes.
	maxWorkerID = 256
	// DefaultMaxWorkers caps the (component, worker) pairs tracked.
	DefaultMaxWorkers = 10_000
)

// Count is what the table knows of one component's workers.
type Count struct {
	// Workers announced the component and are not gone.
	Workers int
	// Slots is the sum of their slots (calls they run at once, over all their components),
	// SlotsInUse of the slots running calls held at their last announcements.
	Slots, SlotsInUse int
}

type key struct{ component, worker string }

type entry struct {
	slots, inUse uint32
	expires      time.Time
}

// Table is the presence table. Its methods are safe for concurrent use.
type Table struct {
	components []string // sorted, the only ones tracked
	known      map[string]bool
	max        int
	now        func() time.Time

	mu      sync.Mutex
	workers map[key]entry
	sub     *nats.Subscription

	gauge   *prometheus.Desc
	ignored prometheus.Counter
}

// Options tunes a Table.
type Options struct {
	// MaxWorkers caps the (component, worker) pairs tracked; zero means DefaultMaxWorkers.
	// Announcements of new workers beyond it are ignored until others are gone.
	MaxWorkers int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// New returns a table of the workers of components; announcements of any other
// component are ignored.
func New(components []string, opts Options) *Table {
	if opts.MaxWorkers <= 0 {
		opts.MaxWorkers = DefaultMaxWorkers
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	t := &Table{
		components: slices.Sorted(slices.Values(components)),
		known:      make(map[string]bool, len(components)),
		max:        opts.MaxWorkers,
		now:        opts.Now,
		workers:    map[key]entry{},
		gauge: prometheus.NewDesc("parley_router_workers",
			"Provider workers serving the component, as announced to this router on parley.workers.<component> (gone after three silent intervals).",
			[]string{"component"}, nil),
		ignored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_router_presence_ignored_total",
			Help: "Worker announcements the router ignored: undecodable, of an unknown component, or beyond its cap of tracked workers.",
		}),
	}
	t.components = slices.Compact(t.components)
	for _, c := range components {
		t.known[c] = true
	}
	return t
}

// Observe records one announcement heard on subject.
func (t *Table) Observe(subject string, data []byte) {
	component, ok := strings.CutPrefix(subject, bus.WorkerSubjectPrefix)
	var p providerv1.Presence
	if !ok || !t.known[component] || proto.Unmarshal(data, &p) != nil ||
		p.GetComponent() != component || p.GetWorkerId() == "" || len(p.GetWorkerId()) > maxWorkerID {
		t.ignored.Inc()
		return
	}
	k := key{component, p.GetWorkerId()}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.GetGoodbye() {
		delete(t.workers, k)
		return
	}
	if _, tracked := t.workers[k]; !tracked && len(t.workers) >= t.max {
		t.expireLocked(now)
		if len(t.workers) >= t.max {
			t.ignored.Inc()
			return
		}
	}
	interval := DefaultInterval
	if p.GetInterval() != nil {
		interval = min(max(p.GetInterval().AsDuration(), minInterval), maxInterval)
	}
	t.workers[k] = entry{slots: p.GetSlots(), inUse: min(p.GetSlotsInUse(), p.GetSlots()), expires: now.Add(Misses * interval)}
}

// expireLocked drops the workers gone by now.
func (t *Table) expireLocked(now time.Time) {
	for k, e := range t.workers {
		if !now.Before(e.expires) {
			delete(t.workers, k)
		}
	}
}

// Counts returns every tracked component's count, zero for those without workers.
func (t *Table) Counts() map[string]Count {
	now := t.now()
	out := make(map[string]Count, len(t.components))
	for _, c := range t.components {
		out[c] = Count{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked(now)
	for k, e := range t.workers {
		c := out[k.component]
		c.Workers++
		c.Slots += int(e.slots)
		c.SlotsInUse += int(e.inUse)
		out[k.component] = c
	}
	return out
}

// Subscribe listens to every presence subject on nc until Close.
func (t *Table) Subscribe(nc *nats.Conn) error {
	sub, err := nc.Subscribe(bus.WorkerSubjectPrefix+"*", func(m *nats.Msg) { t.Observe(m.Subject, m.Data) })
	if err == nil {
		err = nc.Flush()
		if err != nil {
			_ = sub.Unsubscribe()
		}
	}
	if err != nil {
		return fmt.Errorf("presence: subscribe to %s*: %w", bus.WorkerSubjectPrefix, err)
	}
	t.mu.Lock()
	t.sub = sub
	t.mu.Unlock()
	return nil
}

// Close ends the subscription.
func (t *Table) Close() error {
	t.mu.Lock()
	sub := t.sub
	t.sub = nil
	t.mu.Unlock()
	if sub == nil {
		return nil
	}
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("presence: unsubscribe: %w", err)
	}
	return nil
}

// Describe is prometheus.Collector's.
func (t *Table) Describe(ch chan<- *prometheus.Desc) {
	ch <- t.gauge
	t.ignored.Describe(ch)
}

// Collect is prometheus.Collector's: one gauge per served component.
func (t *Table) Collect(ch chan<- prometheus.Metric) {
	for c, n := range t.Counts() {
		ch <- prometheus.MustNewConstMetric(t.gauge, prometheus.GaugeValue, float64(n.Workers), c)
	}
	t.ignored.Collect(ch)
}
