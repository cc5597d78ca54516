package scrub

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Byte classes stored in Scrubber.class.
const (
	clsTrigger uint8 = 1 << iota // may start or anchor a candidate: digit @ : + (
	clsLocal                     // ASCII byte allowed in an e-mail local part
	clsV6                        // hex digit, ':' or '.', the bytes of an IPv6 token
)

// scanner holds the state of one Scrub call. It lives on the caller's stack:
// candidates go to the fixed buf, and only a text with more candidates than
// buf holds allocates.
type scanner struct {
	class  *[256]uint8
	text   string
	set    entitySet
	n      int // candidates in buf
	buf    [16]candidate
	more   []candidate // all candidates, once buf has overflowed
	digits digitRun    // scratch space of number
}

func (sc *scanner) add(start, end int, ent entity, score float64) {
	c := candidate{start: start, end: end, ent: ent, score: score}
	if sc.more == nil {
		if sc.n < len(sc.buf) {
			sc.buf[sc.n] = c
			sc.n++
			return
		}
		sc.more = make([]candidate, len(sc.buf), 4*len(sc.buf))
		copy(sc.more, sc.buf[:])
	}
	sc.more = append(sc.more, c)
}

// candidates returns the candidates found so far.
func (sc *scanner) candidates() []candidate {
	if sc.more != nil {
		return sc.more
	}
	return sc.buf[:sc.n]
}

// run makes one pass over the text. Most bytes only cost a table look-up;
// the detectors run at trigger bytes and each reads a bounded neighbourhood,
// or a region no other trigger reads again, so the pass is linear.
func (sc *scanner) run() {
	t := sc.text
	wantNum := sc.set&(1<<entPhone|1<<entIP|1<<entCard|1<<entSSN) != 0
	wantV6 := sc.set.has(entIP)
	wantEmail := sc.set.has(entEmail)
	v6done := 0 // end of the last IPv6 token examined
	for i := 0; i < len(t); i++ {
		c := t[i]
		if sc.class[c]&clsTrigger == 0 {
			continue
		}
		switch c {
		case '@':
			if wantEmail {
				sc.email(i)
			}
		case ':':
			if wantV6 && i >= v6done {
				v6done = sc.ipv6(i)
			}
		default:
			if wantNum {
				sc.number(i)
			}
		}
	}
}

func isDigit(c byte) bool { return c-'0' < 10 }

func isAlpha(c byte) bool { return (c|0x20)-'a' < 26 }

func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// isWordRune reports whether r belongs to a word: letters, digits, marks.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

// wordAt reports whether the character starting at byte i is a word character
// (a letter, digit, mark or '_').
func (sc *scanner) wordAt(i int) bool {
	c := sc.text[i]
	if c < utf8.RuneSelf {
		return isAlnum(c) || c == '_'
	}
	r, _ := utf8.DecodeRuneInString(sc.text[i:])
	return isWordRune(r)
}

// wordBefore reports whether the character ending at byte i (exclusive) is a
// word character. i must be positive.
func (sc *scanner) wordBefore(i int) bool {
	c := sc.text[i-1]
	if c < utf8.RuneSelf {
		return isAlnum(c) || c == '_'
	}
	r, _ := utf8.DecodeLastRuneInString(sc.text[:i])
	return isWordRune(r)
}

// letterBefore is wordBefore without digits.
func (sc *scanner) letterBefore(i int) bool {
	c := sc.text[i-1]
	if c < utf8.RuneSelf {
		return isAlpha(c) || c == '_'
	}
	r, _ := utf8.DecodeLastRuneInString(sc.text[:i])
	return unicode.IsLetter(r) || unicode.IsMark(r)
}

// The boundary rules below decide whether a candidate is a token of its own
// or a piece of something larger (a word, a hex id, a dotted version, a dashed
// reference). A placeholder next to a candidate counts as the word characters
// it replaced: once a neighbour has been replaced, a candidate it used to
// block stays blocked, which keeps scrubbing idempotent. Other markup, such
// as <td>555-123-4567</td>, is ordinary punctuation.

// placeholderEndsAt reports whether one of the placeholders ends at byte i.
func placeholderEndsAt(t string, i int) bool {
	if i == 0 || t[i-1] != '>' {
		return false
	}
	for e := entEmail; e <= entSSN; e++ {
		if strings.HasSuffix(t[:i], e.placeholder()) {
			return true
		}
	}
	return false
}

// placeholderStartsAt reports whether one of the placeholders starts at byte i.
func placeholderStartsAt(t string, i int) bool {
	if i >= len(t) || t[i] != '<' {
		return false
	}
	for e := entEmail; e <= entSSN; e++ {
		if strings.HasPrefix(t[i:], e.placeholder()) {
			return true
		}
	}
	return false
}

// numLeftOK is the left boundary of phone numbers, cards and SSNs starting at s.
func (sc *scanner) numLeftOK(s int) bool {
	if s == 0 {
		return true
	}
	t := sc.text
	c := t[s-1]
	if c >= utf8.RuneSelf {
		r, _ := utf8.DecodeLastRuneInString(t[:s])
		return !isWordRune(r) && !unicode.Is(unicode.Sc, r) // € £ ¥: an amount
	}
	switch {
	case isAlnum(c) || c == '_' || c == '$' || placeholderEndsAt(t, s):
		return false
	case c == '-': // the tail of a dashed id such as ab12-555-123-4567
		return s < 2 || (!sc.wordBefore(s-1) && !placeholderEndsAt(t, s-1))
	case c == '.': // the tail of a dotted number such as 1.555.123.4567
		return s < 2 || (!isDigit(t[s-2]) && !placeholderEndsAt(t, s-1))
	}
	return true
}

// numRightOK is the right boundary of phone numbers, cards and SSNs ending at e.
func (sc *scanner) numRightOK(e int) bool {
	t := sc.text
	if e >= len(t) {
		return true
	}
	c := t[e]
	if sc.wordAt(e) || placeholderStartsAt(t, e) {
		return false
	}
	if e+1 < len(t) {
		switch c {
		case '-':
			return !sc.wordAt(e+1) && !placeholderStartsAt(t, e+1)
		case '.':
			return !isDigit(t[e+1]) && !placeholderStartsAt(t, e+1)
		}
	}
	return true
}

// ipLeftOK is the left boundary of an IP address starting at s. Unlike
// numLeftOK it accepts a dash after a digit, as in 10.0.0.1-10.0.0.9.
func (sc *scanner) ipLeftOK(s int) bool {
	if s == 0 {
		return true
	}
	t := sc.text
	if sc.wordBefore(s) || placeholderEndsAt(t, s) {
		return false
	}
	switch t[s-1] {
	case '.': // 1.2.3.4.5 must not yield 2.3.4.5
		return s < 2 || (!isDigit(t[s-2]) && !placeholderEndsAt(t, s-1))
	case '-':
		return s < 2 || (!sc.letterBefore(s-1) && !placeholderEndsAt(t, s-1))
	}
	return true
}

// ipRightOK is the right boundary of an IP address ending at e.
func (sc *scanner) ipRightOK(e int) bool {
	t := sc.text
	if e >= len(t) {
		return true
	}
	if sc.wordAt(e) || placeholderStartsAt(t, e) {
		return false
	}
	if t[e] == '.' && e+1 < len(t) && (isDigit(t[e+1]) || placeholderStartsAt(t, e+1)) {
		return false
	}
	return true
}
