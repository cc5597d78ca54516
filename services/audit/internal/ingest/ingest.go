// Package ingest moves conversation events from the PARLEY_AUDIT JetStream stream into
// PostgreSQL, in batches and idempotently, so that nothing the router published is lost.
//
// Two owned goroutines form a pipeline: one pulls batches from a durable consumer (bounded
// by rows, bytes and a maximum wait), sets poison events aside on the dead-letter subject
// and prepares the rows; the other writes each batch in one transaction and acknowledges
// every message only after the commit, while the next batch is being prepared. A crash
// between commit and ack causes a redelivery, which the table's key absorbs.
//
// Failures are told apart by their cause. When PostgreSQL is unavailable the batch is held
// and retried in place, with backoff, for as long as it takes: a negative acknowledgement
// would spend one of its MaxDeliver deliveries per attempt, and a row is dead-lettered on
// its last, so an outage of a few seconds would otherwise push healthy events out of the
// log. When PostgreSQL rejects a row because of its data,
// the batch is split until the row is alone; that row is negatively acknowledged with a
// delay and, on its last delivery, dead-lettered. Only the stream holds unwritten events;
// the service keeps nothing that a restart could lose.
//
// An event may carry its audit copy sealed to this service (libs/seal) instead of scrubbed
// by the router. The fetching goroutine opens the batch's sealed copies and has their texts
// scrubbed in as few Scrub calls as the scrubber's limits allow (sealed.go); while the
// scrubber fails the batch is held as during a database outage, and a copy that cannot be
// read is stored redacted. Once a batch is committed and acknowledged, its sealed messages
// are deleted from the stream (delete.go), so the raw copy does not outlive its ingestion.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

const (
	// maxBackoff caps the wait between retries and the delay of a negative ack.
	maxBackoff = 5 * time.Second
	// minBackoff is the first retry's wait.
	minBackoff = 100 * time.Millisecond
	// apiTimeout bounds a JetStream API call made by the loop.
	apiTimeout = 5 * time.Second
	// abandonTimeout bounds the dead-lettering of held messages on their last delivery at
	// stop, after the stop context has ended.
	abandonTimeout = 2 * time.Second
	// payloadOverhead is room for the subject, reply subject and protocol framing that
	// JetStream counts against a pull request's byte budget on top of headers and data.
	payloadOverhead = 4096
	// stillDownEvery is how many failed retries of a held batch pass between warnings
	// (about a minute once the backoff is at its ceiling).
	stillDownEvery = 12
)

// Config tunes the ingest loop. The service's configuration validates every field, naming
// its variable (app.Config.Validate); New takes the values as they are.
type Config struct {
	// Consumer is the durable consumer's name. Replicas sharing it share the work.
	Consumer string
	// MaxRows is the most events written in one transaction.
	MaxRows int
	// MaxBytes is the most message bytes in one batch. It is raised to the NATS server's
	// max_payload when lower, since a message larger than a pull request's byte budget is
	// never delivered.
	MaxBytes int
	// MaxWait is how long a fetch waits for its batch to fill, and how long after a fetch
	// that took every event the stream held the loop lets the next ones gather before it
	// fetches them.
	MaxWait time.Duration
	// MaxDeliver is the delivery on which a row PostgreSQL still rejects is dead-lettered;
	// the consumer itself redelivers without limit.
	MaxDeliver int
	// AckWait is how long JetStream waits for an acknowledgement before redelivering.
	AckWait time.Duration
	// StreamReplicas is the replica count used when the stream has to be created.
	StreamReplicas int
	// Tracer, when not nil (tracing on), records a span per written event in the trace of
	// the router's publish, read from the message's headers with Propagator (nil: W3C
	// trace context). Not from the environment.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// Openers open the audit copies the routers sealed (ConversationEvent.sealed), tried
	// in order: the current key first, then keys being rotated out. With none, a sealed
	// event is stored with its texts redacted.
	Openers []Opener
	// Scrubber scrubs the texts of opened copies; while it fails the batch is held.
	Scrubber Scrubber
	// ScrubMaxTexts and ScrubMaxBytes bound one Scrub call (0: DefaultScrubMaxTexts,
	// DefaultScrubMaxBytes).
	ScrubMaxTexts int
	ScrubMaxBytes int
}

// Store is what the loop needs from the audit store.
type Store interface {
	InsertRows(ctx context.Context, rows []store.Row) (int64, error)
}

// batch is fetched messages with their events and prepared rows, index for index.
type batch struct {
	msgs   []jetstream.Msg
	events []*auditv1.ConversationEvent
	rows   []store.Row
}

func (b batch) slice(i, j int) batch {
	return batch{msgs: b.msgs[i:j], events: b.events[i:j], rows: b.rows[i:j]}
}

// Ingester runs the ingest loop. Start and Stop tie it to a lifecycle.
type Ingester struct {
	js     jetstream.JetStream
	store  Store
	cfg    Config
	logger *slog.Logger
	m      *metrics

	// dirty: rows were committed since the last sweep (noteCommitted); purgedTo is the
	// stream sequence below which the last sweep purged (only the sweep loop uses it).
	dirty    atomic.Bool
	purgedTo uint64

	mu         sync.Mutex
	stream     jetstream.Stream
	consumer   jetstream.Consumer
	fetchBytes int
	started    bool
	stopOnce   sync.Once
	quit       chan struct{}      // closed by Stop: finish the current batch, fetch no more
	abort      context.CancelFunc // cancels the loop's context: abandon the current batch
	done       chan struct{}      // closed when the loop has returned
}

// New returns an Ingester writing to st; its metrics register with reg.
func New(js jetstream.JetStream, st Store, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Ingester, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Ingester{
		js:     js,
		store:  st,
		cfg:    cfg,
		logger: logger,
		m:      m,
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}, nil
}

// consumerConfig is the durable consumer's configuration. MaxAckPending leaves room for
// several replicas' batches plus rows waiting out a delayed redelivery.
func (in *Ingester) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       in.cfg.Consumer,
		Description:   "Parley audit writer: conversation events into PostgreSQL",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       in.cfg.AckWait,
		// No limit in JetStream: a delivery that never reached the writer (sent through a NATS
		// node as it went) would spend one of them, and JetStream drops a message whose
		// deliveries are spent without a word, leaving its event out of the log. The writer
		// counts deliveries itself (MaxDeliver) and dead-letters a row on its last one.
		MaxDeliver:    -1,
		FilterSubject: auditevent.Subject,
		MaxAckPending: max(1000, 4*in.cfg.MaxRows),
	}
}

// attach makes sure the stream and the durable consumer exist and remembers the consumer.
func (in *Ingester) attach(ctx context.Context) error {
	s, err := auditevent.Ensure(ctx, in.js, in.cfg.StreamReplicas)
	if err != nil {
		return err
	}
	c, err := bus.RetryAPI(ctx, bus.APIAttempt, func(ctx context.Context) (jetstream.Consumer, error) {
		return s.CreateOrUpdateConsumer(ctx, in.consumerConfig())
	})
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", in.cfg.Consumer, err)
	}
	in.mu.Lock()
	in.stream, in.consumer = s, c
	in.mu.Unlock()
	return nil
}

func (in *Ingester) currentConsumer() jetstream.Consumer {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.consumer
}

// Start creates the stream and the consumer, so a NATS problem fails start-up, then
// starts the loop. It returns at once; Stop ends the loop.
func (in *Ingester) Start(ctx context.Context) error {
	in.mu.Lock()
	started := in.started
	in.started = true
	in.mu.Unlock()
	if started {
		return errors.New("ingest: already started")
	}
	if err := in.attach(ctx); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	fetchBytes := in.cfg.MaxBytes
	if limit := int(in.js.Conn().MaxPayload()) + payloadOverhead; fetchBytes < limit {
		in.logger.WarnContext(ctx, "batch byte limit raised to nats max payload",
			"configured_bytes", in.cfg.MaxBytes, "limit_bytes", limit)
		fetchBytes = limit
	}
	// The loop outlives the start context, which fx cancels once start-up is over.
	loopCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	in.mu.Lock()
	in.fetchBytes = fetchBytes
	in.abort = abort
	in.mu.Unlock()
	in.logger.InfoContext(ctx, "ingest started", "consumer", in.cfg.Consumer,
		"max_rows", in.cfg.MaxRows, "max_bytes", fetchBytes, "max_wait", in.cfg.MaxWait.String())
	go in.run(loopCtx)
	return nil
}

// Stop asks the loop to finish the batches in hand (the one being written and the one
// prepared next) and waits for it. When ctx ends first the loop abandons them (their
// messages are negatively acknowledged, so they are redelivered at once) and Stop returns
// after it has.
func (in *Ingester) Stop(ctx context.Context) error {
	in.mu.Lock()
	started, abort := in.started && in.abort != nil, in.abort
	in.mu.Unlock()
	if !started {
		return nil
	}
	in.stopOnce.Do(func() { close(in.quit) })
	select {
	case <-in.done:
		abort()
		return nil
	case <-ctx.Done():
		abort()
		<-in.done
		return fmt.Errorf("ingest: stop: %w", ctx.Err())
	}
}

// Ready reports whether the loop runs and the consumer exists on the server.
func (in *Ingester) Ready(ctx context.Context) error {
	c := in.currentConsumer()
	if c == nil {
		return errors.New("audit consumer not started")
	}
	select {
	case <-in.done:
		return errors.New("audit consumer stopped")
	default:
	}
	if _, err := c.Info(ctx); err != nil {
		return fmt.Errorf("audit consumer %s: %w", in.cfg.Consumer, err)
	}
	return nil
}

// run is the loop: a producer goroutine fetches and prepares the next batch while run
// writes the current one, so that decoding and converting in Go overlap with PostgreSQL's
// work. It returns when Stop is called, after finishing the batches in hand, or when ctx
// is cancelled, after abandoning them.
func (in *Ingester) run(ctx context.Context) {
	defer close(in.done)
	stopSweep := make(chan struct{})
	var sweeper sync.WaitGroup
	sweeper.Go(func() { in.sweepLoop(ctx, stopSweep) })
	ready := make(chan batch)
	go in.produce(ctx, ready)
	for b := range ready {
		if ctx.Err() != nil {
			in.abandon(ctx, b.msgs)
			continue
		}
		in.write(ctx, b)
	}
	// The stored events are purged from the stream before the loop reports done.
	close(stopSweep)
	sweeper.Wait()
}

// produce fetches and prepares batches and hands them to run until Stop is called or ctx
// is cancelled; it closes ready when it returns.
func (in *Ingester) produce(ctx context.Context, ready chan<- batch) {
	defer close(ready)
	failures := 0
	gather := false
	var fetched time.Time
	for {
		select {
		case <-in.quit:
			return
		case <-ctx.Done():
			return
		default:
		}
		if gather {
			// The last fetch took every event the stream held: the next ones gather in
			// the stream until MaxWait after it, and come in one delivery.
			in.m.pauses.Inc()
			if !in.sleep(ctx, time.Until(fetched.Add(in.cfg.MaxWait))) {
				return
			}
		}
		pending, known := in.refreshLag(ctx)
		if ctx.Err() != nil {
			return
		}
		want := in.cfg.MaxRows
		if known && pending > 0 && pending < uint64(want) { //nolint:gosec // MaxRows is positive
			want = int(pending)
		}
		msgs, err := in.fetch(ctx, want)
		fetched = time.Now()
		if len(msgs) > 0 {
			b, ok := in.prepare(ctx, msgs)
			if !ok || len(b.msgs) > 0 && !in.handOver(ctx, ready, b) {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		// Asked for fewer than a batch and got them all: the stream is taken.
		gather = err == nil && want < in.cfg.MaxRows && len(msgs) == want
		if err == nil {
			failures = 0
			continue
		}
		failures++
		in.m.fetchFailures.Inc()
		in.logger.WarnContext(ctx, "fetch failed", "consumer", in.cfg.Consumer, "attempt", failures, "err", err)
		if !in.sleep(ctx, backoff(failures, maxBackoff)) {
			return
		}
		// The consumer or the stream may have been deleted; recreating them is harmless
		// when they exist.
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		if err := in.attach(actx); err != nil {
			in.logger.WarnContext(ctx, "consumer attach failed", "consumer", in.cfg.Consumer, "err", err)
		}
		cancel()
	}
}

// handOver passes b to run. While run is busy (a slow write, or a batch held through a
// database outage), InProgress keeps b's messages from being redelivered. It reports
// false when ctx ends first; b is then abandoned.
func (in *Ingester) handOver(ctx context.Context, ready chan<- batch, b batch) bool {
	t := time.NewTicker(in.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case ready <- b:
			return true
		case <-t.C:
			for _, m := range b.msgs {
				_ = m.InProgress() // on failure the message is redelivered, which is harmless
			}
		case <-ctx.Done():
			in.abandon(ctx, b.msgs)
			return false
		}
	}
}

// fetch pulls one batch: up to want messages and fetchBytes bytes, waiting up to MaxWait
// for them. Messages received before an error are returned with it.
//
// produce asks for as many as the stream holds (when fewer than MaxRows), so that the
// pull request ends as soon as they have come, together: a request left open gets each
// message that reaches it alone, costing NATS and this process a write, a read and a
// wake-up apiece.
func (in *Ingester) fetch(ctx context.Context, want int) ([]jetstream.Msg, error) {
	in.mu.Lock()
	c, fetchBytes := in.consumer, in.fetchBytes
	in.mu.Unlock()
	batch, err := c.Fetch(want, jetstream.FetchMaxBytes(fetchBytes), jetstream.FetchMaxWait(in.cfg.MaxWait))
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	var msgs []jetstream.Msg
	ch := batch.Messages()
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				// A batch that reached MaxRows before fetchBytes ends with "batch completed":
				// a full batch, not a failure (a backlog of MaxRows events or more gives
				// only such batches).
				if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrBatchCompleted) {
					return msgs, fmt.Errorf("fetch: %w", err)
				}
				return msgs, nil
			}
			msgs = append(msgs, m)
		case <-ctx.Done():
			// Messages still on their way are redelivered after AckWait.
			return msgs, fmt.Errorf("fetch: %w", ctx.Err())
		}
	}
}

// prepare decodes msgs, opens and scrubs their sealed copies, converts them, and sets
// poison messages aside. While the scrubber fails the batch is held (as a batch the
// database cannot write); prepare reports false when the loop is told to stop meanwhile,
// after abandoning the messages.
func (in *Ingester) prepare(ctx context.Context, msgs []jetstream.Msg) (batch, bool) {
	decoded := make([]jetstream.Msg, 0, len(msgs))
	events := make([]*auditv1.ConversationEvent, 0, len(msgs))
	var copies []*sealedCopy
	for _, m := range msgs {
		ev := &auditv1.ConversationEvent{}
		if err := proto.Unmarshal(m.Data(), ev); err != nil {
			in.deadLetter(ctx, m, ReasonDecode, fmt.Errorf("decode: %w", err))
			continue
		}
		if ev.GetSealed() != nil {
			c, reason, err := in.openSealed(ev)
			if err != nil {
				in.unreadable(ctx, ev, reason, err)
				redactUnreadable(ev)
			} else {
				in.m.sealedOpened.Inc()
				copies = append(copies, c)
			}
		}
		decoded = append(decoded, m)
		events = append(events, ev)
	}
	if !in.scrubHeld(ctx, decoded, copies) {
		in.abandon(ctx, decoded)
		return batch{}, false
	}
	b := batch{
		msgs:   make([]jetstream.Msg, 0, len(decoded)),
		events: make([]*auditv1.ConversationEvent, 0, len(decoded)),
		rows:   make([]store.Row, 0, len(decoded)),
	}
	for i, ev := range events {
		row, err := store.PrepareRow(ev)
		if err != nil {
			in.deadLetter(ctx, decoded[i], ReasonInvalid, err)
			continue
		}
		b.msgs = append(b.msgs, decoded[i])
		b.events = append(b.events, ev)
		b.rows = append(b.rows, row)
	}
	return b, true
}

// scrubHeld scrubs the batch's opened copies, retrying with backoff for as long as the
// scrubber is unreachable or failing, as hold does for the database: InProgress keeps
// the messages from being redelivered meanwhile and no delivery is spent. It reports
// false when the loop is told to stop first.
func (in *Ingester) scrubHeld(ctx context.Context, msgs []jetstream.Msg, copies []*sealedCopy) bool {
	if len(copies) == 0 {
		return true
	}
	ceiling := min(maxBackoff, in.cfg.AckWait/3)
	for attempt := 1; ; attempt++ {
		err := in.scrubCopies(ctx, copies)
		if err == nil {
			if attempt > 1 {
				in.logger.InfoContext(ctx, "scrubber available, held batch scrubbed", "copies", len(copies), "attempts", attempt)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		level := slog.LevelDebug
		if attempt == 1 || attempt%stillDownEvery == 0 {
			level = slog.LevelWarn
		}
		in.logger.Log(ctx, level, "scrubber unavailable, holding batch", "copies", len(copies), "attempt", attempt, "err", err)
		for _, m := range msgs {
			_ = m.InProgress() // on failure the message is redelivered, which is harmless
		}
		if !in.sleep(ctx, backoff(attempt, ceiling)) {
			return false
		}
		in.refreshLag(ctx)
	}
}

// write stores b's rows and acknowledges its messages, or decides what to do when
// PostgreSQL fails: split a batch that holds a rejected row, hold one it could not write.
func (in *Ingester) write(ctx context.Context, b batch) {
	if len(b.rows) == 0 {
		return
	}
	err := in.insert(ctx, b)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		in.abandon(ctx, b.msgs)
	case rowFault(err):
		in.isolate(ctx, b, err)
	default:
		in.hold(ctx, b, err)
	}
}

// insert writes b's rows in one transaction and, once committed, acknowledges its
// messages.
func (in *Ingester) insert(ctx context.Context, b batch) error {
	// Bounded so that a hung connection cannot keep the batch past AckWait unnoticed.
	started := time.Now()
	ictx, cancel := context.WithTimeout(ctx, in.cfg.AckWait/2)
	n, err := in.store.InsertRows(ictx, b.rows)
	cancel()
	if err != nil {
		in.m.batches.WithLabelValues(outcomeError).Inc()
		return err
	}
	now := time.Now()
	bytes := 0
	for i, m := range b.msgs {
		bytes += len(m.Data())
		in.m.delay.Observe(max(now.Sub(b.events[i].GetCreatedAt().AsTime()).Seconds(), 0))
	}
	in.m.batches.WithLabelValues(outcomeOK).Inc()
	in.m.batchRows.Observe(float64(len(b.rows)))
	in.m.batchBytes.Observe(float64(bytes))
	in.m.rows.Add(float64(n))
	in.ackAll(ctx, b.msgs)
	in.noteCommitted()
	in.traceWritten(b, started, now)
	return nil
}

// ackAll acknowledges msgs. The acknowledgements are sent without waiting for the server
// to confirm them: one that is lost only causes a redelivery, which the table's key
// absorbs, and waiting would cost a round trip per message.
func (in *Ingester) ackAll(ctx context.Context, msgs []jetstream.Msg) {
	failed := 0
	var first error
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	if failed > 0 {
		in.logger.WarnContext(ctx, "ack failed", "messages", failed, "err", first)
	}
}

// isolate splits a batch that PostgreSQL rejected because of some row's data, so that
// the good rows are written and the bad one ends up alone.
func (in *Ingester) isolate(ctx context.Context, b batch, err error) {
	if len(b.rows) == 1 {
		in.reject(ctx, b.msgs[0], err)
		return
	}
	mid := len(b.rows) / 2
	in.write(ctx, b.slice(0, mid))
	in.write(ctx, b.slice(mid, len(b.rows)))
}

// hold retries a batch PostgreSQL could not write, with backoff, until it is written, a
// row is found at fault, or the loop is told to stop. InProgress keeps the messages from
// being redelivered meanwhile, and no delivery is spent.
func (in *Ingester) hold(ctx context.Context, b batch, err error) {
	in.logger.WarnContext(ctx, "database unavailable, holding batch", "rows", len(b.rows), "err", err)
	// The wait stays well inside AckWait so that InProgress arrives in time.
	ceiling := min(maxBackoff, in.cfg.AckWait/3)
	for attempt := 1; ; attempt++ {
		for _, m := range b.msgs {
			_ = m.InProgress() // on failure the message is redelivered, which is harmless
		}
		if !in.sleep(ctx, backoff(attempt, ceiling)) {
			in.abandon(ctx, b.msgs)
			return
		}
		in.refreshLag(ctx)
		err = in.insert(ctx, b)
		switch {
		case err == nil:
			in.logger.InfoContext(ctx, "database available, held batch written", "rows", len(b.rows), "attempts", attempt+1)
			return
		case ctx.Err() != nil:
			in.abandon(ctx, b.msgs)
			return
		case rowFault(err):
			in.isolate(ctx, b, err)
			return
		}
		level := slog.LevelDebug
		if attempt%stillDownEvery == 0 {
			level = slog.LevelWarn
		}
		in.logger.Log(ctx, level, "database still unavailable", "rows", len(b.rows), "attempt", attempt, "err", err)
	}
}

// reject handles a message whose row PostgreSQL refused on its own: it is redelivered
// later with a delay, or dead-lettered on its last delivery.
func (in *Ingester) reject(ctx context.Context, m jetstream.Msg, err error) {
	seq, delivered := meta(m)
	if delivered >= uint64(in.cfg.MaxDeliver) {
		in.deadLetter(ctx, m, ReasonMaxDeliver, err)
		return
	}
	delay := backoff(int(delivered), maxBackoff) //nolint:gosec // delivered < MaxDeliver, an int
	_ = m.NakWithDelay(delay)                    // on failure AckWait brings it back
	in.logger.WarnContext(ctx, "event rejected by database, will retry",
		"stream_seq", seq, "num_delivered", delivered, "delay_ms", delay.Milliseconds(), "err", err)
}

// abandon gives msgs back to JetStream at stop. A message on its last delivery would
// never be delivered again, so it is dead-lettered instead.
func (in *Ingester) abandon(ctx context.Context, msgs []jetstream.Msg) {
	in.m.batches.WithLabelValues(outcomeAbandoned).Inc()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	for _, m := range msgs {
		if _, delivered := meta(m); delivered >= uint64(in.cfg.MaxDeliver) {
			in.deadLetter(dctx, m, ReasonMaxDeliver, errAbandoned)
			continue
		}
		_ = m.Nak() // on failure AckWait brings it back
	}
	in.logger.InfoContext(ctx, "batch abandoned", "messages", len(msgs))
}

var errAbandoned = errors.New("abandoned at stop on its last delivery")

// refreshLag sets the lag gauge from the consumer's state and returns the number of
// messages the stream holds that the consumer has not delivered yet; known is false when
// the state could not be read.
func (in *Ingester) refreshLag(ctx context.Context) (pending uint64, known bool) {
	c := in.currentConsumer()
	if c == nil || ctx.Err() != nil {
		return 0, false
	}
	ictx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	info, err := c.Info(ictx)
	if err != nil {
		// The fetch reports the same trouble; the gauge keeps its last value.
		in.logger.DebugContext(ctx, "consumer info failed", "err", err)
		return 0, false
	}
	in.m.lag.Set(float64(info.NumPending) + float64(info.NumAckPending))
	return info.NumPending, true
}

// sleep waits for d; it reports false when the loop must stop instead.
func (in *Ingester) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-in.quit:
		return false
	case <-ctx.Done():
		return false
	}
}

// backoff is the wait before retry attempt n (from 1): doubling from minBackoff, capped.
func backoff(n int, ceiling time.Duration) time.Duration {
	d := minBackoff
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// rowFault reports whether PostgreSQL refused a batch because of the data of some row
// (SQLSTATE classes 22 data exception, 23 integrity constraint violation and 54 program
// limit exceeded, e.g. a row too big), rather than because it is unavailable or
// misconfigured. Only such errors can be cured by setting a row aside; any other error
// holds the batch until the database recovers, since dead-lettering on it would empty the
// log into the dead-letter subject during an outage (a full disk, a revoked grant).
func rowFault(err error) bool {
	if errors.Is(err, store.ErrInvalidEvent) {
		return true
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23", "54":
		return true
	}
	return false
}
