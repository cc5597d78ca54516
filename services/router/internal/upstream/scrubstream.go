package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"connectrpc.com/connect"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/crossing"
)

// ScrubStream opens one ScrubStream call: one text arriving in pieces, with the options
// (mode, the input's tokens) in its first message.
func (s *Scrubber) ScrubStream(ctx context.Context, mode conversation.ScrubMode, tokens []conversation.Token) (conversation.ScrubStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	done := crossing.Track(ctx, crossing.Scrub)
	bs, err := s.client.ScrubStream(ctx)
	if err != nil {
		done()
		cancel()
		return nil, fmt.Errorf("pii-scrubber: open stream: %w", err)
	}
	first := &piiv1.ScrubStreamRequest{}
	if mode == conversation.ScrubTokenize {
		first.Mode = piiv1.Mode_MODE_TOKENIZE
		for _, t := range tokens {
			first.Tokens = append(first.Tokens, &piiv1.Token{Token: t.Token, Entity: t.Entity, Value: t.Value})
		}
	}
	return &scrubStream{bs: bs, first: first, cancel: cancel, done: sync.OnceFunc(done)}, nil
}

// scrubStream adapts a ScrubStream call to conversation.ScrubStream.
type scrubStream struct {
	bs     *connect.BidiStreamForClientSimple[piiv1.ScrubStreamRequest, piiv1.ScrubStreamResponse]
	first  *piiv1.ScrubStreamRequest // the options, sent with the first text; nil once sent
	cancel context.CancelFunc
	done   func()
}

func (s *scrubStream) next(text string, flush bool) *piiv1.ScrubStreamRequest {
	m := &piiv1.ScrubStreamRequest{Text: text, Flush: flush}
	if s.first != nil {
		m.Mode, m.Tokens = s.first.GetMode(), s.first.GetTokens()
		s.first = nil
	}
	return m
}

func (s *scrubStream) Send(text string) error {
	if err := s.bs.Send(s.next(text, false)); err != nil {
		return fmt.Errorf("pii-scrubber: send: %w", err)
	}
	return nil
}

func (s *scrubStream) CloseSend() error {
	if err := s.bs.Send(s.next("", true)); err != nil {
		return fmt.Errorf("pii-scrubber: flush: %w", err)
	}
	if err := s.bs.CloseRequest(); err != nil {
		return fmt.Errorf("pii-scrubber: close: %w", err)
	}
	return nil
}

func (s *scrubStream) Recv() (conversation.Scrubbed, error) {
	r, err := s.bs.Receive()
	if errors.Is(err, io.EOF) {
		s.done()
		return conversation.Scrubbed{}, io.EOF
	}
	if err != nil {
		return conversation.Scrubbed{}, fmt.Errorf("pii-scrubber: receive: %w", err)
	}
	out := conversation.Scrubbed{Text: r.GetText()}
	for _, f := range r.GetFindings() {
		out.Findings = append(out.Findings, conversation.Finding{Entity: f.GetEntity(), Start: int(f.GetStart()), End: int(f.GetEnd())})
	}
	return out, nil
}

func (s *scrubStream) Close() error {
	s.done()
	s.cancel()
	_ = s.bs.CloseRequest()
	return s.bs.CloseResponse() //nolint:wrapcheck // best effort
}
