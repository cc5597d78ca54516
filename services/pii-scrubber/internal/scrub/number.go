package scrub

import "net/netip"

// maxDigits bounds the digits read from one start: 19 is the longest card
// number, and nothing this package detects in digit groups is longer. It
// also bounds the work per start, which keeps the scan linear.
const maxDigits = 19

// sepKind is the separator between two digit groups.
type sepKind uint8

const (
	sepNone   sepKind = iota
	sepSpace          // ' ', U+00A0, U+202F
	sepHyphen         // '-'
	sepDash           // U+2010..U+2013, hyphen look-alikes
	sepDot            // '.'
	sepSlash          // '/', as in 030/1234567
)

// class folds the hyphen look-alikes into sepHyphen.
func (k sepKind) class() sepKind {
	if k == sepDash {
		return sepHyphen
	}
	return k
}

// sepAt returns the separator at byte i and its width, or sepNone and 0.
func sepAt(t string, i int) (sepKind, int) {
	if i >= len(t) {
		return sepNone, 0
	}
	switch t[i] {
	case ' ':
		return sepSpace, 1
	case '-':
		return sepHyphen, 1
	case '.':
		return sepDot, 1
	case '/':
		return sepSlash, 1
	case 0xC2: // U+00A0 no-break space
		if i+1 < len(t) && t[i+1] == 0xA0 {
			return sepSpace, 2
		}
	case 0xE2:
		if i+2 < len(t) && t[i+1] == 0x80 {
			switch t[i+2] {
			case 0xAF: // U+202F narrow no-break space
				return sepSpace, 3
			case 0x90, 0x91, 0x92, 0x93: // hyphen, non-breaking hyphen, figure dash, en dash
				return sepDash, 3
			}
		}
	}
	return sepNone, 0
}

// sepBefore returns the space or hyphen separator ending at byte i, if any.
func sepBefore(t string, i int) (sepKind, int) {
	for w := 1; w <= 3 && w <= i; w++ {
		if k, kw := sepAt(t, i-w); kw == w && (k == sepSpace || k.class() == sepHyphen) {
			return k, w
		}
	}
	return sepNone, 0
}

// group is one run of digits, possibly in parentheses.
type group struct {
	start, end int     // the digits
	close      int     // end including a closing ')'
	paren      bool    // written as (digits)
	sep        sepKind // separator before the group; sepNone for the first or after ')'
}

func (g *group) len() int { return g.end - g.start }

// digitRun is the parse of digit groups from one start position. Only
// groups[:ng] and the digits they hold are meaningful, so one value is
// reused for every start without clearing.
type digitRun struct {
	start  int  // first byte: a digit, '+' or '('
	plus   bool // starts with '+'
	ng     int
	groups [maxDigits]group
	cum    [maxDigits]int // digits in groups[0..k]
	digits [maxDigits]byte
}

// parse reads digit groups joined by single separators, up to maxDigits
// digits. A group may be parenthesised, and "(555)123" needs no separator.
// It returns the position where it stopped reading.
func (d *digitRun) parse(t string) int {
	n := len(t)
	pos := d.start
	if d.plus {
		pos++
	}
	sep := sepNone
	nd := 0
	for d.ng < len(d.groups) {
		paren := pos < n && t[pos] == '('
		if paren {
			pos++
		}
		ds := pos
		for pos < n && isDigit(t[pos]) && pos-ds <= maxDigits {
			pos++
		}
		de := pos
		if de == ds || nd+de-ds > maxDigits {
			return pos
		}
		if de-ds == 1 && d.ng >= 4 && !d.plus {
			// No national pattern uses a fifth group of one digit (cards
			// and trunk numbers need two or more); stopping here keeps
			// runs like "1 2 3 4 5 6 ..." cheap.
			return pos
		}
		if paren {
			if pos >= n || t[pos] != ')' {
				return pos
			}
			pos++
		}
		nd += copy(d.digits[nd:], t[ds:de])
		d.groups[d.ng] = group{start: ds, end: de, close: pos, paren: paren, sep: sep}
		d.cum[d.ng] = nd
		d.ng++

		k, w := sepAt(t, pos)
		if w == 0 {
			if paren && pos < n && isDigit(t[pos]) {
				sep = sepNone
				continue
			}
			return pos
		}
		next := pos + w
		if next < n && (isDigit(t[next]) || (t[next] == '(' && next+1 < n && isDigit(t[next+1]))) {
			sep, pos = k, next
			continue
		}
		return pos
	}
	return pos
}

// number runs the digit-based detectors (phone, card, SSN, IPv4, IBAN and
// the country identifiers) from byte s, which is a digit, '+' or '('. Only
// the first digit of a run is a start, so each start reads at most
// maxDigits digit groups: linear overall.
func (sc *scanner) number(s int) {
	t := sc.text
	c := t[s]
	if isDigit(c) {
		if s > 0 && isDigit(t[s-1]) {
			return
		}
		if s >= 2 && isAlpha(t[s-1]) && isAlpha(t[s-2]) && (s == 2 || !isWordByte(t[s-3])) && !placeholderEndsAt(t, s-2) && sc.set.has(entIBAN) {
			sc.iban(s - 2)
		}
		// Fast path: a run of fewer than eight digits that no separator
		// continues (a year, a count, a time) is no entity: every number
		// this package detects has eight digits or more, or groups.
		e := s + 1
		for e < len(t) && e-s < 8 && isDigit(t[e]) {
			e++
		}
		sc.steps += e - s
		if e-s < 8 && (e == len(t) || !mayContinue(t[e])) {
			return
		}
	} else if s+1 >= len(t) || !isDigit(t[s+1]) {
		return // '+' and '(' must be followed by a digit
	}
	numOK := sc.numLeftOK(s)
	ipOK := isDigit(c) && sc.set.has(entIP) && sc.ipLeftOK(s)
	if !numOK && !ipOK {
		return
	}
	d := &sc.digits
	d.start, d.plus, d.ng = s, c == '+', 0
	sc.steps += d.parse(t) - s
	if d.ng == 0 {
		return
	}
	if ipOK {
		sc.ipv4(d)
	}
	if !numOK {
		return
	}
	if d.plus {
		if sc.set.has(entPhone) {
			sc.phoneIntl(d)
		}
		return
	}
	if sc.set.has(entSSN) {
		sc.ssn(d)
	}
	if sc.set.has(entCard) {
		sc.card(d)
	}
	if sc.set.has(entPhone) && d.start >= sc.intlEnd {
		// The national part of "+1 (555) 123-4567" is covered already.
		sc.phoneNational(d)
	}
	if sc.set.hasAny(entNHS, entSIN, entAadhaar, entNIF) {
		sc.countryIDs(d)
	}
}

// mayContinue reports whether byte c after a digit run may continue a
// number: a separator (the first byte of U+00A0, U+202F and the dashes
// included) or a parenthesis.
func mayContinue(c byte) bool {
	switch c {
	case ' ', '-', '.', '/', '(', ')', 0xC2, 0xE2:
		return true
	}
	return false
}

// ipv4 accepts four dot-separated groups that netip parses as IPv4 (no
// leading zeros, each at most 255), not followed by another ".digit". The
// score drops after words such as "version" or "build": 1.2.3.4 is as
// often a version as an address.
func (sc *scanner) ipv4(d *digitRun) {
	if d.ng < 4 {
		return
	}
	for k := range 4 {
		g := &d.groups[k]
		if g.paren || g.len() > 3 || (k > 0 && g.sep != sepDot) {
			return
		}
	}
	e := d.groups[3].end
	sc.steps += e - d.start
	if !sc.ipRightOK(e) || !plausibleV4(sc.text[d.start:e]) {
		return
	}
	if a, err := netip.ParseAddr(sc.text[d.start:e]); err == nil && a.Is4() {
		sc.add(d.start, e, entIP, sc.adjust(d.start, entIP, scoreIP))
	}
}

// ssn accepts ddd-dd-dddd, and ddd dd dddd or ddd.dd.dddd with a lower
// score, with the SSA's never-issued numbers excluded: area 000, 666 or
// 900-999, group 00, serial 0000, and the numbers of Presidio's list
// (123-45-6789 excepted: it is the usual example and reads as an SSN).
// The dashed form scores 0.85, the others 0.6 before context.
// Nine bare digits are an SSN only after a context word such as "SSN".
func (sc *scanner) ssn(d *digitRun) {
	g := &d.groups
	x := &d.digits
	switch {
	case d.ng >= 3 && !g[0].paren && !g[1].paren && !g[2].paren && g[0].len() == 3 && g[1].len() == 2 && g[2].len() == 4 &&
		g[1].sep == g[2].sep && (g[1].sep.class() == sepHyphen || g[1].sep == sepSpace || g[1].sep == sepDot):
		if !ssnValid(x[:9]) || !sc.numRightOK(g[2].end) {
			return
		}
		if (d.ng > 3 && g[3].sep == g[2].sep) || sc.placeholderGroupAt(g[2].end) {
			return // more groups: some other grouped number
		}
		// The dashed form is distinctive enough that a context word such as
		// "id" does not outweigh it (Dapr's "order id 123-45-6789" leak);
		// spaced and dotted forms need the context.
		score := scoreSSN
		if g[1].sep.class() != sepHyphen {
			score = sc.adjust(d.start, entSSN, scoreSSNSpaced)
		} else if sc.context(d.start, entSSN) > 0 {
			score = 1
		}
		sc.add(d.start, g[2].end, entSSN, score)
	case d.ng == 1 && g[0].len() == 9 && !g[0].paren:
		if ssnValid(x[:9]) && sc.numRightOK(g[0].end) && sc.context(d.start, entSSN) > 0 {
			sc.add(d.start, g[0].end, entSSN, scoreSSNSpaced+0.1)
		}
	}
}

func ssnValid(x []byte) bool {
	area, grp, serial := string(x[0:3]), string(x[3:5]), string(x[5:9])
	if area == "000" || area == "666" || x[0] == '9' || grp == "00" || serial == "0000" {
		return false
	}
	same := true
	for _, c := range x[1:9] {
		same = same && c == x[0]
	}
	if string(x[:9]) == "078051120" { // the Woolworth wallet card
		return false
	}
	return !same
}

// card accepts 12 to 19 digits, bare or grouped with spaces or dashes (first
// group of four, one separator kind), that pass Luhn and start with a known
// issuer prefix valid for that length. When the whole run fails, a prefix
// of 15 or more digits may stand alone, so a trailing CVV or expiry does not
// hide the number; shorter prefixes may not, or any long grouped number
// would hide a "card" one time in ten. The same holds for a run that
// continues a grouped number written before it (the tail of an IBAN or of a
// longer id): only a full-length card may start there, as in a phone number
// followed by a card number.
func (sc *scanner) card(d *digitRun) {
	g := &d.groups
	if g[0].paren {
		return
	}
	t := sc.text
	// tail: the run continues a grouped number written before it with the
	// same separator (a placeholder stands for what it replaced, digits
	// included). A bare number is never a tail.
	tail := false
	if k, w := sepBefore(t, d.start); k != sepNone && d.ng > 1 && k.class() == g[1].sep.class() && d.start > w &&
		((isDigit(t[d.start-w-1]) && sc.lastEnd != d.start-w) || placeholderEndsAt(t, d.start-w)) {
		tail = true
	}
	last := 0 // the longest prefix of groups with card-like grouping
	if d.ng > 1 && g[0].len() == 4 {
		cls := g[1].sep.class()
		if cls == sepSpace || cls == sepHyphen {
			for k := 1; k < d.ng && !g[k].paren && g[k].sep.class() == cls && g[k].len() >= 2 && g[k].len() <= 8; k++ {
				last = k
			}
		}
	}
	for k := last; k >= 0; k-- {
		sc.steps += d.cum[k]
		nd := d.cum[k]
		if nd < 12 || ((k < last || tail) && nd < 15) {
			return
		}
		if tail && k > 0 && sc.groupAt(g[k].end, g[k].sep.class()) {
			continue // inside a longer grouped number on both sides
		}
		digits := d.digits[:nd]
		if knownIIN(digits) {
			if luhn(digits) && sc.numRightOK(g[k].end) {
				sc.add(d.start, g[k].end, entCard, sc.adjust(d.start, entCard, scoreCard))
				return
			}
		} else if k == last && !tail && luhn(digits) && sc.numRightOK(g[k].end) && sc.labelled(d.start, entCard) {
			// Outside every assigned issuer range (3597..., 07...): a card
			// only as a whole run right after a card word, with a lower score.
			sc.add(d.start, g[k].end, entCard, scoreCardLabelled)
			return
		}
	}
}

// groupAt reports whether a separator of class cls and another digit group
// (or a placeholder standing for one) follow byte e.
func (sc *scanner) groupAt(e int, cls sepKind) bool {
	k, w := sepAt(sc.text, e)
	return k.class() == cls && e+w < len(sc.text) && (isDigit(sc.text[e+w]) || placeholderStartsAt(sc.text, e+w))
}

// placeholderGroupAt reports whether a separator and a placeholder follow
// byte e: the placeholder stands for the digit group it replaced, so a rule
// that refuses a number followed by another group must refuse this too, or
// a second pass would find what the first one left alone.
func (sc *scanner) placeholderGroupAt(e int) bool {
	k, w := sepAt(sc.text, e)
	return k != sepNone && placeholderStartsAt(sc.text, e+w)
}

// groupedAs reports whether the run is exactly the groups of the given
// sizes joined by one space or hyphen kind, or one bare group of their sum.
// It returns the end of the number and whether it was grouped.
func (d *digitRun) groupedAs(sizes ...int) (end int, grouped, ok bool) {
	g := &d.groups
	total := 0
	for _, s := range sizes {
		total += s
	}
	if d.ng >= 1 && !g[0].paren && g[0].len() == total {
		return g[0].end, false, true
	}
	if d.ng < len(sizes) {
		return 0, false, false
	}
	cls := g[1].sep.class()
	if cls != sepSpace && cls != sepHyphen {
		return 0, false, false
	}
	for k, s := range sizes {
		if g[k].paren || g[k].len() != s || (k > 0 && g[k].sep.class() != cls) {
			return 0, false, false
		}
	}
	if d.ng > len(sizes) && g[len(sizes)].sep.class() == cls {
		return 0, false, false // the number goes on
	}
	return g[len(sizes)-1].end, true, true
}

// countryIDs runs the opt-in national identifiers: UK NHS (3-3-4, mod 11),
// Canadian SIN (3-3-3, Luhn), Indian Aadhaar (4-4-4, Verhoeff) and the
// Spanish DNI (8 digits and a check letter).
func (sc *scanner) countryIDs(d *digitRun) {
	x := d.digits[:]
	id := func(e entity, end int, grouped bool, valid bool) {
		if !valid || !sc.numRightOK(end) || (grouped && sc.placeholderGroupAt(end)) {
			return
		}
		score := scoreCountryIDBare
		if grouped {
			score = scoreCountryID
		}
		sc.add(d.start, end, e, sc.adjust(d.start, e, score))
	}
	if sc.set.has(entNHS) {
		if end, grouped, ok := d.groupedAs(3, 3, 4); ok {
			id(entNHS, end, grouped, nhsValid(x[:10]))
		}
	}
	if sc.set.has(entSIN) {
		if end, grouped, ok := d.groupedAs(3, 3, 3); ok {
			id(entSIN, end, grouped, x[0] != '0' && x[0] != '8' && luhn(x[:9]))
		}
	}
	if sc.set.has(entAadhaar) {
		if end, grouped, ok := d.groupedAs(4, 4, 4); ok {
			id(entAadhaar, end, grouped, x[0] >= '2' && verhoeff(x[:12]))
		}
	}
	if sc.set.has(entNIF) && d.ng == 1 && d.groups[0].len() == 8 {
		sc.dni(d.groups[0].start, d.groups[0].end)
	}
}
