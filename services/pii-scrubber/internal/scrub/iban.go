package scrub

// maxIBAN is the longest IBAN (Saint Lucia, 32; Russia, 33; the standard
// allows 34).
const maxIBAN = 34

// ibanFormat returns the IBAN length and the BBAN structure of a country of
// the SWIFT IBAN registry, or 0. The structure is a sequence of counts and
// kinds: n digits, a upper-case letters, c letters or digits.
func ibanFormat(cc string) (int, string) {
	switch cc {
	case "AD":
		return 24, "4n4n12c"
	case "AE":
		return 23, "3n16n"
	case "AL":
		return 28, "8n16c"
	case "AT":
		return 20, "5n11n"
	case "AZ":
		return 28, "4a20c"
	case "BA":
		return 20, "3n3n8n2n"
	case "BE":
		return 16, "3n7n2n"
	case "BG":
		return 22, "4a4n2n8c"
	case "BH":
		return 22, "4a14c"
	case "BI":
		return 27, "5n5n11n2n"
	case "BR":
		return 29, "8n5n10n1a1c"
	case "BY":
		return 28, "4c4n16c"
	case "CH":
		return 21, "5n12c"
	case "CR":
		return 22, "4n14n"
	case "CY":
		return 28, "3n5n16c"
	case "CZ":
		return 24, "4n6n10n"
	case "DE":
		return 22, "8n10n"
	case "DJ":
		return 27, "5n5n11n2n"
	case "DK":
		return 18, "4n9n1n"
	case "DO":
		return 28, "4c20n"
	case "EE":
		return 20, "2n2n11n1n"
	case "EG":
		return 29, "4n4n17n"
	case "ES":
		return 24, "4n4n1n1n10n"
	case "FI":
		return 18, "3n11n"
	case "FK":
		return 18, "2a12n"
	case "FO":
		return 18, "4n9n1n"
	case "FR":
		return 27, "5n5n11c2n"
	case "GB":
		return 22, "4a6n8n"
	case "GE":
		return 22, "2a16n"
	case "GI":
		return 23, "4a15c"
	case "GL":
		return 18, "4n9n1n"
	case "GR":
		return 27, "3n4n16c"
	case "GT":
		return 28, "4c20c"
	case "HR":
		return 21, "7n10n"
	case "HU":
		return 28, "3n4n1n15n1n"
	case "IE":
		return 22, "4a6n8n"
	case "IL":
		return 23, "3n3n13n"
	case "IQ":
		return 23, "4a3n12n"
	case "IS":
		return 26, "4n2n6n10n"
	case "IT":
		return 27, "1a5n5n12c"
	case "JO":
		return 30, "4a4n18c"
	case "KW":
		return 30, "4a22c"
	case "KZ":
		return 20, "3n13c"
	case "LB":
		return 28, "4n20c"
	case "LC":
		return 32, "4a24c"
	case "LI":
		return 21, "5n12c"
	case "LT":
		return 20, "5n11n"
	case "LU":
		return 20, "3n13c"
	case "LV":
		return 21, "4a13c"
	case "LY":
		return 25, "3n3n15n"
	case "MC":
		return 27, "5n5n11c2n"
	case "MD":
		return 24, "2c18c"
	case "ME":
		return 22, "3n13n2n"
	case "MK":
		return 19, "3n10c2n"
	case "MN":
		return 20, "4n12n"
	case "MR":
		return 27, "5n5n11n2n"
	case "MT":
		return 31, "4a5n18c"
	case "MU":
		return 30, "4a2n2n12n3n3a"
	case "NI":
		return 28, "4a20n"
	case "NL":
		return 18, "4a10n"
	case "NO":
		return 15, "4n6n1n"
	case "OM":
		return 23, "3n16c"
	case "PK":
		return 24, "4a16c"
	case "PL":
		return 28, "8n16n"
	case "PS":
		return 29, "4a21c"
	case "PT":
		return 25, "4n4n11n2n"
	case "QA":
		return 29, "4a21c"
	case "RO":
		return 24, "4a16c"
	case "RS":
		return 22, "3n13n2n"
	case "RU":
		return 33, "9n5n15c"
	case "SA":
		return 24, "2n18c"
	case "SC":
		return 31, "4a2n2n16n3a"
	case "SD":
		return 18, "2n12n"
	case "SE":
		return 24, "3n16n1n"
	case "SI":
		return 19, "5n8n2n"
	case "SK":
		return 24, "4n6n10n"
	case "SM":
		return 27, "1a5n5n12c"
	case "SO":
		return 23, "4n3n12n"
	case "ST":
		return 25, "4n4n11n2n"
	case "SV":
		return 28, "4a20n"
	case "TL":
		return 23, "3n14n2n"
	case "TN":
		return 24, "2n3n13n2n"
	case "TR":
		return 26, "5n1n16c"
	case "UA":
		return 29, "6n19c"
	case "VA":
		return 22, "3n15n"
	case "VG":
		return 24, "4a16n"
	case "XK":
		return 20, "4n10n2n"
	case "YE":
		return 30, "4a4n18c"
	}
	return 0, ""
}

// bbanMatches checks the upper-cased BBAN against a structure of ibanFormat.
func bbanMatches(bban []byte, structure string) bool {
	p := 0
	for i := 0; i < len(structure); {
		n := 0
		for i < len(structure) && isDigit(structure[i]) {
			n = n*10 + int(structure[i]-'0')
			i++
		}
		kind := structure[i]
		i++
		if p+n > len(bban) {
			return false
		}
		for _, c := range bban[p : p+n] {
			switch kind {
			case 'n':
				if !isDigit(c) {
					return false
				}
			case 'a':
				if !isUpper(c) {
					return false
				}
			default:
				if !isDigit(c) && !isUpper(c) {
					return false
				}
			}
		}
		p += n
	}
	return p == len(bban)
}

// mod97 reports whether the upper-cased IBAN passes ISO 7064 mod 97-10:
// moved country code and check digits to the end, letters as 10..35, the
// number is 1 mod 97.
func mod97(iban []byte) bool {
	r := 0
	step := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
			return
		}
		v := int(c-'A') + 10
		r = (r*100 + v) % 97
	}
	for _, c := range iban[4:] {
		step(c)
	}
	for _, c := range iban[:4] {
		step(c)
	}
	return r == 1
}

// iban looks for an IBAN at word start s: two letters, two check digits,
// then the BBAN, either unbroken or in groups of four separated by single
// spaces or hyphens (the printed form), in any letter case. Exactly the
// country's length is read, so a following word is never glued on, and the
// structure and mod 97 must hold.
func (sc *scanner) iban(s int) {
	t := sc.text
	var cc [2]byte
	cc[0], cc[1] = t[s]&^0x20, t[s+1]&^0x20
	length, structure := ibanFormat(string(cc[:]))
	if length == 0 {
		return
	}
	var buf [maxIBAN]byte
	n := 0
	p := s
	sep := byte(0)
	for n < length && p < len(t) {
		sc.steps++
		c := t[p]
		if isAlnum(c) {
			if isAlpha(c) {
				c &^= 0x20
			}
			buf[n] = c
			n++
			p++
			continue
		}
		// A separator is allowed after every fourth character.
		if n%4 != 0 || (c != ' ' && c != '-') || (sep != 0 && c != sep) || p+1 >= len(t) || !isAlnum(t[p+1]) {
			return
		}
		sep = c
		p++
	}
	if n != length || !sc.tokenRightOK(p) || (p < len(t) && isAlnum(t[p])) {
		return
	}
	if !isDigit(buf[2]) || !isDigit(buf[3]) || !bbanMatches(buf[4:n], structure) || !mod97(buf[:n]) {
		return
	}
	sc.add(s, p, entIBAN, scoreIBAN)
}
