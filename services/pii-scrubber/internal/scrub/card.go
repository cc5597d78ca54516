package scrub

// luhn reports whether the ASCII digits pass the Luhn (mod 10) check.
func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// knownIIN reports whether the digits start with an issuer identification
// number of a card scheme that issues numbers of this length. Random digits
// pass Luhn one time in ten, so the prefix and length are the other half of
// the evidence.
func knownIIN(d []byte) bool {
	n := len(d)
	if n < 12 || n > 19 {
		return false
	}
	p1 := int(d[0] - '0')
	p2 := p1*10 + int(d[1]-'0')
	p3 := p2*10 + int(d[2]-'0')
	p4 := p3*10 + int(d[3]-'0')
	switch {
	case p1 == 4: // Visa
		return n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard, incl. the 2-series
		return n == 16
	case p4 >= 2200 && p4 <= 2204: // Mir
		return n >= 16
	case p2 == 34 || p2 == 37: // American Express
		return n == 15
	case p4 == 2131 || p4 == 1800: // JCB, 15 digits
		return n == 15
	case p4 >= 3528 && p4 <= 3589: // JCB; RuPay 353 and 356 share the range
		return n >= 16
	case p3 >= 300 && p3 <= 305, p4 == 3095, p2 == 36, p2 == 38, p2 == 39: // Diners Club
		return n >= 14
	case p2 == 50, p2 >= 56 && p2 <= 69: // Maestro; Discover 6011/644-649/65, UnionPay 62, RuPay 60, Verve
		return true
	case p2 == 81 || p2 == 82: // RuPay
		return n == 16
	case p4 == 9792: // Troy
		return n == 16
	}
	return false
}
