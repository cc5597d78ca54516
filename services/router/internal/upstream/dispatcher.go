// Package upstream adapts the router's neighbours to the interfaces the conversation
// package declares: the pii-scrubber and cache services over Connect, provider workers
// over NATS, the audit stream on JetStream, and the component files.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/crossing"
)

// SubjectPrefix is the prefix of the per-component work subjects.
const SubjectPrefix = bus.ProviderSubjectPrefix

// DispatcherConfig tunes the Dispatcher.
type DispatcherConfig struct {
	// IdleTimeout is how long a worker may stay silent (no heartbeat, no answer)
	// before the router presumes it dead.
	IdleTimeout time.Duration
	// Attempts is how many workers a request may be tried on when one goes silent.
	Attempts int
	// HeartbeatMisses is how many heartbeats in a row a worker that announced its heartbeat
	// interval may miss before the router presumes it dead, when that is sooner than
	// IdleTimeout. Zero keeps IdleTimeout alone.
	HeartbeatMisses int
	// StreamWindow is the credit of a streamed dispatch: the chunks a worker may send
	// beyond those the router's consumer has taken. Zero means DefaultStreamWindow.
	StreamWindow int
	// Tracer records a producer span per dispatch, covering the wait for the worker's
	// answer; nil (tracing off) records none.
	Tracer trace.Tracer
	// NoWorkerWait is how long a request that finds no worker of its component (NATS
	// answers no responders) keeps trying before it fails: while workers reconnect to
	// another NATS node, or restart, the component has none for a moment. Zero fails at
	// once.
	NoWorkerWait time.Duration
}

// noWorkerPause is the first pause before a request that found no worker tries again;
// each later pause doubles, up to noWorkerPauseMax.
const (
	noWorkerPause    = 25 * time.Millisecond
	noWorkerPauseMax = 200 * time.Millisecond
)

// Ways a lost worker is detected: the label values of parley_router_workers_lost_total.
const (
	detectHeartbeatMissed = "heartbeat_missed"
	detectIdleTimeout     = "idle_timeout"
)

// dispatchMetrics counts lost workers, re-dispatches and possibly duplicated provider calls.
type dispatchMetrics struct {
	lost        *prometheus.CounterVec
	redispatch  *prometheus.CounterVec
	duplicates  *prometheus.CounterVec
	detectDelay *prometheus.HistogramVec
	noWorker    *prometheus.CounterVec
}

func newDispatchMetrics(reg prometheus.Registerer) (*dispatchMetrics, error) {
	m := &dispatchMetrics{
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_workers_lost_total",
			Help: "Dispatches abandoned because their worker went silent, by component and detection " +
				"(heartbeat_missed: the worker missed ROUTER_WORKER_HEARTBEAT_MISSES announced heartbeats; " +
				"idle_timeout: no sign of life for ROUTER_WORKER_IDLE_TIMEOUT).",
		}, []string{"component", "detection"}),
		redispatch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_redispatches_total",
			Help: "Requests sent to another worker after their worker went silent, by component.",
		}, []string{"component"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_duplicate_provider_calls_total",
			Help: "Re-dispatches of requests the lost worker had started (it sent a heartbeat), so whose " +
				"provider may be called twice, by component.",
		}, []string{"component"}),
		noWorker: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_no_worker_retries_total",
			Help: "Dispatches sent again because no worker of the component was subscribed (NATS no responders), " +
				"within ROUTER_NO_WORKER_WAIT, by component.",
		}, []string{"component"}),
		detectDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_router_worker_loss_detection_seconds",
			Help:    "Time from a lost worker's last sign of life (request sent or last heartbeat) to the router's decision, by component and detection.",
			Buckets: []float64{.1, .25, .5, .75, 1, 1.5, 2.5, 5, 10, 30},
		}, []string{"component", "detection"}),
	}
	for _, c := range []prometheus.Collector{m.lost, m.redispatch, m.duplicates, m.detectDelay, m.noWorker} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register dispatcher metrics: %w", err)
		}
	}
	return m, nil
}

// Dispatcher sends provider requests to worker queue groups over NATS and waits for the
// answer on a reply inbox shared by all requests of this router.
type Dispatcher struct {
	nc      *nats.Conn
	prop    propagation.TextMapPropagator
	cfg     DispatcherConfig
	prefix  string
	sub     *nats.Subscription
	mu      sync.Mutex
	waiting map[string]*waiter
	metrics *dispatchMetrics
}

// waiter is one dispatch waiting for its replies.
type waiter struct {
	ch chan *nats.Msg
	// last is when route last delivered a message (Unix nanoseconds), so a stream whose
	// consumer is slow does not mistake a live worker for a dead one.
	last atomic.Int64
	// stream: heartbeats are dropped while other replies wait, so the channel, sized for
	// the credit window, always has room for the chunks.
	stream bool
}

// lostWorker is ErrWorkerLost with how the loss was seen.
type lostWorker struct {
	detection string
	claimed   bool          // the worker had sent a heartbeat: it started the call
	silence   time.Duration // since the last sign of life
}

// NewDispatcher subscribes the router's reply inbox.
func NewDispatcher(nc *nats.Conn, prop propagation.TextMapPropagator, cfg DispatcherConfig, reg prometheus.Registerer) (*Dispatcher, error) {
	m, err := newDispatchMetrics(reg)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{nc: nc, prop: prop, cfg: cfg, prefix: nc.NewInbox() + ".", waiting: map[string]*waiter{}, metrics: m}
	sub, err := nc.Subscribe(d.prefix+"*", d.route)
	if err != nil {
		return nil, fmt.Errorf("subscribe reply inbox: %w", err)
	}
	d.sub = sub
	return d, nil
}

// Close unsubscribes the reply inbox.
func (d *Dispatcher) Close() error { return d.sub.Unsubscribe() }

func (d *Dispatcher) route(m *nats.Msg) {
	token := strings.TrimPrefix(m.Subject, d.prefix)
	d.mu.Lock()
	w := d.waiting[token]
	d.mu.Unlock()
	if w == nil {
		return // the request already ended
	}
	w.last.Store(time.Now().UnixNano())
	if w.stream && len(w.ch) > 0 && m.Header.Get(bus.HeartbeatIntervalHeader) != "" {
		return // the replies waiting already prove the worker alive
	}
	select {
	case w.ch <- m:
	default: // only heartbeats can pile up; the final reply always finds room
	}
}

// Dispatch sends req to a worker of its component. A worker that goes silent is replaced
// by another up to Attempts times; no worker at all is tried again for NoWorkerWait.
func (d *Dispatcher) Dispatch(ctx context.Context, req *providerv1.Request) (*conversation.Dispatched, error) {
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode provider request: %w", err)
	}
	component := req.GetComponent()
	subject := SubjectPrefix + component
	lostWorkers := 0
	var waited time.Duration
	pause := noWorkerPause
	for {
		resp, lost, err := d.once(ctx, subject, data)
		if lost != nil {
			lostWorkers++
			d.metrics.lost.WithLabelValues(component, lost.detection).Inc()
			d.metrics.detectDelay.WithLabelValues(component, lost.detection).Observe(lost.silence.Seconds())
			if lostWorkers < d.cfg.Attempts && ctx.Err() == nil {
				d.metrics.redispatch.WithLabelValues(component).Inc()
				if lost.claimed {
					d.metrics.duplicates.WithLabelValues(component).Inc()
				}
				continue
			}
			return nil, conversation.ErrWorkerLost
		}
		if errors.Is(err, conversation.ErrNoWorker) && waited < d.cfg.NoWorkerWait {
			p := min(pause, d.cfg.NoWorkerWait-waited)
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(p):
			}
			waited += p
			pause = min(2*pause, noWorkerPauseMax)
			d.metrics.noWorker.WithLabelValues(component).Inc()
			continue
		}
		if err != nil {
			return nil, err
		}
		// Attempts counts provider calls: the worker's own (resiliency retries) on the last
		// dispatch, plus at least one for every worker that went silent before it.
		return &conversation.Dispatched{Response: resp, Attempts: lostWorkers + max(1, int(resp.GetAttempts()))}, nil
	}
}

// once sends one dispatch and waits for its answer. A worker that goes silent ends it
// with a lostWorker and no error. Until the first heartbeat the worker may stay silent
// for IdleTimeout; once it has announced its heartbeat interval, for HeartbeatMisses
// intervals when that is shorter, so that a killed worker is noticed in about a second.
func (d *Dispatcher) once(ctx context.Context, subject string, data []byte) (*providerv1.Response, *lostWorker, error) {
	token, w := d.wait(8, false)
	defer d.unwait(token)
	ch := w.ch

	msg := &nats.Msg{Subject: subject, Reply: d.prefix + token, Data: data, Header: nats.Header{}}
	ctx, span := startSend(ctx, d.cfg.Tracer, subject)
	errType := ""
	defer func() { endSend(span, errType) }()
	d.prop.Inject(ctx, bus.HeaderCarrier(msg.Header))
	defer crossing.Track(ctx, crossing.Dispatch)()
	if err := d.nc.PublishMsg(msg); err != nil {
		errType = "publish"
		return nil, nil, fmt.Errorf("publish provider request: %w", err)
	}
	lastSign := time.Now()
	window, detection, claimed := d.cfg.IdleTimeout, detectIdleTimeout, false
	idle := time.NewTimer(window)
	defer idle.Stop()
	for {
		select {
		case m := <-ch:
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
				errType = "no_worker"
				return nil, nil, conversation.ErrNoWorker
			}
			var r providerv1.Reply
			if err := proto.Unmarshal(m.Data, &r); err != nil {
				return nil, nil, fmt.Errorf("decode worker reply: %w", err)
			}
			switch k := r.GetKind().(type) {
			case *providerv1.Reply_Heartbeat:
				if !claimed {
					claimed = true
					if w := d.heartbeatWindow(m.Header); w > 0 && w < window {
						window, detection = w, detectHeartbeatMissed
					}
				}
				lastSign = time.Now()
				idle.Reset(window)
			case *providerv1.Reply_Response:
				return k.Response, nil, nil
			case *providerv1.Reply_Error:
				errType = "provider_error"
				return nil, nil, &conversation.ProviderError{Code: k.Error.GetCode(), Message: k.Error.GetMessage()}
			default:
				return nil, nil, fmt.Errorf("worker reply has no kind")
			}
		case <-idle.C:
			errType = "worker_lost"
			return nil, &lostWorker{detection: detection, claimed: claimed, silence: time.Since(lastSign)}, nil
		case <-ctx.Done():
			errType = "canceled"
			return nil, nil, ctx.Err()
		}
	}
}

// wait registers a dispatch's reply channel of size n.
func (d *Dispatcher) wait(n int, stream bool) (string, *waiter) {
	token := nuid.Next()
	w := &waiter{ch: make(chan *nats.Msg, n), stream: stream}
	w.last.Store(time.Now().UnixNano())
	d.mu.Lock()
	d.waiting[token] = w
	d.mu.Unlock()
	return token, w
}

func (d *Dispatcher) unwait(token string) {
	d.mu.Lock()
	delete(d.waiting, token)
	d.mu.Unlock()
}

// heartbeatWindow is how long a worker whose heartbeat carries h may stay silent: its
// announced interval times HeartbeatMisses, or zero when it announces none.
func (d *Dispatcher) heartbeatWindow(h nats.Header) time.Duration {
	if d.cfg.HeartbeatMisses <= 0 || h == nil {
		return 0
	}
	iv, err := time.ParseDuration(h.Get(bus.HeartbeatIntervalHeader))
	if err != nil || iv <= 0 {
		return 0
	}
	return time.Duration(d.cfg.HeartbeatMisses) * iv
}
