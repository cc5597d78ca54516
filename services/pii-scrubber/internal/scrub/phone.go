package scrub

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// DefaultPhoneRegions returns the regions whose national formats are
// recognised by default, in a new slice: the US and Canada, the UK, Germany,
// France, Spain, Italy, the Netherlands, India, Brazil, Japan and Australia.
// Numbers written with +country code are recognised for every region.
func DefaultPhoneRegions() []string {
	return []string{"US", "CA", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "BR", "JP", "AU"}
}

// Phone scores. A number is "valid" when libphonenumber's metadata for a
// region accepts it (the union of the fixed-line, mobile, toll-free and
// other number-type patterns), "possible" when only its length fits.
const (
	scorePhoneIntlValid    = 0.95 // +country code, valid
	scorePhoneIntlTrunk    = 0.9  // +44 020..., the trunk 0 written by mistake, valid
	scorePhoneIntlPossible = 0.75 // +country code, possible length
	scorePhoneE164         = 0.55 // +country code and 7 to 15 digits (Dapr's +2222222222)
	scorePhoneNational     = 0.85 // national format, valid
	scorePhoneNANPShape    = 0.6  // (555) 123-4567 and the like, not in service
	scorePhoneTrunkShape   = 0.55 // grouped 0xxx number of a possible length
	scorePhoneBare         = 0.35 // ungrouped and valid: a phone only after a context word

	// Numbers the metadata rejects, accepted only after a phone label
	// (Phone:, Tel., call me on, Teléfono, "phone": ...). The score is
	// final: the label is already counted.
	scorePhoneLabelled      = 0.6  // 9 to 12 digits in groups: 31 495 207 3361
	scorePhoneLabelledShort = 0.55 // a short local number of 7 or 8 digits: 538 2274, 47-12-63-08
)

// phoneRegion is the compiled metadata of one region.
type phoneRegion struct {
	id      string
	cc      int
	prefix  string // national (trunk) prefix, "" when the region has none
	lengths uint32 // bit n set: national significant numbers of n digits exist
	valid   *regexp.Regexp
	bare    bool      // national numbers are also written without the prefix
	first2  [100]bool // the first two digits of some valid number
}

// validNSN reports whether the metadata accepts the national significant
// number. The length and first-two-digit tables reject most numbers before
// the regular expression runs.
func (r *phoneRegion) validNSN(nsn string) bool {
	if len(nsn) < 2 || len(nsn) >= 32 || r.lengths&(1<<len(nsn)) == 0 || !r.first2[int(nsn[0]-'0')*10+int(nsn[1]-'0')] {
		return false
	}
	if r.cc == 1 && (nsn[0] < '2' || nsn[3] < '2') {
		return false // NANP: area code and exchange start with 2-9
	}
	return r.valid.MatchString(nsn)
}

// firstTwoDigits computes, from the compiled program of pattern, which
// two-digit prefixes some match can start with.
func firstTwoDigits(pattern string) ([100]bool, error) {
	var out [100]bool
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return out, err
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return out, err
	}
	start := closure(prog, []uint32{uint32(prog.Start)})
	for a := range 10 {
		s1 := step(prog, start, rune('0'+a))
		for b := range 10 {
			out[a*10+b] = len(step(prog, s1, rune('0'+b))) > 0
		}
	}
	return out, nil
}

// closure follows the empty transitions of prog from the given states.
func closure(prog *syntax.Prog, states []uint32) []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	var visit func(pc uint32)
	visit = func(pc uint32) {
		if seen[pc] {
			return
		}
		seen[pc] = true
		in := &prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			visit(in.Out)
			visit(in.Arg)
		case syntax.InstCapture, syntax.InstNop, syntax.InstEmptyWidth:
			visit(in.Out)
		case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			out = append(out, pc)
		}
	}
	for _, pc := range states {
		visit(pc)
	}
	return out
}

// step consumes one rune from the given (closed) states.
func step(prog *syntax.Prog, states []uint32, r rune) []uint32 {
	var next []uint32
	for _, pc := range states {
		if in := &prog.Inst[pc]; in.MatchRune(r) {
			next = append(next, in.Out)
		}
	}
	return closure(prog, next)
}

func (r *phoneRegion) possibleNSN(nsn string) bool {
	return len(nsn) < 32 && r.lengths&(1<<len(nsn)) != 0
}

// phoneMeta is the phone metadata a Scrubber uses: every region by country
// calling code for international numbers, and the configured regions for
// national ones. Compiling it takes some 30 ms, once per Scrubber.
type phoneMeta struct {
	byCC     map[int][]*phoneRegion
	national []*phoneRegion
	nanp     []*phoneRegion // the configured regions of calling code 1
}

// CheckPhoneRegions reports whether libphonenumber knows every region. The
// check exists because a typo silently disables a region: Presidio shipped
// "UK" and "FE" for GB and FR (pii.md §3.2).
func CheckPhoneRegions(regions []string) error {
	supported := phonenumbers.GetSupportedRegions()
	for _, r := range regions {
		if !supported[r] {
			return fmt.Errorf("%w: unknown phone region %q (an ISO 3166 code such as GB)", ErrBadOption, r)
		}
	}
	return nil
}

func newPhoneMeta(regions []string) (*phoneMeta, error) {
	if len(regions) == 0 {
		regions = DefaultPhoneRegions()
	}
	if err := CheckPhoneRegions(regions); err != nil {
		return nil, err
	}
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		return nil, fmt.Errorf("load phone metadata: %w", err)
	}
	m := &phoneMeta{byCC: map[int][]*phoneRegion{}}
	byID := map[string]*phoneRegion{}
	for _, md := range coll.GetMetadata() {
		var pats []string
		for _, d := range []*phonenumbers.PhoneNumberDesc{
			md.GetFixedLine(), md.GetMobile(), md.GetTollFree(), md.GetPremiumRate(), md.GetSharedCost(),
			md.GetVoip(), md.GetPersonalNumber(), md.GetPager(), md.GetUan(), md.GetVoicemail(),
		} {
			if p := d.GetNationalNumberPattern(); p != "" && p != "NA" {
				pats = append(pats, p)
			}
		}
		if len(pats) == 0 {
			continue
		}
		re, err := regexp.Compile("^(?:" + strings.Join(pats, "|") + ")$")
		if err != nil {
			return nil, fmt.Errorf("phone metadata of %s: %w", md.GetId(), err)
		}
		r := &phoneRegion{id: md.GetId(), cc: int(md.GetCountryCode()), prefix: md.GetNationalPrefix(), valid: re}
		if r.first2, err = firstTwoDigits("^(?:" + strings.Join(pats, "|") + ")$"); err != nil {
			return nil, fmt.Errorf("phone metadata of %s: %w", md.GetId(), err)
		}
		for _, l := range md.GetGeneralDesc().GetPossibleLength() {
			if l > 0 && l < 32 {
				r.lengths |= 1 << l
			}
		}
		r.bare = r.prefix == "" || r.prefix == "1" || r.id == "BR" || r.id == "IN"
		m.byCC[r.cc] = append(m.byCC[r.cc], r)
		byID[r.id] = r
	}
	for _, id := range regions {
		r := byID[id]
		if r == nil || slices.Contains(m.national, r) {
			continue
		}
		m.national = append(m.national, r)
		if r.cc == 1 {
			m.nanp = append(m.nanp, r)
		}
	}
	return m, nil
}

// intlScore scores digits written after '+' (or "00"): a country calling
// code and a national significant number. The digits are a string copied
// from the scanner's buffer: regexp keeps nothing, but escape analysis
// cannot tell, and a []byte argument would move the scanner to the heap.
func (m *phoneMeta) intlScore(d string) float64 {
	if len(d) < 7 || len(d) > 15 || d[0] == '0' {
		return 0
	}
	var regions []*phoneRegion
	cc, l := 0, 0
	for l = 1; l <= 3; l++ {
		cc = cc*10 + int(d[l-1]-'0')
		if regions = m.byCC[cc]; regions != nil {
			break
		}
	}
	if regions == nil {
		return 0
	}
	nsn := d[l:]
	score := scorePhoneE164
	for _, r := range regions {
		switch {
		case r.validNSN(nsn):
			return scorePhoneIntlValid
		case r.prefix == "0" && len(nsn) > 1 && nsn[0] == '0' && r.validNSN(nsn[1:]):
			score = max(score, scorePhoneIntlTrunk)
		case r.possibleNSN(nsn):
			score = max(score, scorePhoneIntlPossible)
		}
	}
	return score
}

// nationalScore scores digits written without a country code. loose says
// the grouping alone is phone-like enough to try regions whose numbers are
// written without a trunk prefix.
func (m *phoneMeta) nationalScore(d string, loose bool) float64 {
	if len(d) >= 2 && d[0] == '0' && d[1] == '0' {
		// 0044 20 7946 0958: valid or possible after the international
		// prefix; the bare E.164 shape is too weak without a '+'.
		if s := m.intlScore(d[2:]); s >= scorePhoneIntlPossible {
			return min(s, scorePhoneIntlTrunk)
		}
		return 0
	}
	for _, r := range m.national {
		p := r.prefix
		if p != "" && len(d) > len(p) && d[:len(p)] == p && r.validNSN(d[len(p):]) {
			return scorePhoneNational
		}
		if (loose || (r.prefix == "" && d[0] == '0')) && r.bare && r.validNSN(d) {
			return scorePhoneNational
		}
	}
	if len(d) > 3 && d[:3] == "011" {
		// 011 44 20 7946 0958: NANP's international prefix, when no
		// configured region reads the digits as a national number.
		if s := m.intlScore(d[3:]); s >= scorePhoneIntlPossible {
			return min(s, scorePhoneIntlTrunk)
		}
	}
	return 0
}

// intlPrefixed reports whether digits start with an international call
// prefix, 00 or NANP's 011.
func intlPrefixed(x []byte) bool {
	return len(x) >= 3 && x[0] == '0' && (x[1] == '0' || (x[1] == '1' && x[2] == '1'))
}

// phoneIntl accepts '+' and a country code followed by digit groups. A
// "(0)" trunk prefix is skipped. Of the prefixes of the groups, the best
// scoring one wins, the longest on a tie.
func (sc *scanner) phoneIntl(d *digitRun) {
	if d.digits[0] == '0' {
		return
	}
	var buf [maxDigits]byte
	best, bestEnd := 0.0, 0
	n := 0
	for k := 0; k < d.ng; k++ {
		g := &d.groups[k]
		if k > 0 && g.paren && g.len() == 1 && d.digits[d.cum[k]-1] == '0' {
			continue
		}
		n += copy(buf[n:], d.digits[d.cum[k]-g.len():d.cum[k]])
		sc.steps += n
		if score := sc.phone.intlScore(string(buf[:n])); score > 0 && score >= best {
			if end, ok := sc.phoneEnd(g.close); ok {
				best, bestEnd = score, end
			}
		}
	}
	if best > 0 {
		sc.add(d.start, bestEnd, entPhone, sc.adjust(d.start, entPhone, best))
		sc.intlEnd = bestEnd
	}
}

// phoneNational looks for a number written in a national format: groups of
// digits joined by spaces, hyphens, dots or one slash, the first group
// possibly in parentheses, 9 to 12 digits in all. The separator after the
// first group may differ from the others, as in (555) 123-4567 or
// 030/123 4567; groups of one digit only occur as NANP's leading 1. The
// number must be valid in a configured region, or have the shape of a NANP
// number or of a trunk-prefixed national number. An ungrouped run of digits
// is a phone number only after a context word such as "call".
func (sc *scanner) phoneNational(d *digitRun) {
	g := &d.groups
	t := sc.text
	x := d.digits[:]
	if k, w := sepBefore(t, d.start); k != sepNone && d.start > w {
		p := d.start - w
		// The tail of a longer grouped number, such as an IBAN: a trunk
		// number after a digit group, another number after a group of two
		// or more, where that group is itself grouped the same way (so an
		// address or a version before a phone number does not count).
		q := p
		for q > 0 && p-q <= maxDigits && isDigit(t[q-1]) {
			q--
		}
		sc.steps += p - q
		grouped := q == 0 || strings.IndexByte(".:,/-_", t[q-1]) < 0 // not the end of 10.0.0.1 or v1.2
		if kq, wq := sepBefore(t, q); kq == k && q > wq && isDigit(t[q-wq-1]) {
			grouped = true
		}
		// A group that ends an entity found already (a card, then a phone
		// number) is no tail.
		if placeholderEndsAt(t, p) || (q < p && grouped && sc.lastEnd != p && (x[0] == '0' || p-q >= 2)) {
			return
		}
	}
	if d.ng == 1 {
		if nd := d.cum[0]; !g[0].paren && nd >= 10 && nd <= 11 && sc.context(d.start, entPhone) > 0 {
			if sc.phone.nationalScore(string(x[:nd]), true) > 0 {
				if end, ok := sc.phoneEnd(g[0].end); ok {
					sc.add(d.start, end, entPhone, scorePhoneBare+boostUp)
				}
			}
		}
		return
	}
	// The first group: 2 to 5 digits, in parentheses or not, one more after
	// a trunk 0 (India's 098765 43210), or a lone 1 (NANP) or 0 (France's
	// 0 801 23 45 67).
	maxFirst := 5
	if x[0] == '0' {
		maxFirst = 6
	}
	if g[0].len() > maxFirst || (g[0].paren && g[0].len() < 2) || (g[0].len() == 1 && ((x[0] != '1' && x[0] != '0') || g[0].paren)) {
		return
	}
	// last is the longest prefix of groups with a phone-like grouping: the
	// separator after the first group is free, the others are one kind of
	// space, hyphen or dot; only the last group may exceed five digits.
	last := 0
	maxGroup := 8 // the subscriber number after an area code
	if x[0] == '0' {
		maxGroup = 10 // German toll-free 0800 1234567890
	}
	var cls sepKind
	free := 1 // the separator before group free is not bound to the others
	if g[0].len() == 1 {
		free = 2 // after NANP's leading 1 and the area code: 1 (800) 555-0199
	}
	// After an international prefix a group may have one digit: the
	// country code 1 or 7, or Australia's area code in 0061 3 9457 2281.
	// Written apart from the prefix (00 44 ..., 011 1 201-555-0123), the
	// country code is followed by a free separator too.
	intl := g[0].len() >= 2 && d.cum[d.ng-1] >= 3 && intlPrefixed(x) && (x[1] == '0' || g[0].len() >= 3)
	if intl && (string(x[:g[0].len()]) == "00" || string(x[:g[0].len()]) == "011") {
		free = 2
	}
	for k := 1; k < d.ng; k++ {
		gk := &g[k]
		nanpArea := k == 1 && g[0].len() == 1 && gk.len() == 3
		if (gk.paren && !nanpArea) || (gk.len() < 2 && !intl) || gk.len() > maxGroup || (k >= 2 && g[k-1].len() > 5) {
			break
		}
		if k >= 2 && g[k-1].len() == 2 && gk.len() > 2 && x[0] != '0' {
			break // 4-2-4, 3-2-5: two-digit groups end a number (06 12 34 56 78)
		}
		if k > free {
			c := gk.sep.class()
			if (c != sepSpace && c != sepHyphen && c != sepDot) || (k > free+1 && c != cls && !intl) {
				break
			}
			cls = c
		}
		last = k
	}
	if g[0].len() == 1 && last < 3 {
		return
	}
	// Digits in all: 9 to 12, up to 14 after a trunk 0 (German numbers are
	// long), up to 17 after the international prefix 00 or 011.
	maxLen := 12
	switch {
	case intl:
		maxLen = 17
	case x[0] == '0':
		maxLen = 14
	}
	for k := last; k >= 1; k-- {
		nd := d.cum[k]
		sc.steps += nd
		if nd < 9 || nd > maxLen {
			continue
		}
		if (k+1 < d.ng && g[k+1].sep.class() == g[k].sep.class() && g[k+1].len() >= 3 && !g[k+1].paren) || sc.placeholderGroupAt(g[k].end) {
			return // the grouping goes on: a card, an account, an IBAN
		}
		if notPhoneShape(d, k) || dateShape(d, k) {
			return
		}
		groups := k + 1
		loose := groups >= 3 || (groups == 2 && g[0].len() == 5 && g[1].len() == 5 && x[0] >= '6')
		score := sc.phone.nationalScore(string(x[:nd]), loose)
		if score == 0 {
			score = sc.phoneShape(d, k)
		}
		if score == 0 {
			continue
		}
		if end, ok := sc.phoneEnd(g[k].end); ok {
			sc.add(d.start, end, entPhone, sc.adjust(d.start, entPhone, score))
		}
		return
	}
	sc.phoneLabelled(d)
}

// phoneLabelled accepts, after a phone label only, a grouped number that
// the metadata rejects or that is a short local number: 538 2274,
// 47-12-63-08, (52) 614-239, 31 495 207 3361, 88 417293. The groups must
// be the whole run: two to five groups of two to eight digits, 7 to
// 12 digits in all, the first group possibly in parentheses and the
// separators after the second group all of one kind (space, hyphen, dot);
// and the shape must not be another kind of number (a date, a dotted quad,
// an SSN, a ZIP+4 code). The shape is checked before the context, so the
// common non-phone numbers cost no look-back.
func (sc *scanner) phoneLabelled(d *digitRun) {
	g := &d.groups
	last := d.ng - 1
	if last < 1 || last > 4 || g[0].len() < 2 || (d.digits[0] == '0' && d.digits[1] == '0') || sc.placeholderGroupAt(g[last].end) {
		return // 00 is the international prefix, for phoneNational to read
	}
	nd := d.cum[last]
	if nd < 7 || nd > 12 || notPhoneShape(d, last) || dateShape(d, last) || dottedQuad(d, last) {
		return
	}
	for k := 1; k <= last; k++ {
		c := g[k].sep.class()
		if g[k].len() < 2 || g[k].len() > 8 || g[k].paren ||
			(k >= 2 && c != sepSpace && c != sepHyphen && c != sepDot) || (k >= 3 && c != g[2].sep.class()) {
			return
		}
	}
	if !sc.labelled(d.start, entPhone) {
		return
	}
	score := scorePhoneLabelled
	if nd < 9 {
		score = scorePhoneLabelledShort
	}
	if end, ok := sc.phoneEnd(g[last].end); ok {
		sc.add(d.start, end, entPhone, score)
	}
}

// dateShape reports a date written in groups, possibly followed by more
// (a time): 2024-03-18, 18.03.2024, 03/18/2024, 18 03 2024 10 30 (a year
// of 19xx or 20xx, a month and a day).
func dateShape(d *digitRun, k int) bool {
	g := &d.groups
	x := d.digits[:]
	if k < 2 {
		return false
	}
	num := func(from, n int) int {
		v := 0
		for _, c := range x[from : from+n] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	year := func(v int) bool { return v >= 1900 && v <= 2099 }
	switch {
	case g[0].len() == 4 && g[1].len() == 2 && g[2].len() == 2:
		m, day := num(4, 2), num(6, 2)
		return year(num(0, 4)) && m >= 1 && m <= 12 && day >= 1 && day <= 31
	case g[0].len() == 2 && g[1].len() == 2 && g[2].len() == 4:
		a, b := num(0, 2), num(2, 2)
		return year(num(4, 4)) && a >= 1 && b >= 1 && a <= 31 && b <= 31 && (a <= 12 || b <= 12)
	}
	return false
}

// dottedQuad reports four dot-separated groups of at most three digits
// with no leading zero: an address or a version, not a phone number.
func dottedQuad(d *digitRun, k int) bool {
	g := &d.groups
	if k != 3 {
		return false
	}
	for i := 0; i <= 3; i++ {
		if g[i].len() > 3 || (i > 0 && g[i].sep != sepDot) || (g[i].len() > 1 && d.digits[d.cum[i]-g[i].len()] == '0') {
			return false
		}
	}
	return true
}

// notPhoneShape reports groupings that are other things: 3-2-4 is a US
// social security number, 5-4 a ZIP+4 code, whatever the metadata says.
func notPhoneShape(d *digitRun, k int) bool {
	g := &d.groups
	switch {
	case k == 2 && g[0].len() == 3 && g[1].len() == 2 && g[2].len() == 4:
		return true
	case k == 1 && g[0].len() == 5 && g[1].len() == 4:
		return true
	}
	return false
}

// phoneShape scores numbers the metadata rejects but whose formatting is
// unmistakable: NANP's [1 ](555) 123-4567, 555-123-4567 and 555.123.4567
// (555 numbers are fictional but read as phone numbers), and grouped
// trunk-prefixed numbers of a possible length such as the UK's drama
// ranges (07700 900123).
func (sc *scanner) phoneShape(d *digitRun, k int) float64 {
	g := &d.groups
	x := d.digits[:]
	i := 0
	if !g[0].paren && g[0].len() == 1 && x[0] == '1' {
		i = 1
	}
	if k == i+2 && g[i].len() == 3 && g[i+1].len() == 3 && g[i+2].len() == 4 && x[d.cum[i]-3] >= '2' {
		return scorePhoneNANPShape
	}
	nd := d.cum[k]
	if x[0] == '0' && x[1] != '0' && nd >= 10 && nd <= 11 {
		for _, r := range sc.phone.national {
			if r.prefix == "0" && r.possibleNSN(string(x[1:nd])) {
				return scorePhoneTrunkShape
			}
		}
	}
	return 0
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
	sc.steps += p - e
	if p == ds || p-ds > 6 {
		return 0, false
	}
	return p, true
}

// hasPrefixFold is strings.HasPrefix ignoring ASCII case; prefix is lower case.
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
