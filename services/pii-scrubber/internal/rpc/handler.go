// Package rpc serves parley.pii.v1.ScrubberService.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/services/pii-scrubber/internal/scrub"
)

// Policy names who may call each RPC: routers scrub; the audit service scrubs the audit
// copies routers sealed to it, with Scrub only.
var Policy = identity.Policy{
	piiv1connect.ScrubberServiceScrubProcedure:       {identity.Router, identity.Audit},
	piiv1connect.ScrubberServiceScrubStreamProcedure: {identity.Router},
}

// Handler implements ScrubberService over the scrub package.
type Handler struct {
	scrubber *scrub.Scrubber
	maxTexts int
	findings *prometheus.CounterVec
	bytes    prometheus.Counter
}

var _ piiv1connect.ScrubberServiceHandler = (*Handler)(nil)

// New returns a Handler that accepts at most maxTexts texts per call.
func New(s *scrub.Scrubber, maxTexts int, reg prometheus.Registerer) (*Handler, error) {
	h := &Handler{
		scrubber: s,
		maxTexts: maxTexts,
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_scrubber_findings_total",
			Help: "PII entities found, by entity type.",
		}, []string{"entity"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_scrubber_bytes_total",
			Help: "Bytes of text scrubbed.",
		}),
	}
	for _, c := range []prometheus.Collector{h.findings, h.bytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metric: %w", err)
		}
	}
	return h, nil
}

// Scrub scrubs every text of the request.
func (h *Handler) Scrub(ctx context.Context, req *piiv1.ScrubRequest) (*piiv1.ScrubResponse, error) {
	texts := req.GetTexts()
	if n := len(texts); n > h.maxTexts {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%d texts in one call; at most %d", n, h.maxTexts))
	}
	if len(req.GetFormats()) > len(texts) {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%d formats for %d texts", len(req.GetFormats()), len(texts)))
	}
	call, err := h.newCall(req.GetEntities(), req.GetMode(), req.GetThresholds(), req.GetTokens())
	if err != nil {
		return nil, err
	}
	for _, text := range texts {
		call.Reserve(text)
	}
	out := &piiv1.ScrubResponse{Results: make([]*piiv1.ScrubResult, len(texts))}
	for i, text := range texts {
		if i%64 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var res scrub.Result
		if i < len(req.GetFormats()) && req.GetFormats()[i] == piiv1.Format_FORMAT_JSON {
			res = call.ScrubJSON(text)
		} else {
			res = call.Scrub(text)
		}
		h.bytes.Add(float64(len(text)))
		out.Results[i] = &piiv1.ScrubResult{Text: res.Text, Findings: h.findingsOf(res.Findings)}
	}
	out.Tokens = tokensOf(call.Tokens())
	return out, nil
}

// ScrubStream scrubs a text that arrives in chunks.
func (h *Handler) ScrubStream(ctx context.Context, stream *connect.BidiStream[piiv1.ScrubStreamRequest, piiv1.ScrubStreamResponse]) error {
	req, err := stream.Receive()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	call, err := h.newCall(req.GetEntities(), req.GetMode(), req.GetThresholds(), req.GetTokens())
	if err != nil {
		return err
	}
	st := call.NewStream()
	sent := len(call.Tokens())
	send := func(p scrub.Piece) error {
		tokens := call.Tokens()
		if p.Text == "" && len(tokens) == sent {
			return nil
		}
		res := &piiv1.ScrubStreamResponse{Text: p.Text, Findings: h.findingsOf(p.Findings), Tokens: tokensOf(tokens[sent:])}
		sent = len(tokens)
		if err := stream.Send(res); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		return nil
	}
	flushed := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if text := req.GetText(); text != "" {
			h.bytes.Add(float64(len(text)))
			if err := send(st.Write(text)); err != nil {
				return err
			}
			flushed = false
		}
		if req.GetFlush() {
			if err := send(st.Flush()); err != nil {
				return err
			}
			flushed = true
		}
		req, err = stream.Receive()
		if errors.Is(err, io.EOF) {
			if flushed {
				return nil
			}
			return send(st.Flush())
		}
		if err != nil {
			return err
		}
	}
}

// newCall validates the options of a call and maps their errors to codes.
func (h *Handler) newCall(entities []string, mode piiv1.Mode, thresholds map[string]float64, tokens []*piiv1.Token) (*scrub.Call, error) {
	opts := scrub.Options{Entities: entities, Thresholds: thresholds}
	switch mode {
	case piiv1.Mode_MODE_UNSPECIFIED, piiv1.Mode_MODE_REPLACE:
		opts.Mode = scrub.ModeReplace
	case piiv1.Mode_MODE_MASK:
		opts.Mode = scrub.ModeMask
	case piiv1.Mode_MODE_HASH:
		opts.Mode = scrub.ModeHash
	case piiv1.Mode_MODE_TOKENIZE:
		opts.Mode = scrub.ModeTokenize
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("unknown mode %d", mode))
	}
	for _, t := range tokens {
		opts.Tokens = append(opts.Tokens, scrub.Token{Token: t.GetToken(), Entity: t.GetEntity(), Value: t.GetValue()})
	}
	call, err := h.scrubber.NewCall(opts)
	switch {
	case err == nil:
		return call, nil
	case errors.Is(err, scrub.ErrUnknownEntity):
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%w; known: %v", err, scrub.Entities()))
	case errors.Is(err, scrub.ErrBadOption):
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, scrub.ErrNoHashKey):
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return nil, err
}

func (h *Handler) findingsOf(fs []scrub.Finding) []*piiv1.Finding {
	var out []*piiv1.Finding
	for _, f := range fs {
		h.findings.WithLabelValues(f.Entity).Inc()
		out = append(out, &piiv1.Finding{Entity: f.Entity, Start: int64(f.Start), End: int64(f.End), Score: f.Score})
	}
	return out
}

func tokensOf(ts []scrub.Token) []*piiv1.Token {
	var out []*piiv1.Token
	for _, t := range ts {
		out = append(out, &piiv1.Token{Token: t.Token, Entity: t.Entity, Value: t.Value})
	}
	return out
}
