package conversation

import (
	"context"

	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// redactedText replaces every text of an audit record when the scrubber cannot be
// reached: the record is kept, the text is not.
const redactedText = "<REDACTED: scrubber unavailable>"

// textRef points at one scrubbable text of a request: a text part or a tool result.
type textRef struct {
	msg  int
	part *providerv1.Part
}

func (r textRef) get() string {
	switch k := r.part.GetKind().(type) {
	case *providerv1.Part_Text:
		return k.Text
	case *providerv1.Part_ToolResult:
		return k.ToolResult.GetContent()
	}
	return ""
}

func (r textRef) set(s string) {
	switch k := r.part.GetKind().(type) {
	case *providerv1.Part_Text:
		k.Text = s
	case *providerv1.Part_ToolResult:
		k.ToolResult.Content = s
	}
}

func inputRefs(p *providerv1.Request) []textRef {
	var refs []textRef
	for i, m := range p.GetMessages() {
		for _, part := range m.GetParts() {
			switch part.GetKind().(type) {
			case *providerv1.Part_Text, *providerv1.Part_ToolResult:
				refs = append(refs, textRef{msg: i, part: part})
			}
		}
	}
	return refs
}

// scrubInputs scrubs, in one scrubber call, the texts of flagged messages in the provider
// request and, with AuditScrub, every text of the copy kept for the audit log.
func (s *Service) scrubInputs(ctx context.Context, req Request, rec *record) error {
	p := req.Provider
	refs := inputRefs(p)
	flagged := func(r textRef) bool { return r.msg < len(req.ScrubInput) && req.ScrubInput[r.msg] }
	var send []int
	anyFlagged, allFlagged := false, true
	for i, r := range refs {
		f := flagged(r)
		anyFlagged = anyFlagged || f
		allFlagged = allFlagged && f
		if f || s.opts.AuditScrub {
			send = append(send, i)
		}
	}
	rec.auditReq = p
	if len(send) == 0 {
		return nil
	}
	texts := make([]string, len(send))
	for j, i := range send {
		texts[j] = refs[i].get()
	}
	out, err := s.scrubber.Scrub(ctx, texts)
	if err != nil {
		rec.auditReq = redactRequest(p)
		if anyFlagged {
			return &ScrubError{Err: err}
		}
		s.m.auditRedacted.Inc()
		return nil
	}
	var arefs []textRef
	if s.opts.AuditScrub && !allFlagged {
		audit, _ := proto.Clone(p).(*providerv1.Request)
		rec.auditReq = audit
		arefs = inputRefs(audit)
	}
	for j, i := range send {
		rec.count(out[j].Findings)
		if flagged(refs[i]) {
			refs[i].set(out[j].Text)
		}
		if arefs != nil {
			arefs[i].set(out[j].Text)
		}
	}
	return nil
}

// scrubOutputs scrubs the content of every choice when the caller asked for it, and the
// audit copy with AuditScrub.
func (s *Service) scrubOutputs(ctx context.Context, req Request, resp *providerv1.Response, rec *record) error {
	rec.auditResp = resp
	if !req.ScrubOutput && !s.opts.AuditScrub {
		return nil
	}
	var idx []int
	var texts []string
	for i, c := range resp.GetChoices() {
		if c.GetContent() != "" {
			idx = append(idx, i)
			texts = append(texts, c.GetContent())
		}
	}
	if len(texts) == 0 {
		return nil
	}
	out, err := s.scrubber.Scrub(ctx, texts)
	if err != nil {
		rec.auditResp = redactResponse(resp)
		if req.ScrubOutput {
			return &ScrubError{Err: err}
		}
		s.m.auditRedacted.Inc()
		return nil
	}
	target := resp
	if !req.ScrubOutput {
		target, _ = proto.Clone(resp).(*providerv1.Response)
		rec.auditResp = target
	}
	for j, i := range idx {
		rec.count(out[j].Findings)
		target.GetChoices()[i].Content = out[j].Text
	}
	return nil
}

func (r *record) count(fs []Finding) {
	for _, f := range fs {
		r.findings[f.Entity]++
	}
}

func redactRequest(p *providerv1.Request) *providerv1.Request {
	c, _ := proto.Clone(p).(*providerv1.Request)
	for _, r := range inputRefs(c) {
		r.set(redactedText)
	}
	return c
}

func redactResponse(resp *providerv1.Response) *providerv1.Response {
	c, _ := proto.Clone(resp).(*providerv1.Response)
	for _, ch := range c.GetChoices() {
		if ch.GetContent() != "" {
			ch.Content = redactedText
		}
	}
	return c
}
