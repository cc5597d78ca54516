// Package upstream adapts the router's neighbours to the interfaces the conversation
// package declares: the pii-scrubber and cache services over Connect, provider workers
// over NATS, the audit stream on JetStream, and the component files.
package upstream

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/crossing"
)

// SubjectPrefix is the prefix of the per-component work subjects.
const SubjectPrefix = "parley.provider."

// DispatcherConfig tunes the Dispatcher.
type DispatcherConfig struct {
	// IdleTimeout is how long a worker may stay silent (no heartbeat, no answer)
	// before the router presumes it dead.
	IdleTimeout time.Duration
	// Attempts is how many workers a request may be tried on when one goes silent.
	Attempts int
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
	waiting map[string]chan *nats.Msg
}

// NewDispatcher subscribes the router's reply inbox.
func NewDispatcher(nc *nats.Conn, prop propagation.TextMapPropagator, cfg DispatcherConfig) (*Dispatcher, error) {
	d := &Dispatcher{nc: nc, prop: prop, cfg: cfg, prefix: nc.NewInbox() + ".", waiting: map[string]chan *nats.Msg{}}
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
	ch := d.waiting[token]
	d.mu.Unlock()
	if ch == nil {
		return // the request already ended
	}
	select {
	case ch <- m:
	default: // only heartbeats can pile up; the final reply always finds room
	}
}

// Dispatch sends req to a worker of its component. A worker that goes silent is replaced
// by another up to Attempts times; no worker at all fails at once.
func (d *Dispatcher) Dispatch(ctx context.Context, req *providerv1.Request) (*conversation.Dispatched, error) {
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode provider request: %w", err)
	}
	subject := SubjectPrefix + req.GetComponent()
	for attempt := 1; ; attempt++ {
		resp, err := d.once(ctx, subject, data)
		if err == conversation.ErrWorkerLost && attempt < d.cfg.Attempts && ctx.Err() == nil { //nolint:errorlint // own sentinel, never wrapped
			continue
		}
		if err != nil {
			return nil, err
		}
		// Attempts counts provider calls: the worker's own (resiliency retries) on the last
		// dispatch, plus at least one for every worker that went silent before it.
		return &conversation.Dispatched{Response: resp, Attempts: attempt - 1 + max(1, int(resp.GetAttempts()))}, nil
	}
}

func (d *Dispatcher) once(ctx context.Context, subject string, data []byte) (*providerv1.Response, error) {
	token := nuid.Next()
	ch := make(chan *nats.Msg, 8)
	d.mu.Lock()
	d.waiting[token] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.waiting, token)
		d.mu.Unlock()
	}()

	msg := &nats.Msg{Subject: subject, Reply: d.prefix + token, Data: data, Header: nats.Header{}}
	d.prop.Inject(ctx, bus.HeaderCarrier(msg.Header))
	defer crossing.Track(ctx, crossing.Dispatch)()
	if err := d.nc.PublishMsg(msg); err != nil {
		return nil, fmt.Errorf("publish provider request: %w", err)
	}
	idle := time.NewTimer(d.cfg.IdleTimeout)
	defer idle.Stop()
	for {
		select {
		case m := <-ch:
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
				return nil, conversation.ErrNoWorker
			}
			var r providerv1.Reply
			if err := proto.Unmarshal(m.Data, &r); err != nil {
				return nil, fmt.Errorf("decode worker reply: %w", err)
			}
			switch k := r.GetKind().(type) {
			case *providerv1.Reply_Heartbeat:
				idle.Reset(d.cfg.IdleTimeout)
			case *providerv1.Reply_Response:
				return k.Response, nil
			case *providerv1.Reply_Error:
				return nil, &conversation.ProviderError{Code: k.Error.GetCode(), Message: k.Error.GetMessage()}
			default:
				return nil, fmt.Errorf("worker reply has no kind")
			}
		case <-idle.C:
			return nil, conversation.ErrWorkerLost
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
