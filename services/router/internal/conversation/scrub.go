package conversation

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/providertext"
	"github.com/parleyhq/parley/libs/restore"
)

// redactedText replaces every text of an audit record when the scrubber cannot be
// reached: the record is kept, the text is not.
const redactedText = "<REDACTED: scrubber unavailable>"

// format is how the scrubber is to read a text.
func format(isJSON bool) TextFormat {
	if isJSON {
		return FormatJSON
	}
	return FormatText
}

// scrubMode is the scrubber mode of req.
func scrubMode(req Request) ScrubMode {
	if req.Tokenize {
		return ScrubTokenize
	}
	return ScrubReplace
}

// tokenMap is a tokenize-mode request's mapping, held in memory for the request only.
type tokenMap struct {
	// all is the input call's whole mapping, passed on to the output call.
	all []Token
	// text and json restore the tokens that the provider saw, in text and inside JSON
	// strings (values JSON-escaped); nil when there is nothing to restore.
	text, json *restore.Restorer
}

// newTokenMap keeps, for restoring, the tokens that occur in sent (the texts the provider
// sees): tokens of audit-only texts never reached the provider. Its cost is linear in the
// mapping plus the texts (see presentTokens), whatever the number of tokens; it stops
// with ctx's error when ctx ends.
func newTokenMap(ctx context.Context, all []Token, sent []string) (*tokenMap, error) {
	tm := &tokenMap{all: all}
	byToken := make(map[string]int, len(all))
	for i, t := range all {
		byToken[t.Token] = i
	}
	var scan tokenScan
	present, err := scan.present(ctx, byToken, sent)
	if err != nil {
		return nil, err
	}
	plain, escaped := map[string]string{}, map[string]string{}
	for _, i := range present {
		t := all[i]
		plain[t.Token] = t.Value
		b, err := json.Marshal(t.Value)
		if err != nil {
			continue
		}
		escaped[t.Token] = string(b[1 : len(b)-1])
	}
	if len(plain) > 0 {
		tm.text, tm.json = restore.New(plain), restore.New(escaped)
	}
	return tm, nil
}

// maxTokenLen bounds a placeholder's length: '<', an entity name of at most 32
// characters, '_', a number, '>' (the restore package's bound).
const maxTokenLen = 48

// cancelCheckBytes is how many bytes a scan examines between two looks at its context.
const cancelCheckBytes = 1 << 16

// tokenScan finds placeholders in texts in one pass. steps counts the bytes examined
// and the map lookups made, so tests can bound the work by the input's size.
type tokenScan struct{ steps int }

// present returns the indexes (values of byToken) of the tokens that occur in texts, each
// once. Every '<' starts at most one candidate, <NAME_n>, read while the bytes are
// upper-case letters, digits or '_' and at most maxTokenLen long; a candidate ends before
// the next '<', so each byte is examined at most twice and each candidate costs one map
// lookup: linear in the texts, independent of the mapping's size.
func (sc *tokenScan) present(ctx context.Context, byToken map[string]int, texts []string) ([]int, error) {
	var found []int
	seen := make(map[int]bool)
	budget := cancelCheckBytes
	for _, s := range texts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for i := 0; i < len(s); i++ {
			sc.steps++
			if budget--; budget == 0 {
				budget = cancelCheckBytes
				if err := ctx.Err(); err != nil {
					return nil, err
				}
			}
			if s[i] != '<' {
				continue
			}
			j := i + 1
			for j < len(s) && j-i < maxTokenLen && isTokenByte(s[j]) {
				sc.steps++
				j++
			}
			if j >= len(s) || s[j] != '>' {
				i = j - 1 // the bytes up to j hold no '<'
				continue
			}
			sc.steps++
			if k, ok := byToken[s[i:j+1]]; ok && !seen[k] {
				seen[k] = true
				found = append(found, k)
			}
			i = j
		}
	}
	return found, nil
}

func isTokenByte(c byte) bool {
	return c-'A' < 26 || c-'0' < 10 || c == '_'
}

// restoreResponse puts the caller's values back into the answer: content and tool-call
// arguments.
func (tm *tokenMap) restoreResponse(resp *providerv1.Response) {
	if tm == nil || tm.text == nil {
		return
	}
	for _, c := range resp.GetChoices() {
		c.Content = tm.text.Text(c.GetContent())
		for _, tc := range c.GetToolCalls() {
			args := tc.GetArguments()
			if json.Valid([]byte(args)) {
				tc.Arguments = tm.json.Text(args)
			} else {
				tc.Arguments = tm.text.Text(args)
			}
		}
	}
}

// scrubInputs scrubs, in one scrubber call, the texts of flagged messages in the provider
// request and, with AuditScrub, every text of the copy kept for the audit log. In tokenize
// mode it returns the mapping (nil otherwise).
//
// When no message is flagged the scrub is for the audit copy alone, which changes no
// answer: it is left pending (rec.inputPending) and made in the output's scrubber call
// (scrubOutputs), or before the audit event is recorded on paths without one
// (scrubPendingInputs), so the request waits for one scrubber call instead of two; with
// a sealer and no output scrub for the caller, by the audit service (no call at all).
func (s *Service) scrubInputs(ctx context.Context, req Request, rec *record) (*tokenMap, error) {
	p := req.Provider
	refs := providertext.Inputs(p)
	flagged := func(r providertext.Ref) bool { return r.Msg < len(req.ScrubInput) && req.ScrubInput[r.Msg] }
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
		return nil, nil
	}
	if !anyFlagged {
		rec.inputPending = true
		return nil, nil
	}
	call := ScrubCall{Texts: make([]string, len(send)), Formats: make([]TextFormat, len(send)), Mode: scrubMode(req)}
	for j, i := range send {
		call.Texts[j] = refs[i].Text()
		call.Formats[j] = format(refs[i].JSON())
	}
	res, err := s.scrubber.Scrub(ctx, call)
	if err == nil && len(res.Results) != len(send) {
		err = fmt.Errorf("%d results for %d texts", len(res.Results), len(send))
	}
	if err != nil {
		rec.auditReq = redactRequest(p)
		if anyFlagged {
			return nil, &ScrubError{Err: err}
		}
		s.m.auditRedacted.Inc()
		return nil, nil
	}
	out := res.Results
	var arefs []providertext.Ref
	if s.opts.AuditScrub && !allFlagged {
		audit, _ := proto.Clone(p).(*providerv1.Request)
		rec.auditReq = audit
		arefs = providertext.Inputs(audit)
	}
	var sent []string
	for j, i := range send {
		rec.count(out[j].Findings)
		if flagged(refs[i]) {
			refs[i].Set(out[j].Text)
			sent = append(sent, out[j].Text)
		}
		if arefs != nil {
			arefs[i].Set(out[j].Text)
		}
	}
	if !req.Tokenize {
		return nil, nil
	}
	return newTokenMap(ctx, res.Tokens, sent)
}

// scrubOutputs scrubs the model's output where the caller asked for it (choice content,
// and tool-call arguments as JSON), and every output text of the audit copy with
// AuditScrub. All texts go to the scrubber in one call; in tokenize mode it continues the
// input's mapping, so values the model repeats get their input tokens and new values new
// ones (which are never restored).
//
// The audit copy's input texts left pending by scrubInputs go in the same call, after
// the output's. With a sealer, a call that would be made for the audit copy alone is not
// made: the copy's texts are left to the audit service (rec.outputPending).
func (s *Service) scrubOutputs(ctx context.Context, req Request, resp *providerv1.Response, rec *record, tm *tokenMap) error {
	rec.auditResp = resp
	if !req.ScrubOutput && !req.ScrubToolArguments && !s.opts.AuditScrub {
		return nil
	}
	texts := providertext.Outputs(resp)
	if s.sealing() && !req.ScrubOutput && !req.ScrubToolArguments && tm == nil {
		// For the audit copy alone, which is sealed to the audit service: it scrubs the
		// output texts, and the input texts still pending, off the reply's path.
		rec.outputPending = len(texts) > 0
		return nil
	}
	pending := s.pendingInputs(req, rec)
	if len(texts) == 0 && pending == nil {
		return nil
	}
	call := ScrubCall{Texts: make([]string, len(texts)), Formats: make([]TextFormat, len(texts)), Mode: scrubMode(req)}
	for i, t := range texts {
		call.Texts[i] = t.Text
		call.Formats[i] = format(t.JSON())
	}
	if pending != nil {
		call.Texts = append(call.Texts, pending.texts...)
		call.Formats = append(call.Formats, pending.formats...)
	}
	if tm != nil {
		call.Tokens = tm.all
	}
	var res ScrubOutcome
	var err error
	if !req.ScrubOutput && !req.ScrubToolArguments && tm == nil {
		res, err = s.scrubForAudit(ctx, call)
	} else {
		res, err = s.scrubber.Scrub(ctx, call)
	}
	if err == nil && len(res.Results) != len(call.Texts) {
		err = fmt.Errorf("%d results for %d texts", len(res.Results), len(call.Texts))
	}
	if err != nil {
		rec.auditResp = redactResponse(resp)
		if pending != nil {
			rec.auditReq = redactRequest(req.Provider)
		}
		if req.ScrubOutput || req.ScrubToolArguments {
			return &ScrubError{Err: err}
		}
		s.m.auditRedacted.Inc()
		return nil
	}
	if pending != nil {
		pending.apply(rec, res.Results[len(texts):])
	}
	out := res.Results[:len(texts)]
	callerWants := func(t providertext.Output) bool {
		if t.Call < 0 {
			return req.ScrubOutput
		}
		return req.ScrubToolArguments
	}
	// The audit copy is resp itself unless the scrubber changed a text the caller gets
	// unscrubbed.
	var audit *providerv1.Response
	if s.opts.AuditScrub {
		for i, t := range texts {
			if !callerWants(t) && out[i].Text != t.Text {
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
	providertext.SetOutputs(resp, texts, scrubbed, callerWants)
	if audit != nil {
		providertext.SetOutputs(audit, texts, scrubbed, func(providertext.Output) bool { return true })
	}
	return nil
}

// scrubForAudit scrubs texts whose results go to the audit copy alone: from the memo
// when every text's answer is remembered (no scrubber call), else by the scrubber,
// whose answers are then remembered.
func (s *Service) scrubForAudit(ctx context.Context, call ScrubCall) (ScrubOutcome, error) {
	if s.memo == nil || call.Mode != ScrubReplace {
		return s.scrubber.Scrub(ctx, call) //nolint:wrapcheck // the adapter's error, wrapped by the caller
	}
	if results, ok := s.memo.lookup(call); ok {
		s.m.memoHit.Inc()
		return ScrubOutcome{Results: results}, nil
	}
	s.m.memoMiss.Inc()
	res, err := s.scrubber.Scrub(ctx, call)
	if err == nil {
		s.memo.store(call, res.Results)
	}
	return res, err //nolint:wrapcheck // the adapter's error, wrapped by the caller
}

// pendingScrubTimeout bounds the audit copy's input scrub of a request that failed.
const pendingScrubTimeout = 5 * time.Second

// pendingAudit is a request whose audit copy's input texts are still to be scrubbed,
// with those texts.
type pendingAudit struct {
	req     *providerv1.Request
	texts   []string
	formats []TextFormat
}

// pendingInputs is the audit copy's input scrub left pending by scrubInputs, or nil.
func (s *Service) pendingInputs(req Request, rec *record) *pendingAudit {
	if !rec.inputPending {
		return nil
	}
	rec.inputPending = false
	p := &pendingAudit{req: req.Provider}
	for _, r := range providertext.Inputs(req.Provider) {
		p.texts = append(p.texts, r.Text())
		p.formats = append(p.formats, format(r.JSON()))
	}
	return p
}

// apply makes the audit copy from the scrubbed texts, which the record then keeps: the
// request itself when the scrubber changed none of them (nothing to hide, no copy made),
// else a copy with the scrubbed texts.
func (p *pendingAudit) apply(rec *record, out []Scrubbed) {
	changed := false
	for i := range p.texts {
		rec.count(out[i].Findings)
		changed = changed || out[i].Text != p.texts[i]
	}
	if !changed {
		rec.auditReq = p.req
		return
	}
	c, _ := proto.Clone(p.req).(*providerv1.Request)
	for i, r := range providertext.Inputs(c) {
		r.Set(out[i].Text)
	}
	rec.auditReq = c
}

// scrubPendingInputs makes the audit copy's input scrub left pending when no output
// scrub took it along (the request failed first): before the event is recorded, so
// raw text never reaches the audit log.
//
// With a sealer it makes no call: the audit service scrubs the sealed copy.
func (s *Service) scrubPendingInputs(ctx context.Context, req Request, rec *record) {
	if s.sealing() {
		return
	}
	pending := s.pendingInputs(req, rec)
	if pending == nil {
		return
	}
	// The caller may have gone (the reason the request failed): the audit event is still
	// recorded, so is its scrub made.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pendingScrubTimeout)
	defer cancel()
	res, err := s.scrubForAudit(ctx, ScrubCall{Texts: pending.texts, Formats: pending.formats, Mode: scrubMode(req)})
	if err == nil && len(res.Results) != len(pending.texts) {
		err = fmt.Errorf("%d results for %d texts", len(res.Results), len(pending.texts))
	}
	if err != nil {
		rec.auditReq = redactRequest(req.Provider)
		s.m.auditRedacted.Inc()
		return
	}
	pending.apply(rec, res.Results)
}

func (r *record) count(fs []Finding) {
	for _, f := range fs {
		r.findings[f.Entity]++
	}
}

func redactRequest(p *providerv1.Request) *providerv1.Request {
	c, _ := proto.Clone(p).(*providerv1.Request)
	for _, r := range providertext.Inputs(c) {
		r.Set(redactedText)
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
