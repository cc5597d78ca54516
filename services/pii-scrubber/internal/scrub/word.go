package scrub

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// word runs the detectors of word-shaped entities at the word start i: MAC
// addresses, Bitcoin addresses, secrets with well-known prefixes, JWTs,
// bearer tokens and Spanish NIEs. Each reads a bounded stretch or a token
// no later word start reads again (tokDone), so the work stays linear.
func (sc *scanner) word(i int) {
	t := sc.text
	c := t[i]
	set := sc.set
	if set.has(entMAC) && isHex(c) && i+4 < len(t) {
		sc.mac(i)
	}
	if set.has(entCrypto) {
		switch {
		case c == '1' || c == '3':
			sc.base58(i)
		case (c == 'b' || c == 'B') && i+3 < len(t) && t[i+1]|0x20 == 'c' && t[i+2] == '1':
			sc.bech32(i)
		}
	}
	if set.has(entNIF) && (c == 'X' || c == 'Y' || c == 'Z' || c == 'x' || c == 'y' || c == 'z') {
		sc.nie(i)
	}
	if set.has(entSecret) && i >= sc.tokDone && !isDigit(c) {
		sc.secret(i)
	}
}

// mac accepts six groups of two hex digits joined by one kind of ':' or
// '-', or three groups of four joined by '.' (Cisco), in one letter case,
// except the all-zero and broadcast addresses.
func (sc *scanner) mac(s int) {
	t := sc.text
	var hex [12]byte
	var end int
	switch sep := t[s+2]; {
	case (sep == ':' || sep == '-') && s+17 <= len(t):
		for k := range 6 {
			p := s + 3*k
			if !isHex(t[p]) || !isHex(t[p+1]) || (k < 5 && t[p+2] != sep) {
				return
			}
			hex[2*k], hex[2*k+1] = t[p], t[p+1]
		}
		end = s + 17
	case isHex(t[s+1]) && isHex(t[s+2]) && isHex(t[s+3]) && s+14 <= len(t) && t[s+4] == '.':
		for k := range 3 {
			p := s + 5*k
			for j := range 4 {
				if !isHex(t[p+j]) {
					return
				}
				hex[4*k+j] = t[p+j]
			}
			if k < 2 && t[p+4] != '.' {
				return
			}
		}
		end = s + 14
	default:
		return
	}
	if !sc.tokenLeftOK(s) || !sc.tokenRightOK(end) {
		return
	}
	sep := t[s+2]
	if sep != ':' && sep != '-' {
		sep = '.'
	}
	if (end+1 < len(t) && t[end] == sep && isHex(t[end+1])) || (s >= 2 && t[s-1] == sep && isHex(t[s-2])) {
		return // a longer run: an IPv6 address, a UUID, an EUI-64
	}
	lower, upper, zero, ones := false, false, true, true
	for _, h := range hex {
		lower = lower || (h >= 'a' && h <= 'f')
		upper = upper || (h >= 'A' && h <= 'F')
		zero = zero && h == '0'
		ones = ones && (h == 'f' || h == 'F')
	}
	if (lower && upper) || zero || ones {
		return
	}
	sc.add(s, end, entMAC, sc.adjust(s, entMAC, scoreMAC))
}

// base58Alphabet is Bitcoin's: no 0, O, I or l.
const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// base58 accepts a legacy Bitcoin address at s: 26 to 35 Base58 characters
// starting with 1 (P2PKH) or 3 (P2SH) whose decoding is 25 bytes, version 0
// or 5, and a correct Base58Check checksum (double SHA-256).
func (sc *scanner) base58(s int) {
	t := sc.text
	e := s
	for e < len(t) && e-s <= 35 && sc.class[t[e]]&clsB58 != 0 {
		e++
	}
	sc.steps += e - s
	if e-s < 26 || e-s > 35 || !sc.tokenLeftOK(s) || !sc.tokenRightOK(e) {
		return
	}
	var out [25]byte
	for _, c := range []byte(t[s:e]) {
		carry := strings.IndexByte(base58Alphabet, c)
		for k := len(out) - 1; k >= 0; k-- {
			carry += 58 * int(out[k])
			out[k] = byte(carry)
			carry >>= 8
		}
		if carry != 0 {
			return // more than 25 bytes
		}
	}
	if (out[0] != 0 || t[s] != '1') && (out[0] != 5 || t[s] != '3') {
		return
	}
	first := sha256.Sum256(out[:21])
	second := sha256.Sum256(first[:])
	if string(second[:4]) != string(out[21:]) {
		return
	}
	sc.add(s, e, entCrypto, scoreCrypto)
}

// bech32Charset is BIP 173's data alphabet.
const bech32Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

// bech32 accepts a SegWit address at s: "bc1", then 39 to 59 data
// characters in one case, with a valid Bech32 (witness version 0) or
// Bech32m (versions 1 to 16) checksum (BIP 173, BIP 350).
func (sc *scanner) bech32(s int) {
	t := sc.text
	e := s + 3
	lower, upper := false, false
	for e < len(t) && e-s <= 62 {
		c := t[e]
		if c >= 'A' && c <= 'Z' {
			upper = true
			c |= 0x20
		} else if c >= 'a' && c <= 'z' {
			lower = true
		}
		if strings.IndexByte(bech32Charset, c) < 0 {
			break
		}
		e++
	}
	sc.steps += e - s
	n := e - s - 3
	if n < 39 || n > 59 || (lower && upper) || (t[s] == 'B') != upper || !sc.tokenLeftOK(s) || !sc.tokenRightOK(e) {
		return
	}
	chk := uint32(1)
	poly := func(v uint32) {
		b := chk >> 25
		chk = (chk&0x1ffffff)<<5 ^ v
		for i, g := range [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3} {
			if (b>>i)&1 != 0 {
				chk ^= g
			}
		}
	}
	// The human-readable part "bc" expanded, then the data.
	poly(3)
	poly(3)
	poly(0)
	poly(2)
	poly(3)
	var version uint32
	for k := s + 3; k < e; k++ {
		v := uint32(strings.IndexByte(bech32Charset, t[k]|0x20))
		if k == s+3 {
			version = v
		}
		poly(v)
	}
	switch {
	case version == 0 && chk == 1 && (n == 39 || n == 59):
	case version >= 1 && version <= 16 && chk == 0x2bc830a3:
	default:
		return
	}
	sc.add(s, e, entCrypto, scoreCrypto)
}

// Secrets. Each known prefix needs a minimum number of token characters
// after it; the token then runs to its end.
const (
	maxSecret = 1024 // longest prefixed key read
	maxJWT    = 8192 // longest JWT read
)

func isTokByte(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }

// secret looks for a credential with a well-known shape at word start s.
func (sc *scanner) secret(s int) {
	t := sc.text
	rest := t[s:]
	var minLen int // token characters required after the prefix
	var exact int
	var p int // prefix length
	switch t[s] {
	case 'A':
		switch {
		case len(rest) >= 20 && isAWSKeyPrefix(rest[:4]):
			p, exact = 4, 16
		case strings.HasPrefix(rest, "AIza"):
			p, exact = 4, 35
		}
	case 'g':
		switch {
		case len(rest) > 4 && rest[0:2] == "gh" && strings.IndexByte("pousr", rest[2]) >= 0 && rest[3] == '_':
			p, minLen = 4, 36
		case strings.HasPrefix(rest, "github_pat_"):
			p, minLen = 11, 22
		case strings.HasPrefix(rest, "glpat-"):
			p, minLen = 6, 20
		}
	case 'x':
		if len(rest) > 5 && rest[:3] == "xox" && strings.IndexByte("abposr", rest[3]) >= 0 && rest[4] == '-' {
			p, minLen = 5, 10
		}
	case 's':
		switch {
		case strings.HasPrefix(rest, "sk-"):
			p, minLen = 3, 20
		case strings.HasPrefix(rest, "sk_live_") || strings.HasPrefix(rest, "sk_test_"):
			p, minLen = 8, 16
		}
	case 'r':
		if strings.HasPrefix(rest, "rk_live_") || strings.HasPrefix(rest, "rk_test_") {
			p, minLen = 8, 16
		}
	case 'n':
		if strings.HasPrefix(rest, "npm_") {
			p, minLen = 4, 36
		}
	case 'h':
		if strings.HasPrefix(rest, "hf_") {
			p, minLen = 3, 30
		}
	case 'S':
		if strings.HasPrefix(rest, "SG.") {
			sc.sendgrid(s)
			return
		}
	case 'e':
		if strings.HasPrefix(rest, "eyJ") {
			sc.jwt(s)
			return
		}
	case 'B', 'b':
		if hasPrefixFold(rest, "bearer ") {
			sc.bearer(s)
		}
		return
	}
	if p == 0 || !sc.tokenLeftOK(s) {
		return
	}
	e := s + p
	for e < len(t) && isTokByte(t[e]) && e-s < maxSecret {
		e++
	}
	sc.steps += e - s
	sc.tokDone = e
	n := e - s - p
	if (exact > 0 && n != exact) || n < minLen || e-s >= maxSecret || !sc.tokenRightOK(e) {
		return
	}
	if exact == 16 { // AWS: upper-case letters and digits only
		for _, c := range []byte(t[s+p : e]) {
			if !isUpper(c) && !isDigit(c) {
				return
			}
		}
		sc.add(s, e, entSecret, scoreSecret)
		sc.awsSecretAfter(e)
		return
	}
	if exact == 0 && !hasDigitAndLetter(t[s+p:e]) {
		return // "sk-learn-is-a-library-name" is prose, not a key
	}
	sc.add(s, e, entSecret, scoreSecret)
}

// awsSecretAfter looks, on the line after an AWS access key id ending at
// byte from, for its secret access key: 40 characters of base64 (letters,
// digits, '+' and '/') with upper- and lower-case letters and a digit, as
// in "Creds: AKIA... / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY". Only the
// first token of four characters or more that starts within awsPairWindow
// bytes is read, so each key id costs a bounded look-ahead.
func (sc *scanner) awsSecretAfter(from int) {
	t := sc.text
	limit := min(len(t), from+awsPairWindow)
	for p := from; p < limit; {
		c := t[p]
		if c == '\n' || c == '\r' {
			return
		}
		if !awsSecretByte(c) {
			p++
			continue
		}
		e := p
		for e < len(t) && e-p <= 40 && awsSecretByte(t[e]) {
			e++
		}
		if e-p == 40 && sc.tokenRightOK(e) && mixedBase64(t[p:e]) {
			sc.add(p, e, entSecret, scoreSecretPaired)
			sc.tokDone = max(sc.tokDone, e)
			return
		}
		if e-p >= 4 {
			return // a word or another token: the first one after the id decides
		}
		p = e
	}
}

// awsPairWindow bounds the look-ahead from an access key id to its secret.
const awsPairWindow = 48

func awsSecretByte(c byte) bool { return isAlnum(c) || c == '+' || c == '/' }

// mixedBase64 reports whether s has upper- and lower-case letters and a
// digit, as random base64 does and hex digests, words and paths do not.
func mixedBase64(s string) bool {
	var up, lo, dg bool
	for i := 0; i < len(s); i++ {
		c := s[i]
		up = up || isUpper(c)
		lo = lo || (c >= 'a' && c <= 'z')
		dg = dg || isDigit(c)
	}
	return up && lo && dg
}

// masked reports whether a value has no letter or digit left (mask mode's
// "******-****"), so it is not a secret any more.
func masked(v string) bool {
	for i := 0; i < len(v); i++ {
		if isAlnum(v[i]) || v[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isAWSKeyPrefix(p string) bool {
	switch p {
	case "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA":
		return true
	}
	return false
}

func hasDigitAndLetter(s string) bool {
	d, l := false, false
	for i := 0; i < len(s); i++ {
		d = d || isDigit(s[i])
		l = l || isAlpha(s[i])
	}
	return d && l
}

// b64urlRun returns the end of the run of base64url characters from p.
func b64urlRun(t string, p, limit int) int {
	for p < len(t) && p < limit && (isTokByte(t[p])) {
		p++
	}
	return p
}

// jwt accepts a JSON Web Token at s: base64url header "eyJ...", '.',
// payload "eyJ...", '.', and a signature (possibly empty), where the header
// decodes to a JSON object with an "alg" member.
func (sc *scanner) jwt(s int) {
	t := sc.text
	limit := s + maxJWT
	h := b64urlRun(t, s, limit)
	sc.steps += h - s
	sc.tokDone = h
	if h-s < 10 || h >= len(t) || t[h] != '.' || !strings.HasPrefix(t[h+1:], "eyJ") || !sc.tokenLeftOK(s) {
		return
	}
	p := b64urlRun(t, h+1, limit)
	sc.steps += p - h
	if p-h-1 < 10 || p >= len(t) || t[p] != '.' {
		sc.tokDone = p
		return
	}
	e := b64urlRun(t, p+1, limit)
	sc.steps += e - p
	sc.tokDone = e
	if e >= limit || (e < len(t) && t[e] == '.') || !sc.tokenRightOK(e) {
		return
	}
	header, err := base64.RawURLEncoding.DecodeString(t[s:h])
	if err != nil || !strings.Contains(string(header), `"alg"`) {
		return
	}
	sc.add(s, e, entSecret, scoreSecret)
}

// sendgrid accepts SG.<22>.<43>.
func (sc *scanner) sendgrid(s int) {
	t := sc.text
	a := b64urlRun(t, s+3, s+3+23)
	sc.steps += a - s
	if a-s-3 != 22 || a >= len(t) || t[a] != '.' {
		return
	}
	e := b64urlRun(t, a+1, a+1+44)
	sc.steps += e - a
	sc.tokDone = e
	if e-a-1 != 43 || !sc.tokenLeftOK(s) || !sc.tokenRightOK(e) {
		return
	}
	sc.add(s, e, entSecret, scoreSecret)
}

// bearer accepts "Bearer <token>": the token (16 or more characters of
// base64, base64url or hex, with a digit) is the secret.
func (sc *scanner) bearer(s int) {
	t := sc.text
	p := s + len("bearer ")
	for p < len(t) && t[p] == ' ' && p-s < 10 {
		p++
	}
	e := p
	for e < len(t) && e-p < maxSecret && (isTokByte(t[e]) || t[e] == '.' || t[e] == '~' || t[e] == '+' || t[e] == '/' || t[e] == '=') {
		e++
	}
	sc.steps += e - s
	for e > p && t[e-1] == '.' {
		e--
	}
	sc.tokDone = max(sc.tokDone, e)
	if e-p < 16 || e-p >= maxSecret || !hasDigitAndLetter(t[p:e]) || placeholderStartsAt(t, p) || !sc.tokenRightOK(e) {
		return
	}
	sc.add(p, e, entSecret, scoreSecret)
}

// urlPassword handles an '@' at byte at that ends the user information of
// a URL with a password, scheme://user:password@host: the password is a
// secret, and the user information is not an e-mail address. It reports
// whether the '@' was such a URL's.
func (sc *scanner) urlPassword(at int) bool {
	t := sc.text
	u := at
	for u > 0 && at-u < 256 {
		c := t[u-1]
		if c <= ' ' || c == '/' || c == '@' || c == '<' || c == '>' || c == '"' || c == '\'' || c == '`' {
			break
		}
		u--
	}
	sc.steps += at - u
	if u < 3 || t[u-3:u] != "://" || u == at || !isAlpha(t[max(0, u-4)]) {
		return false
	}
	colon := strings.IndexByte(t[u:at], ':')
	if colon < 0 {
		return true // a user name only
	}
	p := u + colon + 1
	if p < at && placeholderAt(t, p) == 0 && !masked(t[p:at]) {
		sc.add(p, at, entSecret, scoreSecret)
	}
	return true
}

// assignment handles a ':' or '=' at byte i that follows a credential key,
// as in password=hunter2, "api_key": "abc123" or PASSWORD: s3cr3t!; the
// value is a secret when it has six or more characters and is quoted or
// contains a digit or symbol (so "password: changed" stays prose).
func (sc *scanner) assignment(i int) {
	t := sc.text
	k := i
	for k > 0 && i-k < 3 && (t[k-1] == ' ' || t[k-1] == '"' || t[k-1] == '\'') {
		k--
	}
	ke := k
	for k > 0 && ke-k < 40 && (isTokByte(t[k-1]) || t[k-1] == '.') {
		k--
	}
	sc.steps += i - k
	if ke-k < 3 || (k > 0 && isWordByte(t[k-1])) || placeholderEndsAt(t, k) {
		return
	}
	switch t[ke-1] | 0x20 { // the last letter of every credential key
	case 'd', 't', 'y', 'n', 'e':
	default:
		return
	}
	if !credentialKey(t[k:ke]) {
		return
	}
	p := i + 1
	if i+1 < len(t) && t[i] == ':' && t[i+1] == '=' {
		p++
	}
	for p < len(t) && t[p] == ' ' && p-i < 4 {
		p++
	}
	quote := byte(0)
	if p < len(t) && (t[p] == '"' || t[p] == '\'') {
		quote = t[p]
		p++
	}
	e := p
	for e < len(t) && e-p < 256 {
		c := t[e]
		if (quote != 0 && c == quote) || (quote == 0 && (c <= ' ' || c == ',' || c == ';' || c == '&' || c == '"' || c == '\'' || c == '}' || c == ')')) || c == '\n' {
			break
		}
		if c == '<' && placeholderAt(t, e) > 0 {
			// Part of the value was another entity, whose placeholder now
			// reads differently (AWS_SECRET_ACCESS_KEY=-0061 3 9457 2281
			// scrubbed): the value is not a secret, as it was not before.
			return
		}
		e++
	}
	sc.steps += e - i
	if quote == 0 {
		for e > p && (t[e-1] == '.' || t[e-1] == ':') {
			e--
		}
	}
	if e-p < 6 || e-p >= 256 || placeholderAt(t, p) > 0 || strings.HasPrefix(t[p:e], "${") || masked(t[p:e]) {
		return
	}
	if quote == 0 {
		// Unquoted, prose is possible (password: changed): a digit or a
		// symbol, or 16 or more letters in both cases (a random key), says
		// it is a value.
		symbol, up, lo := false, false, false
		for _, c := range []byte(t[p:e]) {
			symbol = symbol || !isAlpha(c)
			up = up || isUpper(c)
			lo = lo || (c >= 'a' && c <= 'z')
		}
		if !symbol && (e-p < 16 || !up || !lo) {
			return
		}
	}
	sc.add(p, e, entSecret, scoreSecretAssign)
}

// credentialKey reports whether key names a credential: it ends with
// password, passwd, pwd, secret, api_key/apikey/api-key, token (as in
// access_token), private_key or secret_key, in any case.
func credentialKey(key string) bool {
	var buf [40]byte
	n := 0
	for i := 0; i < len(key) && n < len(buf); i++ {
		c := key[i]
		switch {
		case isUpper(c):
			c |= 0x20
		case c == '-' || c == '.':
			c = '_'
		}
		buf[n] = c
		n++
	}
	k := string(buf[:n])
	for _, suffix := range [...]string{"password", "passwd", "pwd", "secret", "api_key", "apikey", "access_token", "auth_token",
		"refresh_token", "private_key", "secret_key", "client_secret", "bearer_token", "session_token", "token", "passphrase",
		"access_key", "secret_access_key", "signing_key", "encryption_key", "master_key", "auth_key"} {
		if strings.HasSuffix(k, suffix) && (len(k) == len(suffix) || k[len(k)-len(suffix)-1] == '_') {
			return true
		}
	}
	return false
}

// pem handles "--" at byte i: a PEM private key block "-----BEGIN ...
// PRIVATE KEY-----" through its END line is a secret. Without an END line
// within maxPEM bytes, the header and the base64 lines after it are. It
// returns the index of the last byte it consumed (i when none), so the
// block is not scanned again.
func (sc *scanner) pem(i int) int {
	t := sc.text
	const begin = "-----BEGIN "
	if !strings.HasPrefix(t[i:], begin) || (i > 0 && t[i-1] == '-') {
		return i
	}
	le := strings.Index(t[i+len(begin):min(len(t), i+len(begin)+48)], "-----")
	sc.steps += len(begin) + 48
	if le < 0 {
		if sc.partial && len(t)-i < len(begin)+48 {
			sc.pending = min(sc.pending, i)
		}
		return i
	}
	label := t[i+len(begin) : i+len(begin)+le]
	if !strings.HasSuffix(label, "PRIVATE KEY") && !strings.HasSuffix(label, "PRIVATE KEY BLOCK") {
		return i
	}
	body := i + len(begin) + le + 5
	if end := sc.pemEndAfter(body); end >= 0 && end-i <= maxPEM {
		e := end + len("-----END ")
		sc.steps += 64
		if k := strings.Index(t[e:min(len(t), e+64)], "-----"); k >= 0 {
			e += k + 5
			sc.add(i, e, entSecret, 1)
			return e - 1
		}
	}
	if sc.partial && len(t)-i <= maxPEM+128 {
		sc.pending = min(sc.pending, i) // an END line may still come
	}
	// No END line: the base64 lines after the header.
	e := body
	p := body
	for p < len(t) && p-i <= maxPEM {
		for p < len(t) && (t[p] == '\n' || t[p] == '\r' || (t[p] == '\\' && p+1 < len(t) && t[p+1] == 'n')) {
			sc.steps++
			if t[p] == '\\' {
				p++
			}
			p++
		}
		q := p
		for q < len(t) && (isAlnum(t[q]) || t[q] == '+' || t[q] == '/' || t[q] == '=') {
			q++
		}
		sc.steps += q - p + 1
		// A body line is base64 to its end, 16 characters or more unless it
		// is the padded last one; a blank line ends the block.
		if q == p || (q < len(t) && t[q] != '\n' && t[q] != '\r' && t[q] != '\\') || (q-p < 16 && t[q-1] != '=') {
			break
		}
		e, p = q, q
		if p+1 < len(t) && t[p] == '\n' && t[p+1] == '\n' {
			break
		}
	}
	sc.add(i, e, entSecret, 1)
	return e - 1
}

// pemNone in scanner.pemEnd means no END line follows the last search.
const pemNone = -2

// pemEndAfter returns the position of the first "-----END " at or after
// body, or -1. Searches start after the previous END found, so all of them
// together read the text once.
func (sc *scanner) pemEndAfter(body int) int {
	switch {
	case sc.pemEnd == pemNone:
		return -1
	case sc.pemEnd >= body:
		return sc.pemEnd
	}
	k := strings.Index(sc.text[body:], "-----END ")
	if k < 0 {
		sc.steps += len(sc.text) - body
		sc.pemEnd = pemNone
		return -1
	}
	sc.steps += k + len("-----END ")
	sc.pemEnd = body + k
	return sc.pemEnd
}

// maxPEM bounds a PEM block (an RSA-4096 key is about 3.3 KB).
const maxPEM = 16 << 10
