package scrub

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// email looks for an address around the '@' at byte at.
//
// The local part is the longest run before '@' of letters, digits and
// ._%+- (Unicode letters included), stopping at ".." and without leading
// dots. It deliberately excludes '=', '?', '/', ':' and '&', so an address
// inside a URL query string (?email=alice@example.com&x=1) is found on its
// own. The domain is the longest prefix of dot-separated labels that has at
// least two labels and ends with a plausible top-level domain.
//
// The local part is at most 64 bytes (RFC 5321); of a longer run only the
// last 64 bytes are taken, so the decision never depends on text further
// back, which keeps stream output equal to batch output.
//
// Each '@' reads back at most 64 bytes and forward only over its domain
// (at most 255 bytes), so the work is linear.
func (sc *scanner) email(at int) {
	t := sc.text
	j := at
	for j > 0 && at-j < maxLocal {
		c := t[j-1]
		if c < utf8.RuneSelf {
			if sc.class[c]&clsLocal == 0 || (c == '.' && j >= 2 && t[j-2] == '.') {
				break
			}
			j--
			continue
		}
		r, size := utf8.DecodeLastRuneInString(t[:j])
		if !isWordRune(r) {
			break
		}
		j -= size
	}
	sc.steps += at - j
	for j < at && t[j] == '.' {
		j++
	}
	if j == at {
		return
	}
	if end := sc.domainEnd(at + 1); end > 0 {
		sc.add(j, end, entEmail, scoreEmail)
	}
}

// emailEncoded looks for an address whose '@' is percent-encoded as "%40"
// at byte pct, as in a URL's query string: ?to=alice%40example.com. The
// local part is read as for a literal '@' ('%' is a local-part character,
// so "%2B" for '+' stays inside), the domain after "%40".
func (sc *scanner) emailEncoded(pct int) {
	t := sc.text
	if !sc.labelStart(pct + 3) {
		return
	}
	end := sc.domainEnd(pct + 3)
	if end < 0 {
		return // no domain: the local part is not read at all
	}
	j := pct
	for j > 0 && pct-j < maxLocal && sc.class[t[j-1]]&clsLocal != 0 && (t[j-1] != '.' || j < 2 || t[j-2] != '.') {
		if j >= 3 && t[j-3] == '%' && urlDelimiter(t[j-2:j]) {
			break // an encoded '=', '?', '&', '/', ':' or space: the address starts after it
		}
		j--
	}
	for j < pct && t[j] == '.' {
		j++
	}
	if j < pct {
		sc.add(j, end, entEmail, scoreEmailEncoded)
	}
}

// urlDelimiter reports whether the hex digits after a '%' encode a
// character that cannot be in an address inside a URL: = ? & / : # or space.
func urlDelimiter(hex string) bool {
	switch strings.ToUpper(hex) {
	case "3D", "3F", "26", "2F", "3A", "23", "20":
		return true
	}
	return false
}

// domainEnd returns the end of the longest valid domain starting at p, or -1.
// A valid end follows at least two labels, the last being a top-level domain
// (two or more letters, or punycode xn--). A TLD may also end just before a
// '-', so "bob@example.com--see" still yields bob@example.com.
func (sc *scanner) domainEnd(p int) int {
	t := sc.text
	n := len(t)
	last := -1
	labels := 0 // complete labels so far
	k := p
	for k < n && k-p <= maxDomain {
		ls := k
		letters := true // the label so far is only letters
		runes := 0
		for k < n && k-p <= maxDomain {
			c := t[k]
			if c < utf8.RuneSelf {
				if isAlnum(c) {
					letters = letters && isAlpha(c)
					runes++
					k++
					continue
				}
				if c != '-' || k == ls {
					break
				}
				if labels > 0 && letters && runes >= 2 && t[k-1] != '-' && k-p <= maxDomain {
					last = k
				}
				letters = false
				runes++
				k++
				continue
			}
			r, size := utf8.DecodeRuneInString(t[k:])
			if !isLabelRune(r) {
				break
			}
			letters = letters && (unicode.IsLetter(r) || unicode.IsMark(r))
			runes++
			k += size
		}
		if k == ls || t[k-1] == '-' || k-p > maxDomain {
			break
		}
		labels++
		// A placeholder right after the label stands for the characters it
		// replaced, which continued the label (a@b.ioは10.44.3.17 has no
		// address before its IP is replaced, so it has none after).
		if k-p <= maxDomain && labels >= 2 && ((letters && runes >= 2) || isPunycodeTLD(t[ls:k])) && !placeholderStartsAt(t, k) {
			last = k
		}
		if k+1 < n && t[k] == '.' && sc.labelStart(k+1) {
			k++
			continue
		}
		break
	}
	sc.steps += k - p
	return last
}

// Length limits of an address (RFC 5321).
const (
	maxLocal  = 64
	maxDomain = 255
)

func (sc *scanner) labelStart(i int) bool {
	c := sc.text[i]
	if c < utf8.RuneSelf {
		return isAlnum(c)
	}
	r, _ := utf8.DecodeRuneInString(sc.text[i:])
	return isLabelRune(r)
}

func isPunycodeTLD(label string) bool {
	return len(label) > 4 && strings.EqualFold(label[:4], "xn--")
}
