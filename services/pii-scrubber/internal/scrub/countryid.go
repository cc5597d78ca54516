package scrub

// nhsValid checks a UK NHS number: ten digits whose first nine, weighted
// 10 down to 2, give the tenth as 11 minus their sum mod 11 (11 is written
// 0; 10 never occurs in a valid number).
func nhsValid(x []byte) bool {
	if len(x) != 10 {
		return false
	}
	sum := 0
	for i := range 9 {
		sum += int(x[i]-'0') * (10 - i)
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	return check != 10 && check == int(x[9]-'0')
}

// verhoeff reports whether the digits pass the Verhoeff check (Aadhaar).
func verhoeff(x []byte) bool {
	// The dihedral group D5 multiplication and the position permutation.
	d := [10][10]uint8{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9},
		{1, 2, 3, 4, 0, 6, 7, 8, 9, 5},
		{2, 3, 4, 0, 1, 7, 8, 9, 5, 6},
		{3, 4, 0, 1, 2, 8, 9, 5, 6, 7},
		{4, 0, 1, 2, 3, 9, 5, 6, 7, 8},
		{5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
		{6, 5, 9, 8, 7, 1, 0, 4, 3, 2},
		{7, 6, 5, 9, 8, 2, 1, 0, 4, 3},
		{8, 7, 6, 5, 9, 3, 2, 1, 0, 4},
		{9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
	}
	p := [8][10]uint8{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9},
		{1, 5, 7, 6, 2, 8, 3, 0, 9, 4},
		{5, 8, 0, 3, 7, 9, 6, 1, 4, 2},
		{8, 9, 1, 6, 0, 4, 3, 5, 2, 7},
		{9, 4, 5, 3, 1, 2, 6, 8, 7, 0},
		{4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
		{2, 7, 9, 3, 8, 0, 6, 4, 1, 5},
		{7, 0, 4, 6, 9, 1, 3, 2, 5, 8},
	}
	var c uint8
	for i := range x {
		c = d[c][p[i%8][x[len(x)-1-i]-'0']]
	}
	return c == 0
}

// dniLetter is the check letter of a DNI/NIE number.
func dniLetter(n int) byte { return "TRWAGMYFPDXBNJZSQVHLCKE"[n%23] }

// dni checks a Spanish DNI: the eight digits at [s, e) followed by their
// check letter, optionally after a hyphen or space.
func (sc *scanner) dni(s, e int) {
	t := sc.text
	p := e
	if p < len(t) && (t[p] == '-' || t[p] == ' ') {
		p++
	}
	if p >= len(t) || !isAlpha(t[p]) {
		return
	}
	n := 0
	for i := s; i < e; i++ {
		n = n*10 + int(t[i]-'0')
	}
	if t[p]&^0x20 != dniLetter(n) || !sc.tokenRightOK(p+1) {
		return
	}
	sc.add(s, p+1, entNIF, sc.adjust(s, entNIF, scoreCountryID+0.1))
}

// nie checks a Spanish NIE at word start s: X, Y or Z, seven digits, the
// check letter (computed with X=0, Y=1, Z=2 in front).
func (sc *scanner) nie(s int) {
	t := sc.text
	if s+9 > len(t) || !sc.tokenLeftOK(s) {
		return
	}
	n := int((t[s]&^0x20)-'X') * 10_000_000
	p := s + 1
	for k := range 7 {
		c := t[p+k]
		if !isDigit(c) {
			return
		}
		n += int(c-'0') * pow10(6-k)
	}
	p += 7
	if t[p] == '-' && p+1 < len(t) {
		p++
	}
	if t[p]&^0x20 != dniLetter(n) || !sc.tokenRightOK(p+1) {
		return
	}
	sc.add(s, p+1, entNIF, sc.adjust(s, entNIF, scoreCountryID+0.1))
}

func pow10(k int) int {
	v := 1
	for range k {
		v *= 10
	}
	return v
}
