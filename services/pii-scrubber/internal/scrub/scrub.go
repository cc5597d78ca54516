// Package scrub detects personally identifiable information (PII) and
// secrets in text and replaces them with Dapr-compatible placeholders such
// as <EMAIL_ADDRESS>, or masks, hashes or tokenizes them.
//
// The detectors are hand-written scanners, not regular expressions: one pass
// over the text looks at each byte a bounded number of times, and every
// detector reads a bounded neighbourhood of its trigger, so the running time
// is linear in the input length whatever the input. Each detector produces
// validated candidates (netip for addresses; Luhn and issuer ranges for
// cards; ISO 13616 lengths, formats and mod 97 for IBANs; the SSA rules for
// social security numbers; libphonenumber metadata for phone numbers;
// Base58Check and Bech32 for Bitcoin addresses; structure rules for secrets)
// with a score. Context words before a candidate raise or lower the score
// ("card" raises a card number, "order" lowers it), and a candidate is kept
// when its score reaches its entity's threshold.
//
// Overlapping candidates are merged into one span that covers all of them
// and carries the entity of the strongest candidate, so a weak or false
// candidate can widen a redaction but never hide a real entity, which is the
// fail-open bug of the library Dapr uses.
//
// Boundary rules treat a placeholder next to a candidate like the word
// characters it replaced, and the scanner skips placeholders, which makes
// scrubbing idempotent: scrubbing the output again changes nothing.
package scrub

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrUnknownEntity is returned when a call names an entity the scrubber does
// not know. The returned error wraps it and names the entity.
var ErrUnknownEntity = errors.New("unknown pii entity")

// ErrNoHashKey is returned by NewCall for ModeHash when the Scrubber has no
// key.
var ErrNoHashKey = errors.New("hash mode needs a key (SCRUBBER_HASH_KEY)")

// ErrBadOption is wrapped by the errors NewCall and New return for invalid
// modes, thresholds or tokens.
var ErrBadOption = errors.New("invalid scrub option")

// DefaultThreshold is the score threshold of an entity the configuration
// does not mention.
const DefaultThreshold = 0.5

// Mode is how a finding is written into the output.
type Mode uint8

const (
	// ModeReplace writes the entity's placeholder, e.g. <EMAIL_ADDRESS>.
	ModeReplace Mode = iota
	// ModeMask writes '*' over each letter and digit; card numbers and
	// IBANs keep their last four.
	ModeMask
	// ModeHash writes <ENTITY:hex>, the hex being a keyed HMAC-SHA-256 of
	// the normalized value, truncated to 64 bits.
	ModeHash
	// ModeTokenize writes numbered placeholders such as <EMAIL_ADDRESS_1>
	// and records the mapping to the original text in the Call.
	ModeTokenize
)

// Finding is one redacted span of the original text.
type Finding struct {
	// Entity is one of the Entity constants.
	Entity string
	// Start and End are byte offsets into the original text, end exclusive.
	// Both fall on UTF-8 boundaries.
	Start, End int
	// Score is the detector's confidence, between 0 and 1.
	Score float64
}

// Result is the outcome of scrubbing one text.
type Result struct {
	// Text is the scrubbed text. When nothing was found it is the input
	// string itself, not a copy.
	Text string
	// Findings are sorted by Start and do not overlap.
	Findings []Finding
}

// Config is a Scrubber's fixed configuration.
type Config struct {
	// Entities is the default entity set of calls that name none; empty
	// means DefaultEntities.
	Entities []string
	// Thresholds maps entity names to score thresholds between 0 and 1;
	// entities not listed use DefaultThreshold.
	Thresholds map[string]float64
	// HashKey is the HMAC key of ModeHash; without it ModeHash is refused.
	HashKey []byte
	// PhoneRegions are the ISO 3166 regions whose national number formats
	// are recognised (numbers written with +country code are recognised
	// for every region); empty means DefaultPhoneRegions.
	PhoneRegions []string
}

// Scrubber detects and redacts PII. It is immutable after New and safe for
// concurrent use; create one and share it.
type Scrubber struct {
	class      [256]uint8 // byte classes for the hot loops
	defaults   entitySet
	thresholds [numEntities]float64
	hashKey    []byte
	phone      *phoneMeta
}

// New returns a Scrubber with the given configuration.
func New(cfg Config) (*Scrubber, error) {
	s := &Scrubber{hashKey: slices.Clone(cfg.HashKey)}
	var err error
	if s.defaults, err = parseEntities(cfg.Entities, defaultSet()); err != nil {
		return nil, err
	}
	for e := range numEntities {
		s.thresholds[e] = DefaultThreshold
	}
	if err := applyThresholds(&s.thresholds, cfg.Thresholds); err != nil {
		return nil, err
	}
	if s.phone, err = newPhoneMeta(cfg.PhoneRegions); err != nil {
		return nil, err
	}
	s.class = byteClasses()
	return s, nil
}

func applyThresholds(dst *[numEntities]float64, src map[string]float64) error {
	for name, v := range src {
		e, ok := entityOf(name)
		if !ok {
			return fmt.Errorf("threshold: %w: %q", ErrUnknownEntity, name)
		}
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("%w: threshold of %s must be between 0 and 1, got %v", ErrBadOption, name, v)
		}
		dst[e] = v
	}
	return nil
}

// CheckEntities reports whether every name is a known entity.
func CheckEntities(names []string) error {
	_, err := parseEntities(names, 0)
	return err
}

// CheckThresholds reports whether every key is a known entity and every
// value lies between 0 and 1.
func CheckThresholds(thresholds map[string]float64) error {
	var dst [numEntities]float64
	return applyThresholds(&dst, thresholds)
}

// DefaultEntities returns the scrubber's default entity set, in a new slice.
func (s *Scrubber) DefaultEntities() []string {
	var out []string
	for e := range numEntities {
		if s.defaults.has(e) {
			out = append(out, e.name())
		}
	}
	return out
}

// Scrub replaces the requested entities in text with their placeholders. An
// empty entities list means the scrubber's default set. An unknown name
// gives an error wrapping ErrUnknownEntity.
func (s *Scrubber) Scrub(text string, entities []string) (Result, error) {
	set, err := parseEntities(entities, s.defaults)
	if err != nil {
		return Result{}, err
	}
	c := Call{s: s, set: set, thr: s.thresholds}
	return c.Scrub(text), nil
}

// Options are the settings of one call.
type Options struct {
	// Entities to look for; empty means the scrubber's default set.
	Entities []string
	// Mode is how findings are written.
	Mode Mode
	// Thresholds override the scrubber's for the listed entities.
	Thresholds map[string]float64
	// Tokens is the mapping of an earlier tokenize call of the same
	// conversation (ModeTokenize only): values found again reuse their
	// token and new tokens continue the numbering.
	Tokens []Token
}

// Call applies one set of Options to any number of texts. In ModeTokenize
// it holds the mapping shared by those texts, so it is not safe for
// concurrent use; otherwise it only reads.
type Call struct {
	s    *Scrubber
	set  entitySet
	thr  [numEntities]float64
	mode Mode
	tok  *tokenizer
	// steps, when set, accumulates the scanner's work counter
	// (scanner.steps) over the call's scans; tests use it to prove the
	// scan linear by counting instead of timing.
	steps *int
}

// NewCall validates opts and returns a Call.
func (s *Scrubber) NewCall(opts Options) (*Call, error) {
	set, err := parseEntities(opts.Entities, s.defaults)
	if err != nil {
		return nil, err
	}
	c := &Call{s: s, set: set, thr: s.thresholds, mode: opts.Mode}
	if err := applyThresholds(&c.thr, opts.Thresholds); err != nil {
		return nil, err
	}
	switch opts.Mode {
	case ModeReplace, ModeMask:
	case ModeHash:
		if len(s.hashKey) == 0 {
			return nil, ErrNoHashKey
		}
	case ModeTokenize:
		c.tok = newTokenizer()
		if err := c.tok.seed(opts.Tokens); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: mode %d", ErrBadOption, opts.Mode)
	}
	if len(opts.Tokens) > 0 && opts.Mode != ModeTokenize {
		return nil, fmt.Errorf("%w: tokens are only accepted in tokenize mode", ErrBadOption)
	}
	return c, nil
}

// Reserve marks the numbered placeholders that text already contains as
// taken, so that no token of this call can be confused with text the caller
// wrote (a "spoofed" placeholder is never restored to a real value). Call it
// for every text of the call before scrubbing any. It does nothing outside
// ModeTokenize.
func (c *Call) Reserve(text string) {
	if c.tok != nil {
		c.tok.reserve(text)
	}
}

// Tokens returns the call's token mapping in order of first use (with the
// seeded tokens first), in a new slice; nil outside ModeTokenize.
func (c *Call) Tokens() []Token {
	if c.tok == nil {
		return nil
	}
	return slices.Clone(c.tok.list)
}

// Scrub scrubs one text.
func (c *Call) Scrub(text string) Result {
	var arr [16]candidate
	spans, _ := c.find(text, false, arr[:0])
	return c.result(text, spans)
}

// result replaces the spans of text by their placeholders.
func (c *Call) result(text string, spans []candidate) Result {
	if len(spans) == 0 {
		return Result{Text: text}
	}
	findings := make([]Finding, len(spans))
	for i, sp := range spans {
		findings[i] = Finding{Entity: sp.ent.name(), Start: sp.start, End: sp.end, Score: sp.score}
	}
	var b strings.Builder
	b.Grow(len(text) + 16*len(spans))
	prev := 0
	for _, sp := range spans {
		b.WriteString(text[prev:sp.start])
		c.write(&b, text[sp.start:sp.end], sp.ent)
		prev = sp.end
	}
	b.WriteString(text[prev:])
	return Result{Text: b.String(), Findings: findings}
}

// find appends the merged spans of text to dst, which keeps the scanner
// on the stack. With partial set the text may continue: pending is then the
// start of the earliest candidate whose decision needs text beyond the end
// (len(text) when there is none).
func (c *Call) find(text string, partial bool, dst []candidate) (spans []candidate, pending int) {
	return c.findFrom(text, partial, 0, dst)
}

// Scores of the detectors before context. Merging uses them to label a
// span covered by candidates of different entities.
const (
	scoreEmail         = 1.0
	scoreEmailEncoded  = 0.9 // the '@' written as %40
	scoreCard          = 0.9 // Luhn and a known issuer range
	scoreCardLabelled  = 0.6 // Luhn, no known issuer range, after a card word
	scoreIBAN          = 1.0
	scoreIP            = 0.9
	scoreSSN           = 0.85
	scoreSSNSpaced     = 0.6
	scoreMAC           = 0.8
	scoreCrypto        = 1.0
	scoreSecret        = 0.95
	scoreSecretAssign  = 0.8
	scoreSecretPaired  = 0.8 // 40 base64 characters after an AWS access key id on its line
	scoreCountryID     = 0.75
	scoreCountryIDBare = 0.45
)

// candidate is a validated match before merging.
type candidate struct {
	start, end int
	score      float64
	ent        entity
}

// merge sorts the candidates and folds every group of overlapping ones into a
// single span covering their union, labelled with the best of them (highest
// score, then longest). Covering the union means no byte of any validated
// candidate survives, whichever candidate wins the label. It works in place.
func merge(cs []candidate) []candidate {
	slices.SortFunc(cs, func(a, b candidate) int {
		if a.start != b.start {
			return cmp.Compare(a.start, b.start)
		}
		return cmp.Compare(b.end, a.end)
	})
	out := cs[:0]
	cur, best := cs[0], cs[0]
	for _, c := range cs[1:] {
		if c.start < cur.end {
			cur.end = max(cur.end, c.end)
			if c.score > best.score || (c.score == best.score && c.end-c.start > best.end-best.start) {
				best = c
			}
			continue
		}
		out = append(out, candidate{start: cur.start, end: cur.end, score: best.score, ent: best.ent})
		cur, best = c, c
	}
	return append(out, candidate{start: cur.start, end: cur.end, score: best.score, ent: best.ent})
}
