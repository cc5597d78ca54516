// Package scrub detects personally identifiable information (PII) in text and
// replaces it with Dapr-compatible placeholders such as <EMAIL_ADDRESS>.
//
// The detectors are hand-written scanners, not regular expressions: every
// byte of the input is looked at a bounded number of times, so the running
// time is linear in the input length whatever the input. Each detector
// produces validated candidates (netip for addresses, Luhn and issuer ranges
// for cards, the SSA rules for social security numbers, structure and
// boundary rules for phone numbers). Overlapping candidates are merged into
// one span that covers all of them and carries the entity of the strongest
// candidate, so a weak or false candidate can widen a redaction but never
// hide a real entity, which is the fail-open bug of the library Dapr uses.
//
// Boundary rules treat a placeholder next to a candidate like the word
// characters it replaced, which makes scrubbing idempotent: scrubbing the
// output again changes nothing.
package scrub

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Entity names accepted by Scrub and reported in findings. They are the names
// used in Dapr's placeholders.
const (
	// EntityEmail is an e-mail address, replaced by <EMAIL_ADDRESS>.
	EntityEmail = "EMAIL_ADDRESS"
	// EntityPhone is a telephone number, replaced by <PHONE_NUMBER>.
	EntityPhone = "PHONE_NUMBER"
	// EntityIP is an IPv4 or IPv6 address, replaced by <IP>.
	EntityIP = "IP"
	// EntityCreditCard is a payment card number, replaced by <CREDIT_CARD>.
	EntityCreditCard = "CREDIT_CARD"
	// EntityUSSSN is a formatted US social security number, replaced by <US_SSN>.
	EntityUSSSN = "US_SSN"
)

// ErrUnknownEntity is returned by Scrub when asked for an entity it does not
// know. The returned error wraps it and names the entity.
var ErrUnknownEntity = errors.New("unknown pii entity")

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

// Scrubber detects and redacts PII. It is immutable after New and safe for
// concurrent use; create one and share it.
type Scrubber struct {
	class [256]uint8 // byte classes for the hot loops
}

// New returns a Scrubber that knows every entity listed by Entities.
func New() *Scrubber {
	s := &Scrubber{}
	for c := 0; c < 256; c++ {
		b := byte(c)
		var k uint8
		if isDigit(b) || b == '@' || b == ':' || b == '+' || b == '(' {
			k |= clsTrigger
		}
		if isAlnum(b) || b == '.' || b == '_' || b == '%' || b == '+' || b == '-' {
			k |= clsLocal
		}
		if isDigit(b) || ('a' <= b && b <= 'f') || ('A' <= b && b <= 'F') || b == ':' || b == '.' {
			k |= clsV6
		}
		s.class[c] = k
	}
	return s
}

// Entities returns the names of the entities Scrub detects, in a new slice.
// They are also the default set used when Scrub is given none.
func Entities() []string {
	return []string{EntityEmail, EntityPhone, EntityIP, EntityCreditCard, EntityUSSSN}
}

// Scrub finds the requested entities in text and replaces each with its
// placeholder. An empty entities list means all of Entities. An unknown name
// gives an error wrapping ErrUnknownEntity.
func (s *Scrubber) Scrub(text string, entities []string) (Result, error) {
	set, err := parseEntities(entities)
	if err != nil {
		return Result{}, err
	}
	sc := scanner{class: &s.class, text: text, set: set}
	sc.run()
	cands := sc.candidates()
	if len(cands) == 0 {
		return Result{Text: text}, nil
	}
	spans := merge(cands)
	findings := make([]Finding, len(spans))
	for i, c := range spans {
		findings[i] = Finding{Entity: c.ent.name(), Start: c.start, End: c.end, Score: c.score}
	}
	return Result{Text: render(text, spans), Findings: findings}, nil
}

// entity is the internal code of an entity.
type entity uint8

const (
	entEmail entity = iota
	entPhone
	entIP
	entCard
	entSSN
)

// entitySet is a bit set of entities.
type entitySet uint8

const allEntities entitySet = 1<<entEmail | 1<<entPhone | 1<<entIP | 1<<entCard | 1<<entSSN

func (s entitySet) has(e entity) bool { return s&(1<<e) != 0 }

func (e entity) name() string {
	switch e {
	case entEmail:
		return EntityEmail
	case entPhone:
		return EntityPhone
	case entIP:
		return EntityIP
	case entCard:
		return EntityCreditCard
	default:
		return EntityUSSSN
	}
}

func (e entity) placeholder() string {
	switch e {
	case entEmail:
		return "<EMAIL_ADDRESS>"
	case entPhone:
		return "<PHONE_NUMBER>"
	case entIP:
		return "<IP>"
	case entCard:
		return "<CREDIT_CARD>"
	default:
		return "<US_SSN>"
	}
}

func parseEntities(names []string) (entitySet, error) {
	if len(names) == 0 {
		return allEntities, nil
	}
	var set entitySet
	for _, n := range names {
		var e entity
		switch n {
		case EntityEmail:
			e = entEmail
		case EntityPhone:
			e = entPhone
		case EntityIP:
			e = entIP
		case EntityCreditCard:
			e = entCard
		case EntityUSSSN:
			e = entSSN
		default:
			return 0, fmt.Errorf("%w: %q", ErrUnknownEntity, n)
		}
		set |= 1 << e
	}
	return set, nil
}

// Scores of the detectors. Merging uses them to label a span covered by
// candidates of different entities.
const (
	scoreEmail         = 1.0
	scoreCard          = 1.0 // Luhn and a known issuer range
	scoreIP            = 0.9
	scorePhoneIntl     = 0.85 // explicit +country code
	scoreSSN           = 0.85
	scorePhoneNational = 0.7
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

// render replaces the sorted, disjoint spans with their placeholders.
func render(text string, spans []candidate) string {
	size := len(text)
	for _, c := range spans {
		size += len(c.ent.placeholder()) - (c.end - c.start)
	}
	var b strings.Builder
	b.Grow(size)
	prev := 0
	for _, c := range spans {
		b.WriteString(text[prev:c.start])
		b.WriteString(c.ent.placeholder())
		prev = c.end
	}
	b.WriteString(text[prev:])
	return b.String()
}
