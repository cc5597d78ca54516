package scrub

import (
	"unicode"
	"unicode/utf8"
)

// Byte classes stored in Scrubber.class.
const (
	clsTrigger uint8 = 1 << iota // may start or anchor a candidate: digit @ : + ( < = - %
	clsLocal                     // ASCII byte allowed in an e-mail local part
	clsV6                        // hex digit, ':' or '.', the bytes of an IPv6 token
	clsWord                      // may start a word-shaped entity: digits and some letters
	clsB58                       // a character of Bitcoin's Base58 alphabet
	clsLetter                    // an ASCII letter
)

// byteClasses builds the class table of the hot loops.
func byteClasses() [256]uint8 {
	var class [256]uint8
	for c := range 256 {
		b := byte(c)
		var k uint8
		switch {
		case isDigit(b):
			k |= clsTrigger | clsWord
		case b == '@' || b == ':' || b == '+' || b == '(' || b == '<' || b == '=' || b == '-' || b == '%':
			k |= clsTrigger
		}
		if isAlnum(b) || b == '.' || b == '_' || b == '%' || b == '+' || b == '-' {
			k |= clsLocal
		}
		if isHex(b) || b == ':' || b == '.' {
			k |= clsV6
		}
		if isHex(b) || wordStartLetter(b) {
			k |= clsWord
		}
		if isAlnum(b) && b != '0' && b != 'O' && b != 'I' && b != 'l' {
			k |= clsB58
		}
		if isAlpha(b) {
			k |= clsLetter
		}
		class[c] = k
	}
	return class
}

// wordStartLetter reports whether a word-shaped entity may start with the
// letter b: the first letters of the secret prefixes, Bitcoin's bc1, the
// NIE's X, Y and Z, and "Bearer". Hex letters (MAC addresses) are added by
// byteClasses.
func wordStartLetter(b byte) bool {
	switch b {
	case 'A', 'B', 'b', 'e', 'g', 'h', 'n', 'r', 's', 'x', 'S', 'X', 'Y', 'Z':
		return true
	}
	return false
}

// scanner holds the state of one scan. It lives on the caller's stack:
// candidates go to the fixed buf, and only a text with more candidates than
// buf holds allocates.
type scanner struct {
	class   *[256]uint8
	phone   *phoneMeta
	thr     [numEntities]float64 // by value: a pointer would move the Call to the heap
	text    string
	key     string // the object key of a JSON string value: context before the text
	set     entitySet
	partial bool // the text may continue after its end (streams)
	pending int  // see Call.find
	n       int  // candidates in buf
	buf     [16]candidate
	more    []candidate // all candidates, once buf has overflowed
	digits  digitRun    // scratch space of number
	tokDone int         // end of the last token examined for secrets
	intlEnd int         // end of the last international phone number found
	lastEnd int         // end of the candidates found so far
	pemEnd  int         // position of the next "-----END " at or after a BEGIN, or -1
	steps   int         // work done, see run
}

// add records a candidate whose score reaches its entity's threshold.
func (sc *scanner) add(start, end int, ent entity, score float64) {
	if score > 1 {
		score = 1
	}
	if !sc.set.has(ent) || score < sc.thr[ent] || score <= 0 || start >= end {
		return
	}
	c := candidate{start: start, end: end, ent: ent, score: score}
	sc.lastEnd = max(sc.lastEnd, end)
	if sc.more == nil {
		if sc.n < len(sc.buf) {
			sc.buf[sc.n] = c
			sc.n++
			return
		}
		sc.more = make([]candidate, len(sc.buf), max(4*len(sc.buf), len(sc.text)/32))
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
// the detectors run at trigger bytes and at the starts of words, and each
// reads a bounded neighbourhood, or a region no other trigger reads again,
// so the pass is linear.
//
// steps counts that work, so tests can prove it linear without a clock:
// one per iteration of the pass and per byte a detector walks over (its
// loops over the text, and the slices it hands to a parser). Look-ups of
// a fixed size, such as a boundary's neighbour or a placeholder, count as
// part of the step that made them. Counting costs an addition per walk.
func (sc *scanner) run() {
	t := sc.text
	set := sc.set
	wantNum := set.hasAny(entPhone, entIP, entCard, entSSN, entIBAN, entNHS, entSIN, entNIF, entAadhaar, entCrypto, entMAC)
	wantV6 := set.hasAny(entIP, entMAC)
	wantEmail := set.has(entEmail)
	wantSecret := set.has(entSecret)
	wantWord := set.hasAny(entMAC, entCrypto, entSecret, entNIF)
	sc.pemEnd = -1
	v6done := 0 // end of the last IPv6 token examined
	steps := 0
	for i := 0; i < len(t); i++ {
		steps++
		c := t[i]
		k := sc.class[c]
		if k&(clsTrigger|clsWord|clsLetter) == 0 {
			continue
		}
		if k&clsLetter != 0 {
			// A word: only its start can start an entity.
			if k&clsWord != 0 && wantWord && (i == 0 || !isWordByte(t[i-1])) {
				sc.word(i)
			}
			j := i
			for i+1 < len(t) && sc.class[t[i+1]]&clsLetter != 0 {
				i++
			}
			steps += i - j
			continue
		}
		if isDigit(c) {
			// A run of digits: only its first digit starts a number.
			if wantWord && (i == 0 || !isWordByte(t[i-1])) {
				sc.word(i)
			}
			if wantNum {
				sc.number(i)
			}
			j := i
			for i+1 < len(t) && isDigit(t[i+1]) {
				i++
			}
			steps += i - j
			continue
		}
		switch c {
		case '<':
			if end := placeholderAt(t, i); end > 0 {
				steps += end - 1 - i
				i = end - 1 // nothing inside a placeholder is text
			}
		case '@':
			if wantSecret && sc.urlPassword(i) {
				continue
			}
			if wantEmail {
				sc.email(i)
			}
		case ':':
			if wantV6 && i >= v6done {
				v6done = sc.ipv6(i)
			}
			if wantSecret {
				sc.assignment(i)
			}
		case '=':
			if wantSecret {
				sc.assignment(i)
			}
		case '-':
			if wantSecret && i+1 < len(t) && t[i+1] == '-' {
				i = sc.pem(i)
			}
		case '%':
			if wantEmail && i+3 < len(t) && t[i+1] == '4' && t[i+2] == '0' {
				sc.emailEncoded(i)
			}
		default:
			if wantNum {
				sc.number(i)
			}
		}
	}
	sc.steps += steps
}

func isDigit(c byte) bool { return c-'0' < 10 }

func isAlpha(c byte) bool { return (c|0x20)-'a' < 26 }

func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

func isHex(c byte) bool { return isDigit(c) || (c|0x20)-'a' < 6 }

// isWordByte reports whether c belongs to a word for the purpose of finding
// word starts: ASCII letters, digits, '_' and every byte of a multi-byte
// character (so a letter after "é" is not a word start).
func isWordByte(c byte) bool { return isAlnum(c) || c == '_' || c >= utf8.RuneSelf }

// isWordRune reports whether r belongs to a word for the boundary rules:
// letters, digits and marks, except the scripts written without spaces
// (Han, kana, Hangul, Thai), where a number follows a word directly:
// 電話番号は03-1234-5678です.
func isWordRune(r rune) bool {
	return isLabelRune(r) && !unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul, unicode.Thai)
}

// isLabelRune reports whether r may appear in a domain label or a word:
// letters, digits, marks.
func isLabelRune(r rune) bool {
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

// tokenLeftOK is the left boundary of word-shaped entities (MAC, crypto,
// secrets) starting at s: no word character, placeholder or token glue
// ('-', '.', '/', '+') attached to a word before.
func (sc *scanner) tokenLeftOK(s int) bool {
	if s == 0 {
		return true
	}
	t := sc.text
	if sc.wordBefore(s) || placeholderEndsAt(t, s) {
		return false
	}
	switch t[s-1] {
	case '-', '.', '/', '+':
		return s < 2 || (!sc.wordBefore(s-1) && !placeholderEndsAt(t, s-1))
	}
	return true
}

// tokenRightOK is the right boundary of word-shaped entities ending at e.
func (sc *scanner) tokenRightOK(e int) bool {
	t := sc.text
	if e >= len(t) {
		return true
	}
	if sc.wordAt(e) || placeholderStartsAt(t, e) {
		return false
	}
	switch t[e] {
	case '-', '/', '+':
		return e+1 >= len(t) || (!sc.wordAt(e+1) && !placeholderStartsAt(t, e+1))
	case '.':
		return e+1 >= len(t) || (!isAlnum(t[e+1]) && !placeholderStartsAt(t, e+1))
	}
	return true
}
