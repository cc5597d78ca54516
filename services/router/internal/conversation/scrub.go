package conversation

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

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

// scrubOutputs scrubs the model's output where the caller asked for it (choice content,
// and string values inside tool-call arguments), and every output text of the audit copy
// with AuditScrub. All texts go to the scrubber in one call.
func (s *Service) scrubOutputs(ctx context.Context, req Request, resp *providerv1.Response, rec *record) error {
	rec.auditResp = resp
	if !req.ScrubOutput && !req.ScrubToolArguments && !s.opts.AuditScrub {
		return nil
	}
	texts := outputTexts(resp)
	if len(texts) == 0 {
		return nil
	}
	in := make([]string, len(texts))
	for i, t := range texts {
		in[i] = t.text
	}
	out, err := s.scrubber.Scrub(ctx, in)
	if err != nil {
		rec.auditResp = redactResponse(resp)
		if req.ScrubOutput || req.ScrubToolArguments {
			return &ScrubError{Err: err}
		}
		s.m.auditRedacted.Inc()
		return nil
	}
	callerWants := func(t outputText) bool {
		if t.call < 0 {
			return req.ScrubOutput
		}
		return req.ScrubToolArguments
	}
	var audit *providerv1.Response
	if s.opts.AuditScrub {
		for _, t := range texts {
			if !callerWants(t) {
				audit, _ = proto.Clone(resp).(*providerv1.Response)
				rec.auditResp = audit
				break
			}
		}
	}
	scrubbed := make([]string, len(texts))
	for i := range texts {
		rec.count(out[i].Findings)
		scrubbed[i] = out[i].Text
	}
	applyOutputTexts(resp, texts, scrubbed, callerWants)
	if audit != nil {
		applyOutputTexts(audit, texts, scrubbed, func(outputText) bool { return true })
	}
	return nil
}

// outputText is one scrubbable text of a response: a choice's content (call < 0) or a
// string value inside the arguments of one of its tool calls.
type outputText struct {
	choice, call, leaf int
	text               string
}

func outputTexts(resp *providerv1.Response) []outputText {
	var out []outputText
	for i, c := range resp.GetChoices() {
		if c.GetContent() != "" {
			out = append(out, outputText{choice: i, call: -1, text: c.GetContent()})
		}
		for j, tc := range c.GetToolCalls() {
			for k, leaf := range argumentStrings(tc.GetArguments()) {
				out = append(out, outputText{choice: i, call: j, leaf: k, text: leaf})
			}
		}
	}
	return out
}

// applyOutputTexts writes the scrubbed texts that want selects into resp.
func applyOutputTexts(resp *providerv1.Response, texts []outputText, scrubbed []string, want func(outputText) bool) {
	type callKey struct{ choice, call int }
	leaves := map[callKey]map[int]string{}
	for i, t := range texts {
		if !want(t) || scrubbed[i] == t.text {
			continue
		}
		if t.call < 0 {
			resp.GetChoices()[t.choice].Content = scrubbed[i]
			continue
		}
		k := callKey{t.choice, t.call}
		if leaves[k] == nil {
			leaves[k] = map[int]string{}
		}
		leaves[k][t.leaf] = scrubbed[i]
	}
	for k, repl := range leaves {
		tc := resp.GetChoices()[k.choice].GetToolCalls()[k.call]
		tc.Arguments = replaceArgumentStrings(tc.GetArguments(), repl)
	}
}

// argumentStrings lists the string values of tool-call arguments (JSON, keys excluded) in a
// stable order; arguments that are not JSON are one text.
func argumentStrings(args string) []string {
	if args == "" {
		return nil
	}
	var v any
	if json.Unmarshal([]byte(args), &v) != nil {
		return []string{args}
	}
	var out []string
	walkStrings(v, func(s string) string { out = append(out, s); return s })
	return out
}

// replaceArgumentStrings replaces the string values numbered in repl (in argumentStrings'
// order) and re-encodes the JSON.
func replaceArgumentStrings(args string, repl map[int]string) string {
	var v any
	if json.Unmarshal([]byte(args), &v) != nil {
		if r, ok := repl[0]; ok {
			return r
		}
		return args
	}
	n := 0
	v = walkStrings(v, func(s string) string {
		defer func() { n++ }()
		if r, ok := repl[n]; ok {
			return r
		}
		return s
	})
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return args
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// walkStrings visits every string value of a decoded JSON value in a stable order (object
// keys sorted) and replaces it with f's result.
func walkStrings(v any, f func(string) string) any {
	switch x := v.(type) {
	case string:
		return f(x)
	case []any:
		for i := range x {
			x[i] = walkStrings(x[i], f)
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			x[k] = walkStrings(x[k], f)
		}
	}
	return v
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
