package ingest

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/providertext"
	"github.com/parleyhq/parley/libs/seal"
)

// Opener opens a sealed audit copy; *seal.Opener is one.
type Opener interface {
	Open(b seal.Box, aad []byte) ([]byte, error)
}

// Scrubber scrubs texts; pii-scrubber's Connect client is one.
type Scrubber interface {
	Scrub(ctx context.Context, req *piiv1.ScrubRequest) (*piiv1.ScrubResponse, error)
}

// The scrubber's limits on one Scrub call: it refuses more than SCRUBBER_MAX_TEXTS texts
// (4,096 by default) and a request larger than its RPC_MAX_MESSAGE_BYTES (4 MiB). The
// byte bound leaves room for the protobuf framing of every text and keeps the answer,
// whose placeholders can be longer than what they replace, well inside the same limit.
const (
	DefaultScrubMaxTexts = 4096
	DefaultScrubMaxBytes = 2 << 20
	// textOverhead is what one text adds to a ScrubRequest beyond its bytes (tag, length
	// and format), counted against the byte bound.
	textOverhead = 16
)

// RedactedText replaces every text of a sealed copy that cannot be read (wrong key,
// tampering, no key configured) or that the scrubber refuses: the row is kept, the text
// never stored.
const RedactedText = "<REDACTED: sealed copy unreadable>"

// Reasons a sealed copy is stored redacted, the values of
// parley_audit_sealed_unreadable_total's reason label.
const (
	// UnreadableNoKey: a sealed event arrived and no key is configured.
	UnreadableNoKey = "no_key"
	// UnreadableOpen: the box does not open with any configured key (another key sealed
	// it, or it was altered, or it was moved to another event).
	UnreadableOpen = "open"
	// UnreadableParse: the box opened but does not hold an AuditCopy.
	UnreadableParse = "parse"
	// UnreadableRefused: the scrubber refused the copy's texts for themselves (too large).
	UnreadableRefused = "scrub_refused"
)

// sealedCopy is an opened AuditCopy of one event, with the texts to scrub.
type sealedCopy struct {
	ev      *auditv1.ConversationEvent
	copy    *auditv1.AuditCopy
	inputs  []providertext.Ref
	outputs []providertext.Output
	// texts and formats are the inputs' then the outputs' texts to scrub.
	texts   []string
	formats []piiv1.Format
	// results holds the scrubbed texts, index for index with texts, once scrubbed.
	results []*piiv1.ScrubResult
}

// openSealed opens ev's sealed copy, or reports why it cannot be read.
func (in *Ingester) openSealed(ev *auditv1.ConversationEvent) (*sealedCopy, string, error) {
	if len(in.cfg.Openers) == 0 {
		return nil, UnreadableNoKey, errors.New("no seal key configured (AUDIT_SEAL_KEY_FILE)")
	}
	s := ev.GetSealed()
	box := seal.Box{Enc: s.GetEnc(), Nonce: s.GetNonce(), Ciphertext: s.GetCiphertext()}
	aad := []byte(ev.GetRequestId())
	var msg []byte
	var err error
	for _, o := range in.cfg.Openers {
		if msg, err = o.Open(box, aad); err == nil {
			break
		}
	}
	if err != nil {
		return nil, UnreadableOpen, fmt.Errorf("open: %w", err)
	}
	ac := &auditv1.AuditCopy{}
	if err := proto.Unmarshal(msg, ac); err != nil {
		return nil, UnreadableParse, fmt.Errorf("audit copy: %w", err)
	}
	c := &sealedCopy{ev: ev, copy: ac}
	if ac.GetScrubRequest() {
		c.inputs = providertext.Inputs(ac.GetRequest())
		for _, r := range c.inputs {
			c.texts = append(c.texts, r.Text())
			c.formats = append(c.formats, format(r.JSON()))
		}
	}
	if ac.GetScrubResponse() {
		c.outputs = providertext.Outputs(ac.GetResponse())
		for _, o := range c.outputs {
			c.texts = append(c.texts, o.Text)
			c.formats = append(c.formats, format(o.JSON()))
		}
	}
	return c, "", nil
}

func format(isJSON bool) piiv1.Format {
	if isJSON {
		return piiv1.Format_FORMAT_JSON
	}
	return piiv1.Format_FORMAT_TEXT
}

// apply writes the scrubbed texts into the copy, adds the scrub's findings to the event's
// and sets the event's request and response to the copy's.
func (c *sealedCopy) apply() {
	if len(c.texts) > 0 && c.ev.PiiFindings == nil {
		c.ev.PiiFindings = make(map[string]int64)
	}
	texts := make([]string, len(c.results))
	for i, r := range c.results {
		texts[i] = r.GetText()
		for _, f := range r.GetFindings() {
			c.ev.PiiFindings[f.GetEntity()]++
		}
	}
	c.write(texts)
}

// redact writes RedactedText over every text the copy was to have scrubbed.
func (c *sealedCopy) redact() {
	texts := make([]string, len(c.texts))
	for i := range texts {
		texts[i] = RedactedText
	}
	c.write(texts)
}

// write puts texts (the inputs' then the outputs', index for index with c.texts) into
// the copy and sets the event's request and response to the copy's.
func (c *sealedCopy) write(texts []string) {
	for i, r := range c.inputs {
		r.Set(texts[i])
	}
	if len(c.outputs) > 0 {
		providertext.SetOutputs(c.copy.GetResponse(), c.outputs, texts[len(c.inputs):], nil)
	}
	c.ev.Request, c.ev.Response, c.ev.Sealed = c.copy.GetRequest(), c.copy.GetResponse(), nil
}

// redactUnreadable gives an event whose sealed copy cannot be read a request, and a
// response when it succeeded, holding only RedactedText.
func redactUnreadable(ev *auditv1.ConversationEvent) {
	ev.Sealed = nil
	ev.Request = &providerv1.Request{Messages: []*providerv1.Message{{
		Role:  providerv1.Role_ROLE_USER,
		Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: RedactedText}}},
	}}}
	ev.Response = nil
	if ev.GetStatus() == auditv1.Status_STATUS_OK {
		ev.Response = &providerv1.Response{Choices: []*providerv1.Choice{{Content: RedactedText}}}
	}
}

// scrubCall is one planned Scrub call: texts of one or more copies.
type scrubCall struct {
	refs  []textRef
	bytes int
}

// textRef is one text of a copy.
type textRef struct {
	copy *sealedCopy
	text int
}

// plan packs the texts of copies into as few calls as the limits allow, in order; a text
// larger than the byte bound goes alone.
func (in *Ingester) plan(copies []*sealedCopy) []scrubCall {
	var calls []scrubCall
	var cur scrubCall
	for _, c := range copies {
		for i, t := range c.texts {
			size := len(t) + textOverhead
			if len(cur.refs) > 0 && (len(cur.refs) >= in.scrubMaxTexts() || cur.bytes+size > in.scrubMaxBytes()) {
				calls = append(calls, cur)
				cur = scrubCall{}
			}
			cur.refs = append(cur.refs, textRef{copy: c, text: i})
			cur.bytes += size
		}
	}
	if len(cur.refs) > 0 {
		calls = append(calls, cur)
	}
	return calls
}

func (in *Ingester) scrubMaxTexts() int {
	if in.cfg.ScrubMaxTexts > 0 {
		return in.cfg.ScrubMaxTexts
	}
	return DefaultScrubMaxTexts
}

func (in *Ingester) scrubMaxBytes() int {
	if in.cfg.ScrubMaxBytes > 0 {
		return in.cfg.ScrubMaxBytes
	}
	return DefaultScrubMaxBytes
}

// errScrubRefused marks a Scrub call the scrubber refused for its texts; retrying the
// same call would fail again.
var errScrubRefused = errors.New("scrubber refused the texts")

// scrubCopies scrubs the texts of every copy and applies the results. Copies in replace
// mode share calls; a copy in tokenize mode has calls of its own, so that its tokens are
// numbered for its conversation alone (one mapping per conversation, as the router's),
// and a call the scrubber refuses for its texts is retried copy by copy, a copy it still
// refuses being redacted. Any other error (the scrubber unreachable or failing) is
// returned with nothing applied: the caller retries the whole batch.
func (in *Ingester) scrubCopies(ctx context.Context, copies []*sealedCopy) error {
	var replace []*sealedCopy
	var refused []*sealedCopy
	for _, c := range copies {
		c.results = nil
		switch {
		case len(c.texts) == 0:
		case c.copy.GetTokenize():
			err := in.scrubTogether(ctx, []*sealedCopy{c}, true)
			if errors.Is(err, errScrubRefused) {
				refused = append(refused, c)
				continue
			}
			if err != nil {
				return err
			}
		default:
			replace = append(replace, c)
		}
	}
	if err := in.scrubTogether(ctx, replace, false); errors.Is(err, errScrubRefused) {
		// Find the copy at fault: each alone.
		for _, c := range replace {
			if c.results != nil {
				continue
			}
			err := in.scrubTogether(ctx, []*sealedCopy{c}, false)
			if errors.Is(err, errScrubRefused) {
				refused = append(refused, c)
				continue
			}
			if err != nil {
				return err
			}
		}
	} else if err != nil {
		return err
	}
	for _, c := range copies {
		if c.results == nil && len(c.texts) > 0 {
			continue // refused, redacted below
		}
		c.apply()
	}
	for _, c := range refused {
		in.unreadable(ctx, c.ev, UnreadableRefused, errScrubRefused)
		c.redact()
	}
	return nil
}

// scrubTogether scrubs the texts of copies in the planned calls. In tokenize mode (one
// copy) each call continues the previous call's mapping. A copy's results are set only
// once all its texts are scrubbed.
func (in *Ingester) scrubTogether(ctx context.Context, copies []*sealedCopy, tokenize bool) error {
	if len(copies) == 0 {
		return nil
	}
	results := make(map[*sealedCopy][]*piiv1.ScrubResult, len(copies))
	var tokens []*piiv1.Token
	for _, call := range in.plan(copies) {
		req := &piiv1.ScrubRequest{Texts: make([]string, len(call.refs)), Formats: make([]piiv1.Format, len(call.refs))}
		if tokenize {
			req.Mode, req.Tokens = piiv1.Mode_MODE_TOKENIZE, tokens
		}
		for i, r := range call.refs {
			req.Texts[i], req.Formats[i] = r.copy.texts[r.text], r.copy.formats[r.text]
		}
		res, err := in.scrub(ctx, req)
		if err != nil {
			return err
		}
		tokens = res.GetTokens() // the original values: held for the next call only
		for i, r := range call.refs {
			if results[r.copy] == nil {
				results[r.copy] = make([]*piiv1.ScrubResult, len(r.copy.texts))
			}
			results[r.copy][r.text] = res.GetResults()[i]
		}
	}
	for c, r := range results {
		c.results = r
	}
	return nil
}

// scrub makes one Scrub call and counts it.
func (in *Ingester) scrub(ctx context.Context, req *piiv1.ScrubRequest) (*piiv1.ScrubResponse, error) {
	if in.cfg.Scrubber == nil {
		return nil, errors.New("no scrubber configured")
	}
	sctx, cancel := context.WithTimeout(ctx, apiTimeout)
	res, err := in.cfg.Scrubber.Scrub(sctx, req)
	cancel()
	if err == nil && len(res.GetResults()) != len(req.GetTexts()) {
		err = fmt.Errorf("%d results for %d texts", len(res.GetResults()), len(req.GetTexts()))
	}
	if err != nil {
		in.m.scrubErrors.Inc()
		switch connect.CodeOf(err) {
		case connect.CodeInvalidArgument, connect.CodeResourceExhausted:
			if ctx.Err() == nil {
				return nil, fmt.Errorf("%w: %w", errScrubRefused, err)
			}
		}
		return nil, fmt.Errorf("scrub: %w", err)
	}
	in.m.scrubTexts.Observe(float64(len(req.GetTexts())))
	return res, nil
}

// unreadable counts and logs a sealed copy stored redacted: the request id and the
// reason, never content.
func (in *Ingester) unreadable(ctx context.Context, ev *auditv1.ConversationEvent, reason string, err error) {
	in.m.sealedUnreadable.WithLabelValues(reason).Inc()
	in.logger.WarnContext(ctx, "sealed audit copy stored redacted", "request_id", ev.GetRequestId(), "reason", reason, "err", err)
}
