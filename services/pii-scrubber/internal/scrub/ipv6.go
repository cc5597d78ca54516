package scrub

import (
	"net/netip"
	"strings"
)

// maxV6Token is the longest token examined as an IPv6 address: 45 bytes for
// ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255, plus room for a glued prefix
// such as "IPv6:" and trailing punctuation.
const maxV6Token = 64

// ipv6 examines the maximal run of hex digits, ':' and '.' around the ':' at
// byte i and returns the run's end; the caller skips the other colons in it,
// so every byte belongs to at most one examined run.
//
// The run must stand alone (no word character or placeholder on either
// side), so std::cout, 10:30:00 and MAC-like runs inside words do not match.
// A run glued to a word by a colon ("IPv6:fe80::1", "addr:fe80::1") is
// retried without that prefix. Trailing dots and a single trailing colon are
// sentence punctuation. The address must parse with netip and contain a
// decimal digit or at least three colons, which keeps "::" and short hex
// words like "cafe::babe" out.
func (sc *scanner) ipv6(i int) int {
	t := sc.text
	a := i
	for a > 0 && sc.class[t[a-1]]&clsV6 != 0 {
		a--
	}
	b := i + 1
	for b < len(t) && sc.class[t[b]]&clsV6 != 0 {
		b++
	}
	sc.steps += b - a
	if b-a > maxV6Token || !sc.ipRightOK(b) {
		return b
	}
	e := b
	for e > a && t[e-1] == '.' {
		e--
	}
	if e-a >= 2 && t[e-1] == ':' && t[e-2] != ':' {
		e--
	}
	if sc.ipLeftOK(a) {
		sc.tryV6(a, e)
		return b
	}
	if a == 0 || !sc.wordBefore(a) {
		return b
	}
	if p := strings.IndexByte(t[a:e], ':'); p >= 0 {
		p += a
		if p+1 < e && t[p+1] != ':' && (p == a || t[p-1] != ':') {
			sc.tryV6(p+1, e)
		}
	}
	return b
}

func (sc *scanner) tryV6(a, e int) {
	s := sc.text[a:e]
	sc.steps += len(s)
	if !plausibleV6(s) {
		return
	}
	addr, err := netip.ParseAddr(s)
	if err != nil || !addr.Is6() {
		return
	}
	if !strings.ContainsAny(s, "0123456789") && strings.Count(s, ":") < 3 {
		return
	}
	sc.add(a, e, entIP, scoreIP)
}

// plausibleV6 checks the IPv6 text grammar (hex groups of one to four
// digits, at most one "::", eight groups or fewer with "::", an optional
// dotted IPv4 tail counting as two groups) before netip parses the address.
// netip builds an error value for every rejected string, and times, ratios
// and MAC addresses are common in text: the check keeps the scan free of
// allocations.
func plausibleV6(s string) bool {
	if len(s) < 2 {
		return false
	}
	groups := 0
	double := false
	for i := 0; i < len(s); {
		if s[i] == ':' {
			if i+1 < len(s) && s[i+1] == ':' {
				if double {
					return false
				}
				double = true
				i += 2
				continue
			}
			if i == 0 || i == len(s)-1 || s[i-1] == ':' {
				return false // a single leading or trailing colon, or ":::"
			}
			i++
			continue
		}
		j := i
		dots := false
		for j < len(s) && s[j] != ':' {
			dots = dots || s[j] == '.'
			j++
		}
		switch {
		case dots:
			if j != len(s) || !plausibleV4(s[i:j]) {
				return false
			}
			groups += 2
		case j-i > 4:
			return false
		default:
			groups++
		}
		if j < len(s) && s[j] == ':' && j+1 == len(s) {
			return false
		}
		i = j
	}
	if double {
		return groups <= 7
	}
	return groups == 8
}

// plausibleV4 checks a dotted quad: four decimal octets of at most 255
// without leading zeros.
func plausibleV4(s string) bool {
	parts := 0
	for i := 0; i < len(s); {
		j := i
		v := 0
		for j < len(s) && s[j] != '.' {
			if !isDigit(s[j]) || j-i >= 3 {
				return false
			}
			v = v*10 + int(s[j]-'0')
			j++
		}
		if j == i || v > 255 || (s[i] == '0' && j-i > 1) {
			return false
		}
		parts++
		if j == len(s) {
			break
		}
		if j+1 == len(s) {
			return false // trailing dot
		}
		i = j + 1
	}
	return parts == 4
}
