package conversation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/restore"
)

// Delta is one piece of a streamed answer, as the caller gets it.
type Delta struct {
	// RequestID is the conversation's request id, on every delta.
	RequestID string
	// Choice is the index of the choice the piece belongs to.
	Choice int64
	// Content is text to append to the choice's content.
	Content string
	// ToolCalls are pieces of the choice's tool calls: Index says which call; the first
	// piece of a call carries its id and name, later ones fragments of its arguments.
	ToolCalls []*providerv1.ToolCallDelta
}

// ConverseStream runs req as Converse does (input scrubbing, cache, dispatch, output
// scrubbing, audit) and streams the answer: emit gets the content and tool-call deltas in
// order, as soon as they are safe to release. The Result returned after the last delta
// holds the whole answer as the caller got it (each choice's content, tool calls and finish
// reason), with usage, model and cache hit; adapters send the finish reasons and usage from
// it.
//
//   - Output scrubbing goes through one scrubber stream per choice (StreamScrubber), which
//     holds back the end of the text seen so far, so an entity split across chunks never
//     escapes; the deltas concatenated equal Converse's scrubbed content. A scrubber that
//     cannot stream gets the whole content at the end, which then arrives in one delta.
//   - Tool-call arguments are sent as they come, except with ScrubToolArguments or in
//     tokenize mode: then each tool call arrives whole after the content, scrubbed (and
//     restored) as Converse does.
//   - Tokenize mode puts the caller's values back across chunk boundaries (restore.Stream).
//   - A cache hit is replayed as one delta per choice.
//   - Fallbacks and re-dispatches happen only before the first chunk of the answer was
//     taken; after it a failure ends the stream with the error. A complete answer is
//     cached; a cancelled or failed one is not.
//   - The audit record is written once, after the stream, with the whole answer and the
//     time to the first delta.
//
// An error from emit (the caller went away) cancels the provider call and is returned.
func (s *Service) ConverseStream(ctx context.Context, req Request, emit func(Delta) error) (*Result, error) {
	return s.converse(ctx, req, func(ctx context.Context, req Request, comp Component, rec *record) (*Result, error) {
		return s.runStream(ctx, req, comp, rec, emit)
	})
}

func (s *Service) runStream(ctx context.Context, req Request, comp Component, rec *record, emit func(Delta) error) (*Result, error) {
	p := req.Provider
	l, err := s.begin(ctx, req, comp, rec)
	if err != nil {
		return nil, err
	}
	tokens, resp, hit := l.tokens, l.cached, l.cached != nil
	var providerTime time.Duration

	ss, canStream := s.scrubber.(StreamScrubber)
	out := &streamOut{
		ctx: ctx, emit: emit, rec: rec, choices: map[int64]*choiceOut{},
		scrub:       req.ScrubOutput && canStream,
		holdContent: req.ScrubOutput && !canStream,
		holdTools:   req.ScrubToolArguments || (tokens != nil && tokens.text != nil),
		scrubber:    ss, mode: scrubMode(req), requestID: p.GetRequestId(),
	}
	if tokens != nil {
		out.tokens = tokens.all
		out.restorer = tokens.text
	}
	defer out.close()

	if hit {
		for _, c := range ChunksOf(resp) {
			if err := out.chunk(c); err != nil {
				return nil, err
			}
		}
	} else {
		call := func(ctx context.Context, p *providerv1.Request) (*Dispatched, error) {
			if sd, ok := s.dispatcher.(StreamDispatcher); ok {
				return sd.DispatchStream(ctx, p, out.chunk) //nolint:wrapcheck // domain errors of this package
			}
			d, err := s.dispatcher.Dispatch(ctx, p)
			if err != nil {
				return nil, err //nolint:wrapcheck // domain errors of this package
			}
			for _, c := range ChunksOf(d.Response) {
				if err := out.chunk(c); err != nil {
					return nil, err
				}
			}
			return d, nil
		}
		d, used, err := s.dispatch(ctx, p, comp, rec, call, func() bool { return out.taken == 0 })
		if resp, providerTime, err = s.dispatched(ctx, comp, rec, l, d, used, err); err != nil {
			return nil, err
		}
	}
	if err := out.finish(); err != nil {
		return nil, err
	}
	if err := s.finishStream(ctx, req, resp, rec, tokens, out); err != nil {
		return nil, err
	}
	res := &Result{RequestID: p.GetRequestId(), Response: resp, CacheHit: hit, ProviderTime: providerTime}
	if !out.first.IsZero() {
		res.TimeToFirstToken = out.first.Sub(rec.start)
		rec.ev.TimeToFirstToken = durationpb.New(res.TimeToFirstToken)
	}
	fillOutcome(rec.ev, resp)
	return res, nil
}

// finishStream makes the output scrub of what the stream did not scrub (tool-call
// arguments, the audit copy, a content held back for a scrubber that cannot stream),
// restores tokens, and sends what was held back. resp becomes the answer as the caller
// got it; the audit record keeps the scrubbed one.
func (s *Service) finishStream(ctx context.Context, req Request, resp *providerv1.Response, rec *record, tokens *tokenMap, out *streamOut) error {
	endReq := req
	var streamed map[int64]string
	if out.scrub {
		// The content went through the scrubber stream: it is scrubbed already, and
		// leaves this call's texts.
		endReq.ScrubOutput = false
		streamed = map[int64]string{}
		for _, c := range resp.GetChoices() {
			streamed[c.GetIndex()] = out.scrubbedContent(c.GetIndex())
			c.Content = ""
		}
	}
	if err := s.scrubOutputs(ctx, endReq, resp, rec, tokens); err != nil {
		return err
	}
	if streamed != nil {
		put := func(r *providerv1.Response) {
			for _, c := range r.GetChoices() {
				c.Content = streamed[c.GetIndex()]
			}
		}
		put(resp)
		if rec.auditResp != resp {
			put(rec.auditResp)
		}
	}
	if tokens != nil && tokens.text != nil {
		if rec.auditResp == resp {
			rec.auditResp, _ = proto.Clone(resp).(*providerv1.Response)
		}
		tokens.restoreResponse(resp)
	}
	for _, c := range resp.GetChoices() {
		if out.holdContent && c.GetContent() != "" {
			if err := out.send(Delta{Choice: c.GetIndex(), Content: c.GetContent()}); err != nil {
				return err
			}
		}
		if out.holdTools && len(c.GetToolCalls()) > 0 {
			d := Delta{Choice: c.GetIndex()}
			for j, tc := range c.GetToolCalls() {
				d.ToolCalls = append(d.ToolCalls, &providerv1.ToolCallDelta{Index: int32(j), Id: tc.GetId(), Name: tc.GetName(), Arguments: tc.GetArguments()}) //nolint:gosec // a handful
			}
			if err := out.send(d); err != nil {
				return err
			}
		}
	}
	return nil
}

// streamOut is the output side of a stream: chunks in, deltas out through the scrubber
// streams and the token restorers.
type streamOut struct {
	ctx         context.Context //nolint:containedctx // one stream's context, held for its scrubber streams
	emit        func(Delta) error
	rec         *record
	scrub       bool // content through a scrubber stream per choice
	holdContent bool // content scrubbed whole at the end (the scrubber cannot stream)
	holdTools   bool // tool calls sent whole at the end
	scrubber    StreamScrubber
	mode        ScrubMode
	requestID   string
	tokens      []Token
	restorer    *restore.Restorer

	taken   int // chunks taken, by the dispatching goroutine only
	choices map[int64]*choiceOut

	mu    sync.Mutex // serializes emit, first, err and the findings
	first time.Time
	err   error
}

// choiceOut is one choice's scrubber stream and restorer.
type choiceOut struct {
	index    int64
	stream   ScrubStream
	restore  *restore.Stream
	scrubbed strings.Builder // the scrubber's output, before restoring
	done     chan struct{}   // closed when the receiver has read the stream's end
	err      error
}

// chunk takes the next chunk of the answer.
func (o *streamOut) chunk(c *providerv1.Chunk) error {
	if err := o.failed(); err != nil {
		return err
	}
	o.taken++
	if text := c.GetContent(); text != "" && !o.holdContent {
		co, err := o.choice(c.GetChoiceIndex())
		if err != nil {
			return err
		}
		if o.scrub {
			if err := co.stream.Send(text); err != nil {
				return &ScrubError{Err: fmt.Errorf("scrubber stream: %w", err)}
			}
		} else if err := o.deliver(co, text); err != nil {
			return err
		}
	}
	if len(c.GetToolCalls()) > 0 && !o.holdTools {
		return o.send(Delta{Choice: c.GetChoiceIndex(), ToolCalls: c.GetToolCalls()})
	}
	return nil
}

// choice returns the output state of choice i, opening its scrubber stream.
func (o *streamOut) choice(i int64) (*choiceOut, error) {
	if co := o.choices[i]; co != nil {
		return co, nil
	}
	if len(o.choices) >= maxStreamChoices {
		return nil, &ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_INTERNAL, Message: "stream has too many choices"}
	}
	co := &choiceOut{index: i}
	if o.restorer != nil {
		co.restore = o.restorer.Stream()
	}
	if o.scrub {
		st, err := o.scrubber.ScrubStream(o.ctx, o.mode, o.tokens)
		if err != nil {
			return nil, &ScrubError{Err: err}
		}
		co.stream = st
		co.done = make(chan struct{})
		go o.receive(co)
	}
	o.choices[i] = co
	return co, nil
}

// maxStreamChoices bounds the choices, so the scrubber streams, of one answer.
const maxStreamChoices = 16

// receive passes a choice's scrubbed output on as it becomes safe.
func (o *streamOut) receive(co *choiceOut) {
	defer close(co.done)
	for {
		piece, err := co.stream.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			co.err = &ScrubError{Err: fmt.Errorf("scrubber stream: %w", err)}
			o.fail(co.err)
			return
		}
		o.mu.Lock()
		o.rec.count(piece.Findings)
		o.mu.Unlock()
		co.scrubbed.WriteString(piece.Text)
		if err := o.deliver(co, piece.Text); err != nil {
			co.err = err
			return
		}
	}
}

// deliver restores tokens in text and sends it.
func (o *streamOut) deliver(co *choiceOut, text string) error {
	if co.restore != nil {
		text = co.restore.Write(text)
	}
	if text == "" {
		return nil
	}
	return o.send(Delta{Choice: co.index, Content: text})
}

// send emits d, once; the first failure sticks.
func (o *streamOut) send(d Delta) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	if o.first.IsZero() {
		o.first = time.Now()
	}
	d.RequestID = o.requestID
	if err := o.emit(d); err != nil {
		o.err = err
		return err
	}
	return nil
}

func (o *streamOut) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		o.err = err
	}
}

func (o *streamOut) failed() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// finish ends every choice's scrubber stream, waits for what it held back to be sent, and
// flushes the restorers.
func (o *streamOut) finish() error {
	for _, co := range o.choices {
		if co.stream == nil {
			continue
		}
		if err := co.stream.CloseSend(); err != nil {
			o.fail(&ScrubError{Err: fmt.Errorf("scrubber stream: %w", err)})
		}
	}
	for _, co := range o.choices {
		if co.done != nil {
			<-co.done
		}
	}
	if err := o.failed(); err != nil {
		return err
	}
	for _, co := range o.choices {
		if co.restore == nil {
			continue
		}
		if rest := co.restore.Flush(); rest != "" {
			if err := o.send(Delta{Choice: co.index, Content: rest}); err != nil {
				return err
			}
		}
	}
	return nil
}

// scrubbedContent is choice i's content as the scrubber stream returned it.
func (o *streamOut) scrubbedContent(i int64) string {
	if co := o.choices[i]; co != nil {
		return co.scrubbed.String()
	}
	return ""
}

// close ends the scrubber streams of a stream that stopped early.
func (o *streamOut) close() {
	for _, co := range o.choices {
		if co.stream != nil {
			_ = co.stream.Close()
			<-co.done
		}
	}
}
