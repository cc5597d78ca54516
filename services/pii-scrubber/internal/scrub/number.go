package scrub

import "net/netip"

// maxDigits bounds the digits read from one start: 19 is the longest card
// number, and nothing this package detects is longer. It also bounds the
// work per start, which keeps the scan linear.
const maxDigits = 19

// sepKind is the separator between two digit groups.
type sepKind uint8

const (
	sepNone   sepKind = iota
	sepSpace          // ' ', U+00A0, U+202F
	sepHyphen         // '-'
	sepDash           // U+2010..U+2013, hyphen look-alikes
	sepDot            // '.'
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

// sepBefore returns the space separator ending at byte i, if any.
func sepBefore(t string, i int) (sepKind, int) {
	for w := 1; w <= 3 && w <= i; w++ {
		if k, kw := sepAt(t, i-w); kw == w && k == sepSpace {
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
func (d *digitRun) parse(t string) {
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
			return
		}
		if de-ds == 1 && d.ng >= 4 && !d.plus {
			// No national pattern uses a fifth group of one digit (cards
			// and trunk numbers need two or more); stopping here keeps
			// runs like "1 2 3 4 5 6 ..." cheap.
			return
		}
		if paren {
			if pos >= n || t[pos] != ')' {
				return
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
			return
		}
		next := pos + w
		if next < n && (isDigit(t[next]) || (t[next] == '(' && next+1 < n && isDigit(t[next+1]))) {
			sep, pos = k, next
			continue
		}
		return
	}
}

// number runs the digit-based detectors (phone, card, SSN, IPv4) from byte s,
// which is a digit, '+' or '('. Only the first digit of a run is a start, so
// each start reads at most maxDigits digit groups: linear overall.
func (sc *scanner) number(s int) {
	t := sc.text
	c := t[s]
	if isDigit(c) {
		if s > 0 && isDigit(t[s-1]) {
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
	d.parse(t)
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
	if sc.set.has(entPhone) {
		sc.phoneNANP(d)
		sc.phoneTrunk(d)
	}
}

// ipv4 accepts four dot-separated groups that netip parses as IPv4 (no
// leading zeros, each at most 255), not followed by another ".digit".
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
	if !sc.ipRightOK(e) || !plausibleV4(sc.text[d.start:e]) {
		return
	}
	if a, err := netip.ParseAddr(sc.text[d.start:e]); err == nil && a.Is4() {
		sc.add(d.start, e, entIP, scoreIP)
	}
}

// ssn accepts ddd-dd-dddd with the SSA's never-issued numbers excluded:
// area 000, 666 or 900-999, group 00, serial 0000. Unformatted nine-digit
// runs are not SSNs here: without context they are mostly other ids.
func (sc *scanner) ssn(d *digitRun) {
	if d.ng < 3 {
		return
	}
	g := &d.groups
	if g[0].paren || g[1].paren || g[2].paren || g[0].len() != 3 || g[1].len() != 2 || g[2].len() != 4 ||
		g[1].sep != sepHyphen || g[2].sep != sepHyphen {
		return
	}
	x := &d.digits
	if string(x[0:3]) == "000" || string(x[0:3]) == "666" || x[0] == '9' || string(x[3:5]) == "00" || string(x[5:9]) == "0000" {
		return
	}
	if sc.numRightOK(g[2].end) {
		sc.add(d.start, g[2].end, entSSN, scoreSSN)
	}
}

// card accepts 12 to 19 digits, bare or grouped with spaces or dashes (first
// group of four, one separator kind), that pass Luhn and start with a known
// issuer prefix valid for that length. The longest such prefix of the run
// wins, so a trailing CVV or expiry does not hide the number.
func (sc *scanner) card(d *digitRun) {
	g := &d.groups
	if g[0].paren {
		return
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
		nd := d.cum[k]
		if nd < 12 {
			return
		}
		digits := d.digits[:nd]
		if knownIIN(digits) && luhn(digits) && sc.numRightOK(g[k].end) {
			sc.add(d.start, g[k].end, entCard, scoreCard)
			return
		}
	}
}

// phoneIntl accepts '+' and a country code followed by digit groups: 7 to 15
// digits (E.164), not counting a "(0)" trunk prefix, and exactly 11 for +1.
// Separators may be spaces, dashes or dots, groups may be parenthesised.
// The longest acceptable prefix wins.
func (sc *scanner) phoneIntl(d *digitRun) {
	if d.digits[0] == '0' {
		return
	}
	trunk := 0
	for k := 0; k < d.ng; k++ {
		g := &d.groups[k]
		if g.paren && g.len() == 1 && d.digits[d.cum[k]-1] == '0' {
			trunk++
		}
	}
	for k := d.ng - 1; k >= 0; k-- {
		g := &d.groups[k]
		if g.paren && g.len() == 1 && d.digits[d.cum[k]-1] == '0' {
			trunk--
			continue
		}
		nd := d.cum[k] - trunk
		ok := nd >= 7 && nd <= 15
		if d.digits[0] == '1' {
			ok = nd == 11
		}
		if !ok {
			continue
		}
		if end, ok := sc.phoneEnd(g.close); ok {
			sc.add(d.start, end, entPhone, scorePhoneIntl)
			return
		}
	}
}

// phoneNANP accepts the North American formats [1 ](555) 123-4567,
// [1-]555-123-4567, 555.123.4567 and 555 123 4567, with an extension.
// Bare ten-digit runs are left alone: they are far more often ids and
// timestamps than phone numbers.
func (sc *scanner) phoneNANP(d *digitRun) {
	g := &d.groups
	k := 0
	if !g[0].paren && g[0].len() == 1 && d.digits[0] == '1' {
		k = 1
	}
	if d.ng < k+3 {
		return
	}
	area, exch, line := &g[k], &g[k+1], &g[k+2]
	if area.len() != 3 || exch.len() != 3 || exch.paren || line.len() != 4 || line.paren {
		return
	}
	if end, ok := sc.phoneEnd(line.end); ok {
		sc.add(d.start, end, entPhone, scorePhoneNational)
	}
}

// phoneTrunk accepts national numbers with a trunk prefix 0, as written in
// most of Europe, Asia and Oceania: 020 7946 0958, 01 42 68 53 00,
// (030) 1234567. It needs 10 or 11 digits in at least two groups of 2 to 8
// digits (2 to 5 for the first) joined by one kind of separator; after a
// parenthesised first group the next separator may be a space or nothing.
func (sc *scanner) phoneTrunk(d *digitRun) {
	g := &d.groups
	if d.ng < 2 || d.digits[0] != '0' || d.digits[1] == '0' || g[0].len() < 2 || g[0].len() > 5 {
		return
	}
	if k, w := sepBefore(sc.text, d.start); k == sepSpace && d.start > w {
		if isDigit(sc.text[d.start-w-1]) || placeholderEndsAt(sc.text, d.start-w) {
			return // the tail of a longer grouped number, such as an IBAN
		}
	}
	cls := g[1].sep.class()
	if g[0].paren && d.ng > 2 {
		cls = g[2].sep.class()
	}
	last := 0
	for k := 1; k < d.ng; k++ {
		gk := &g[k]
		sepOK := gk.sep.class() == cls || (k == 1 && g[0].paren && (gk.sep == sepNone || gk.sep == sepSpace))
		if gk.paren || gk.len() < 2 || gk.len() > 8 || !sepOK {
			break
		}
		last = k
	}
	for k := last; k >= 1; k-- {
		if d.cum[k] > 11 {
			continue
		}
		if d.cum[k] < 10 {
			return
		}
		if end, ok := sc.phoneEnd(g[k].end); ok {
			sc.add(d.start, end, entPhone, scorePhoneNational)
		}
		return
	}
}

// phoneEnd applies the right boundary to a phone number ending at e, after
// an optional extension (" ext. 12", " x12", " #12").
func (sc *scanner) phoneEnd(e int) (int, bool) {
	if x, ok := sc.extension(e); ok && sc.numRightOK(x) {
		return x, true
	}
	return e, sc.numRightOK(e)
}

func (sc *scanner) extension(e int) (int, bool) {
	t := sc.text
	n := len(t)
	p := e
	for p < n && t[p] == ' ' && p-e < 3 {
		p++
	}
	switch {
	case hasPrefixFold(t[p:], "extension"):
		p += len("extension")
	case hasPrefixFold(t[p:], "ext"):
		p += len("ext")
		if p < n && (t[p] == '.' || t[p] == ':') {
			p++
		}
	case p < n && (t[p] == 'x' || t[p] == 'X' || t[p] == '#'):
		p++
	default:
		return 0, false
	}
	sp := p
	for p < n && t[p] == ' ' && p-sp < 2 {
		p++
	}
	ds := p
	for p < n && isDigit(t[p]) && p-ds <= 6 {
		p++
	}
	if p == ds || p-ds > 6 {
		return 0, false
	}
	return p, true
}

// hasPrefixFold is strings.HasPrefix ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if s[i]|0x20 != prefix[i] {
			return false
		}
	}
	return true
}
