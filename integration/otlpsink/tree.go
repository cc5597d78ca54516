package otlpsink

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Print writes every trace to w as a tree (Render) once quiet has passed without a new
// span of it, and forgets the spans printed, until ctx ends. A span that arrives after its
// trace was printed (an audit write after a long batch wait) is printed as a trace of its
// own, with the same id.
func (s *Sink) Print(ctx context.Context, w io.Writer, quiet time.Duration) {
	t := time.NewTicker(max(quiet/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, trace := range s.takeQuiet(time.Now().Add(-quiet)) {
			Render(w, trace)
		}
	}
}

// takeQuiet removes and returns the spans of every trace whose last span arrived before
// cutoff, a trace per slice, oldest first.
func (s *Sink) takeQuiet(cutoff time.Time) [][]Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	byTrace := map[string][]Span{}
	var order []string
	kept := s.spans[:0]
	for _, sp := range s.spans {
		if s.arrived[sp.TraceID].After(cutoff) {
			kept = append(kept, sp)
			continue
		}
		if _, seen := byTrace[sp.TraceID]; !seen {
			order = append(order, sp.TraceID)
		}
		byTrace[sp.TraceID] = append(byTrace[sp.TraceID], sp)
	}
	clear(s.spans[len(kept):])
	s.spans = kept
	out := make([][]Span, 0, len(order))
	for _, id := range order {
		delete(s.arrived, id)
		out = append(out, byTrace[id])
	}
	return out
}

// Render writes the spans of one trace as a tree: each span's start from the trace's
// start, its duration, its service and its name indented under its parent, with token
// counts, finish reasons, errors and links where the span has them.
//
//	trace 4bf92f3577b34da6a3ce929d0e0e4736  12.30 ms  9 spans
//	     start  duration  service         span
//	    0.00ms   12.30ms  router          POST /v1.0-alpha2/conversation/{name}/converse
//	    0.02ms   12.21ms  router            chat gpt-4o  tokens 12/40 [stop]
func Render(w io.Writer, spans []Span) {
	if len(spans) == 0 {
		return
	}
	spans = slices.Clone(spans)
	slices.SortStableFunc(spans, func(a, b Span) int { return a.Start.Compare(b.Start) })
	ids := make(map[string]bool, len(spans))
	for _, sp := range spans {
		ids[sp.SpanID] = true
	}
	children := map[string][]Span{}
	var roots []Span
	start, end := spans[0].Start, spans[0].End
	for _, sp := range spans {
		if sp.End.After(end) {
			end = sp.End
		}
		if sp.ParentSpanID == "" || !ids[sp.ParentSpanID] {
			roots = append(roots, sp)
			continue
		}
		children[sp.ParentSpanID] = append(children[sp.ParentSpanID], sp)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "trace %s  %s  %d spans\n", spans[0].TraceID, ms(end.Sub(start)), len(spans))
	fmt.Fprintf(&b, "  %9s %9s  %-14s %s\n", "start", "duration", "service", "span")
	var walk func(sp Span, depth int)
	walk = func(sp Span, depth int) {
		fmt.Fprintf(&b, "  %9s %9s  %-14s %s%s%s\n", ms(sp.Start.Sub(start)), ms(sp.Duration()), sp.Service,
			strings.Repeat("  ", depth), sp.Name, details(sp))
		for _, c := range children[sp.SpanID] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	_, _ = io.WriteString(w, b.String())
}

// details is what Render adds after a span's name.
func details(sp Span) string {
	var parts []string
	if in, ok := sp.Attributes["gen_ai.usage.input_tokens"]; ok {
		parts = append(parts, "tokens "+in+"/"+sp.Attributes["gen_ai.usage.output_tokens"])
	}
	if r := sp.Attributes["gen_ai.response.finish_reasons"]; r != "" {
		parts = append(parts, r)
	}
	if c := sp.Attributes["http.response.status_code"]; c != "" {
		parts = append(parts, "HTTP "+c)
	}
	if sp.Attributes["parley.cache_hit"] == "true" {
		parts = append(parts, "cache hit")
	}
	if sp.Error {
		parts = append(parts, "ERROR "+sp.StatusMessage)
	}
	for _, l := range sp.Links {
		parts = append(parts, "link "+l.SpanID)
	}
	if len(parts) == 0 {
		return ""
	}
	return "  " + strings.Join(parts, "  ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
