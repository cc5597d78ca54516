package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/crossing"
)

// DefaultStreamWindow is DispatcherConfig.StreamWindow's default.
const DefaultStreamWindow = 32

// DispatchStream sends req as a streamed request and calls onChunk with each chunk, in
// order; it returns the answer assembled from the chunks and the worker's final Response.
// A worker that goes silent before the first chunk reached onChunk is replaced as in
// Dispatch; after it, the stream fails with ErrWorkerLost. A chunk out of sequence fails
// the stream (a lost chunk is never skipped). The worker may run at most StreamWindow
// chunks ahead of onChunk: the router grants credit as onChunk returns, so a slow consumer
// slows the worker instead of filling a buffer. An onChunk error, ctx's end or any failure
// sends the worker a cancel.
func (d *Dispatcher) DispatchStream(ctx context.Context, req *providerv1.Request, onChunk func(*providerv1.Chunk) error) (*conversation.Dispatched, error) {
	window := d.cfg.StreamWindow
	if window <= 0 {
		window = DefaultStreamWindow
	}
	req.Stream = true
	req.StreamWindow = uint32(window) //nolint:gosec // a configured, validated size
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode provider request: %w", err)
	}
	component := req.GetComponent()
	subject := SubjectPrefix + component
	for attempt := 1; ; attempt++ {
		s := &streamDispatch{d: d, window: uint64(window), onChunk: onChunk} //nolint:gosec // positive
		resp, lost, err := s.run(ctx, subject, data)
		if lost != nil {
			d.metrics.lost.WithLabelValues(component, lost.detection).Inc()
			d.metrics.detectDelay.WithLabelValues(component, lost.detection).Observe(lost.silence.Seconds())
			if s.delivered > 0 {
				return nil, fmt.Errorf("%w mid-stream, after %d chunks", conversation.ErrWorkerLost, s.delivered)
			}
			if attempt < d.cfg.Attempts && ctx.Err() == nil {
				d.metrics.redispatch.WithLabelValues(component).Inc()
				if lost.claimed {
					d.metrics.duplicates.WithLabelValues(component).Inc()
				}
				continue
			}
			return nil, conversation.ErrWorkerLost
		}
		if err != nil {
			return nil, err
		}
		return &conversation.Dispatched{Response: resp, Attempts: attempt - 1 + max(1, int(resp.GetAttempts()))}, nil
	}
}

// streamDispatch is one streamed dispatch to one worker.
type streamDispatch struct {
	d         *Dispatcher
	window    uint64
	onChunk   func(*providerv1.Chunk) error
	control   string // the worker's control subject, from its first heartbeat or chunk
	granted   uint64 // the highest chunk number the worker may send
	delivered uint64 // chunks given to onChunk
	asm       conversation.Assembly
}

func (s *streamDispatch) run(ctx context.Context, subject string, data []byte) (*providerv1.Response, *lostWorker, error) {
	d := s.d
	token, w := d.wait(int(s.window)+8, true) //nolint:gosec // a small window
	defer d.unwait(token)
	msg := &nats.Msg{Subject: subject, Reply: d.prefix + token, Data: data, Header: nats.Header{}}
	// The same producer span as a unary dispatch: the worker's spans are its children.
	ctx, span := startSend(ctx, d.cfg.Tracer, subject)
	errType := ""
	defer func() { endSend(span, errType) }()
	d.prop.Inject(ctx, bus.HeaderCarrier(msg.Header))
	defer crossing.Track(ctx, crossing.Dispatch)()
	if err := d.nc.PublishMsg(msg); err != nil {
		errType = "publish"
		return nil, nil, fmt.Errorf("publish provider request: %w", err)
	}
	s.granted = s.window
	finished := false
	defer func() {
		if !finished {
			s.send(&providerv1.Control{Kind: &providerv1.Control_Cancel{Cancel: true}})
		}
	}()
	window, detection, claimed := d.cfg.IdleTimeout, detectIdleTimeout, false
	idle := time.NewTimer(window)
	defer idle.Stop()
	for {
		select {
		case m := <-w.ch:
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
				finished = true
				errType = "no_worker"
				return nil, nil, conversation.ErrNoWorker
			}
			var r providerv1.Reply
			if err := proto.Unmarshal(m.Data, &r); err != nil {
				errType = "decode"
				return nil, nil, fmt.Errorf("decode worker reply: %w", err)
			}
			if m.Reply != "" {
				s.control = m.Reply
			}
			switch k := r.GetKind().(type) {
			case *providerv1.Reply_Heartbeat:
				if !claimed {
					claimed = true
					if hw := d.heartbeatWindow(m.Header); hw > 0 && hw < window {
						window, detection = hw, detectHeartbeatMissed
					}
				}
				idle.Reset(window)
			case *providerv1.Reply_Chunk:
				claimed = true
				if err := s.chunk(k.Chunk); err != nil {
					errType = chunkErrType(err)
					return nil, nil, err
				}
				idle.Reset(window)
			case *providerv1.Reply_Response:
				if s.delivered == 0 {
					// A worker older than the stream protocol answers whole: one chunk per choice.
					for _, c := range conversation.ChunksOf(k.Response) {
						if err := s.chunk(c); err != nil {
							errType = chunkErrType(err)
							return nil, nil, err
						}
					}
				}
				finished = true
				return s.asm.Response(k.Response), nil, nil
			case *providerv1.Reply_Error:
				finished = true
				errType = "provider_error"
				return nil, nil, providerError(k.Error)
			default:
				errType = "decode"
				return nil, nil, fmt.Errorf("worker reply has no kind")
			}
		case <-idle.C:
			// The consumer may have been slow while the worker kept sending: the silence
			// counts from the last message route saw, not from the last one read here.
			if since := time.Since(time.Unix(0, w.last.Load())); since < window {
				idle.Reset(window - since)
				continue
			}
			errType = "worker_lost"
			return nil, &lostWorker{detection: detection, claimed: claimed, silence: time.Since(time.Unix(0, w.last.Load()))}, nil
		case <-ctx.Done():
			errType = "canceled"
			return nil, nil, ctx.Err()
		}
	}
}

// chunkErrType is the span's error.type of a chunk that failed the stream: out of
// sequence (a provider error of this package) or refused by the consumer (the caller went
// away, a scrubber stream failed).
func chunkErrType(err error) string {
	var pe *conversation.ProviderError
	if errors.As(err, &pe) {
		return "stream_broken"
	}
	return "consumer"
}

// chunk checks a chunk's number, hands it on and grants credit when half the window has
// been taken since the last grant.
func (s *streamDispatch) chunk(c *providerv1.Chunk) error {
	if want := s.delivered + 1; c.GetSeq() != want {
		return &conversation.ProviderError{
			Code:    providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE,
			Message: fmt.Sprintf("stream broken: chunk %d arrived where %d was expected", c.GetSeq(), want),
		}
	}
	s.asm.Add(c)
	if err := s.onChunk(c); err != nil {
		return err
	}
	s.delivered++
	if s.granted-s.delivered <= s.window/2 {
		s.granted = s.delivered + s.window
		s.send(&providerv1.Control{Kind: &providerv1.Control_Credit{Credit: s.granted}})
	}
	return nil
}

// send publishes c on the worker's control subject, when the worker named one. A failure
// is harmless: credit lost stalls the worker until its deadline, a cancel lost lets the
// provider call finish unread.
func (s *streamDispatch) send(c *providerv1.Control) {
	if s.control == "" {
		return
	}
	b, err := proto.Marshal(c)
	if err != nil {
		return
	}
	_ = s.d.nc.Publish(s.control, b)
}
