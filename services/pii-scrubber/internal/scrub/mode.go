package scrub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// hashHexLen is the length of the hex digest in a hash-mode placeholder:
// 64 bits, enough to tell values apart within a tenant's logs.
const hashHexLen = 16

// Token is one entry of a tokenize-mode mapping.
type Token struct {
	// Token is the placeholder written into the output, e.g. <EMAIL_ADDRESS_1>.
	Token string
	// Entity is the entity name, e.g. EMAIL_ADDRESS.
	Entity string
	// Value is the original text of the token's first occurrence.
	Value string
}

// write appends the replacement of value, a span of entity e, to b.
func (c *Call) write(b *strings.Builder, value string, e entity) {
	switch c.mode {
	case ModeMask:
		mask(b, value, e)
	case ModeHash:
		mac := hmac.New(sha256.New, c.s.hashKey)
		mac.Write([]byte(e.name()))
		mac.Write([]byte{0})
		mac.Write([]byte(normalize(value, e)))
		var sum [sha256.Size]byte
		b.WriteByte('<')
		b.WriteString(e.name())
		b.WriteByte(':')
		b.WriteString(hex.EncodeToString(mac.Sum(sum[:0])[:hashHexLen/2]))
		b.WriteByte('>')
	case ModeTokenize:
		b.WriteString(c.tok.token(value, e))
	default:
		b.WriteByte('<')
		b.WriteString(e.name())
		b.WriteByte('>')
	}
}

// mask writes '*' for every letter and digit of value and keeps the other
// characters, so the shape stays readable (****@*******.***). Card numbers
// and IBANs keep their last four letters or digits, the usual receipt form.
func mask(b *strings.Builder, value string, e entity) {
	keep := 0
	if e == entCard || e == entIBAN {
		keep = 4
	}
	cut := len(value) // letters and digits from cut on are kept
	for i := len(value); i > 0 && keep > 0; {
		r, size := utf8.DecodeLastRuneInString(value[:i])
		i -= size
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			keep--
			cut = i
		}
	}
	for i, r := range value {
		if i < cut && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)) {
			b.WriteByte('*')
			continue
		}
		b.WriteRune(r)
	}
}

// normalize returns the canonical form of a value of entity e, so that the
// same value written differently hashes and tokenizes alike: addresses in
// lower case, numbers as their digits, IPs in netip's canonical form.
func normalize(value string, e entity) string {
	switch e {
	case entEmail, entMAC:
		v := strings.ToLower(value)
		if e == entMAC {
			v = keepAlnum(v)
		}
		return v
	case entIP:
		if a, err := netip.ParseAddr(value); err == nil {
			return a.String()
		}
		return value
	case entPhone:
		d := keepAlnum(value)
		if strings.HasPrefix(strings.TrimSpace(value), "+") {
			return "+" + d
		}
		return d
	case entCard, entSSN, entIBAN, entNHS, entSIN, entNIF, entAadhaar:
		return strings.ToUpper(keepAlnum(value))
	default:
		return value
	}
}

func keepAlnum(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if isAlnum(s[i]) {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// tokenizer numbers the values of one call per entity.
type tokenizer struct {
	byValue map[string]int // entity name, NUL, normalized value -> index in list
	list    []Token
	next    [numEntities]int
	taken   map[string]bool // token strings written by the caller
}

func newTokenizer() *tokenizer {
	return &tokenizer{byValue: map[string]int{}, taken: map[string]bool{}}
}

// seed loads the mapping of an earlier call.
func (t *tokenizer) seed(tokens []Token) error {
	for _, tk := range tokens {
		e, ok := entityOf(tk.Entity)
		if !ok {
			return fmt.Errorf("token %q: %w: %q", tk.Token, ErrUnknownEntity, tk.Entity)
		}
		n, ok := tokenNumber(tk.Token, e)
		if !ok {
			return fmt.Errorf("%w: token %q is not a %s token", ErrBadOption, tk.Token, tk.Entity)
		}
		key := e.name() + "\x00" + normalize(tk.Value, e)
		if _, dup := t.byValue[key]; !dup {
			t.byValue[key] = len(t.list)
		}
		t.list = append(t.list, tk)
		t.taken[tk.Token] = true
		t.next[e] = max(t.next[e], n)
	}
	return nil
}

// tokenNumber parses <NAME_n>.
func tokenNumber(tok string, e entity) (int, bool) {
	prefix := "<" + e.name() + "_"
	if !strings.HasPrefix(tok, prefix) || !strings.HasSuffix(tok, ">") {
		return 0, false
	}
	n, err := strconv.Atoi(tok[len(prefix) : len(tok)-1])
	if err != nil || n <= 0 || placeholderAt(tok, 0) != len(tok) {
		return 0, false
	}
	return n, true
}

// reserve marks every numbered placeholder in text as taken.
func (t *tokenizer) reserve(text string) {
	for i := strings.IndexByte(text, '<'); i >= 0; {
		if end := placeholderAt(text, i); end > 0 {
			t.taken[text[i:end]] = true
		}
		next := strings.IndexByte(text[i+1:], '<')
		if next < 0 {
			return
		}
		i += 1 + next
	}
}

// token returns the token of value, allocating the next free number of its
// entity on first use.
func (t *tokenizer) token(value string, e entity) string {
	key := e.name() + "\x00" + normalize(value, e)
	if i, ok := t.byValue[key]; ok {
		return t.list[i].Token
	}
	var tok string
	for {
		t.next[e]++
		tok = "<" + e.name() + "_" + strconv.Itoa(t.next[e]) + ">"
		if !t.taken[tok] {
			break
		}
	}
	t.taken[tok] = true
	t.byValue[key] = len(t.list)
	t.list = append(t.list, Token{Token: tok, Entity: e.name(), Value: value})
	return tok
}
