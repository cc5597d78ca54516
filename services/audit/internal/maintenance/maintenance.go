// Package maintenance runs the audit log's housekeeping on a schedule: day partitions
// created ahead of time, search indexes built once a day is over, partitions dropped
// after the retention, and the usage roll-up trimmed. One owned goroutine runs it at
// start and then every interval; replicas may all run it, since the store lets one at a
// time do the work.
package maintenance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleyhq/parley/services/audit/internal/store"
)

// lockTimeout bounds the wait for a partition's lock before dropping it.
const lockTimeout = 5 * time.Second

// Store is what the job needs from the audit store.
type Store interface {
	Maintain(ctx context.Context, o store.MaintainOptions) (store.MaintainReport, error)
}

// Config tunes the job.
type Config struct {
	// Interval is the time between runs.
	Interval time.Duration
	// Ahead is how many days after today have their partition created in advance.
	Ahead int
	// Retention drops the partitions of days older than this; zero keeps them all.
	Retention time.Duration
	// UsageRetention deletes the usage roll-up of days older than this; zero keeps it.
	UsageRetention time.Duration
	// SearchIndexDelay is how long after a day ends its search index is built.
	SearchIndexDelay time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Job runs the maintenance. Start and Stop tie it to a lifecycle.
type Job struct {
	store  Store
	cfg    Config
	logger *slog.Logger
	m      *metrics

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
	kick    chan struct{}
}

// New returns a job over st; its metrics register with reg.
func New(st Store, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Job, error) {
	if cfg.Interval <= 0 {
		return nil, fmt.Errorf("maintenance: interval must be positive, got %s", cfg.Interval)
	}
	if cfg.Ahead < 0 {
		return nil, fmt.Errorf("maintenance: days ahead must not be negative, got %d", cfg.Ahead)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Job{store: st, cfg: cfg, logger: logger, m: m, done: make(chan struct{}), kick: make(chan struct{}, 1)}, nil
}

// Start starts the loop, whose first run is at once. It returns at once.
func (j *Job) Start(ctx context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.started {
		return errors.New("maintenance: already started")
	}
	j.started = true
	// The loop outlives the start context, which fx cancels once start-up is over.
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	j.cancel = cancel
	go j.loop(loopCtx)
	return nil
}

// Stop ends the loop, cancelling a run in progress, and waits for it.
func (j *Job) Stop(ctx context.Context) error {
	j.mu.Lock()
	started, cancel := j.started, j.cancel
	j.mu.Unlock()
	if !started {
		return nil
	}
	cancel()
	select {
	case <-j.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("maintenance: stop: %w", ctx.Err())
	}
}

// Trigger asks for a run as soon as the current one (if any) is over.
func (j *Job) Trigger() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

func (j *Job) loop(ctx context.Context) {
	defer close(j.done)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-j.kick:
			t.Stop()
		}
		j.Run(ctx)
		t.Reset(j.cfg.Interval)
	}
}

// Run runs the maintenance once, logs what it did and counts it. It is exported for
// tests and tools; the loop calls it on schedule.
func (j *Job) Run(ctx context.Context) {
	start := time.Now()
	r, err := j.store.Maintain(ctx, store.MaintainOptions{
		Now:              j.cfg.Now(),
		Ahead:            j.cfg.Ahead,
		Retention:        j.cfg.Retention,
		UsageRetention:   j.cfg.UsageRetention,
		SearchIndexDelay: j.cfg.SearchIndexDelay,
		LockTimeout:      lockTimeout,
	})
	j.m.created.Add(float64(len(r.Created)))
	j.m.dropped.Add(float64(len(r.Dropped)))
	j.m.indexed.Add(float64(len(r.Indexed)))
	j.m.usageDeleted.Add(float64(r.UsageDeleted))
	for _, name := range r.Dropped {
		// Every removal of audit data is itself recorded.
		j.logger.InfoContext(ctx, "audit partition dropped after retention", "partition", name,
			"retention", j.cfg.Retention.String())
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return // stopping
	case err != nil:
		j.m.runs.WithLabelValues(outcomeError).Inc()
		j.logger.WarnContext(ctx, "audit maintenance failed", "err", err,
			"created", len(r.Created), "indexed", len(r.Indexed), "dropped", len(r.Dropped))
	case r.Skipped:
		j.m.runs.WithLabelValues(outcomeSkipped).Inc()
		j.logger.DebugContext(ctx, "audit maintenance skipped, another replica runs it")
	default:
		j.m.runs.WithLabelValues(outcomeOK).Inc()
		j.m.lastSuccess.SetToCurrentTime()
		j.logger.InfoContext(ctx, "audit maintenance done", "created", len(r.Created),
			"indexed", len(r.Indexed), "dropped", len(r.Dropped), "usage_rows_deleted", r.UsageDeleted,
			"duration_ms", time.Since(start).Milliseconds())
	}
}
