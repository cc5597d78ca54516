// Package rpc serves parley.pii.v1.ScrubberService.
package rpc

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/services/pii-scrubber/internal/scrub"
)

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
	if n := len(req.GetTexts()); n > h.maxTexts {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%d texts in one call; at most %d", n, h.maxTexts))
	}
	out := &piiv1.ScrubResponse{Results: make([]*piiv1.ScrubResult, len(req.GetTexts()))}
	for i, text := range req.GetTexts() {
		if i%64 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res, err := h.scrubber.Scrub(text, req.GetEntities())
		if errors.Is(err, scrub.ErrUnknownEntity) {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%w; known: %v", err, scrub.Entities()))
		}
		if err != nil {
			return nil, err
		}
		h.bytes.Add(float64(len(text)))
		r := &piiv1.ScrubResult{Text: res.Text}
		for _, f := range res.Findings {
			h.findings.WithLabelValues(f.Entity).Inc()
			r.Findings = append(r.Findings, &piiv1.Finding{Entity: f.Entity, Start: int64(f.Start), End: int64(f.End), Score: f.Score})
		}
		out.Results[i] = r
	}
	return out, nil
}
