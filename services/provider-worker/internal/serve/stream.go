package serve

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// Streamer is implemented by providers that can stream their answers. ConverseStream calls
// emit with each piece of the answer as the provider produces it (ChoiceIndex, Content,
// ToolCalls, FinishReason on a choice's last piece; the worker numbers them) and returns the
// final Response: choices with index and finish reason (any content is dropped, the chunks
// carried it), model and usage (nil when the provider reported none). emit blocks while the
// router has granted no credit; when it returns an error (the call was cancelled or the
// router went away) ConverseStream must stop and return it. An early end of the provider's
// stream is an error, never a shorter success. Providers without it answer streamed requests
// through Converse, in one chunk per choice.
type Streamer interface {
	ConverseStream(ctx context.Context, req *providerv1.Request, emit func(*providerv1.Chunk) error) (*providerv1.Response, error)
}

// DefaultStreamWindow is the credit of a streamed request that sets no stream_window.
const DefaultStreamWindow = 32

// errCancelled is the cancellation cause of a stream whose router sent Control.cancel.
var errCancelled = errors.New("cancelled by the router")

// stream is the flow-control state of one streamed request: the control subject the
// router answers on, the credit it granted and the chunks sent.
type stream struct {
	w       *Worker
	token   string
	control string // the worker's inbox subject for this stream's Control messages
	reply   string // the router's reply inbox
	credit  atomic.Uint64
	more    chan struct{} // signalled when credit rises
	cancel  context.CancelCauseFunc
	seq     uint64 // chunks sent; only the provider's goroutine touches it
	started atomic.Bool
	// waits counts the times emit waited for credit, for tests of flow control.
	waits atomic.Int64
}

// streams routes Control messages to the streams they control.
type streams struct {
	prefix string
	mu     sync.Mutex
	byTok  map[string]*stream
	sub    *nats.Subscription
}

// subscribeControl subscribes the worker's control inbox; called by Start.
func (w *Worker) subscribeControl() error {
	w.ctl.prefix = w.nc.NewInbox() + "."
	w.ctl.byTok = map[string]*stream{}
	sub, err := w.nc.Subscribe(w.ctl.prefix+"*", w.onControl)
	if err != nil {
		return fmt.Errorf("subscribe stream control inbox: %w", err)
	}
	w.ctl.sub = sub
	return nil
}

func (w *Worker) onControl(m *nats.Msg) {
	token := strings.TrimPrefix(m.Subject, w.ctl.prefix)
	w.ctl.mu.Lock()
	s := w.ctl.byTok[token]
	w.ctl.mu.Unlock()
	if s == nil {
		return // the stream has ended
	}
	var c providerv1.Control
	if err := proto.Unmarshal(m.Data, &c); err != nil {
		return
	}
	switch k := c.GetKind().(type) {
	case *providerv1.Control_Credit:
		for {
			cur := s.credit.Load()
			if k.Credit <= cur || s.credit.CompareAndSwap(cur, k.Credit) {
				break
			}
		}
		select {
		case s.more <- struct{}{}:
		default:
		}
	case *providerv1.Control_Cancel:
		if k.Cancel {
			s.cancel(errCancelled)
		}
	}
}

// openStream registers a streamed request's flow control.
func (w *Worker) openStream(reply string, window uint32, cancel context.CancelCauseFunc) *stream {
	if window == 0 {
		window = DefaultStreamWindow
	}
	s := &stream{w: w, token: nuid.Next(), reply: reply, more: make(chan struct{}, 1), cancel: cancel}
	s.control = w.ctl.prefix + s.token
	s.credit.Store(uint64(window))
	w.ctl.mu.Lock()
	w.ctl.byTok[s.token] = s
	w.ctl.mu.Unlock()
	return s
}

func (w *Worker) closeStream(s *stream) {
	w.ctl.mu.Lock()
	delete(w.ctl.byTok, s.token)
	w.ctl.mu.Unlock()
}

// emit sends c as the next chunk once the router's credit allows it.
func (s *stream) emit(ctx context.Context, c *providerv1.Chunk) error {
	s.seq++
	c.Seq = s.seq
	for s.seq > s.credit.Load() {
		s.waits.Add(1)
		select {
		case <-s.more:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	data, err := proto.Marshal(&providerv1.Reply{Kind: &providerv1.Reply_Chunk{Chunk: c}})
	if err != nil {
		return fmt.Errorf("encode chunk: %w", err)
	}
	if err := s.w.nc.PublishMsg(&nats.Msg{Subject: s.reply, Reply: s.control, Data: data}); err != nil {
		return fmt.Errorf("publish chunk: %w", err)
	}
	s.started.Store(true)
	return nil
}

// converseStream runs one attempt of a streamed request: through the provider's
// ConverseStream, or through Converse in one chunk per choice.
func (s *stream) converseStream(ctx context.Context, p Provider, req *providerv1.Request) (*providerv1.Response, error) {
	emit := func(c *providerv1.Chunk) error { return s.emit(ctx, c) }
	if sp, ok := p.(Streamer); ok {
		resp, err := sp.ConverseStream(ctx, req, emit)
		if err != nil {
			return nil, err //nolint:wrapcheck // the provider's error, classified by the caller
		}
		return resp, nil
	}
	resp, err := p.Converse(ctx, req)
	if err != nil || resp == nil {
		return resp, err //nolint:wrapcheck // the provider's error, classified by the caller
	}
	for _, c := range resp.GetChoices() {
		ch := &providerv1.Chunk{ChoiceIndex: c.GetIndex(), Content: c.GetContent(), FinishReason: c.GetFinishReason()}
		for i, tc := range c.GetToolCalls() {
			ch.ToolCalls = append(ch.ToolCalls, &providerv1.ToolCallDelta{
				Index: int32(i), Id: tc.GetId(), Name: tc.GetName(), Arguments: tc.GetArguments(), //nolint:gosec // a handful of tool calls
			})
		}
		if err := emit(ch); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// stripContent leaves in a streamed request's final Response what the chunks did not carry.
func stripContent(resp *providerv1.Response) {
	for _, c := range resp.GetChoices() {
		c.Content = ""
		c.ToolCalls = nil
	}
}
