// Package restore puts original values back in place of the numbered
// placeholders that the pii-scrubber writes in tokenize mode
// (parley.pii.v1.Mode MODE_TOKENIZE), such as <EMAIL_ADDRESS_1>.
//
// The router keeps a call's mapping in memory for the duration of one
// request, sends the tokenized prompt to the provider, and restores the
// answer with this package before returning it to the caller, so the
// provider never sees the original values and the caller gets them back.
//
// Only tokens of the mapping are replaced. The scrubber never allocates a
// token that the request's own text already contains, so a placeholder the
// caller wrote ("spoofed") is left as written. The package has no
// dependencies beyond the standard library, so the router can import it
// without the scrubber's detectors.
package restore

import (
	"strings"
	"unicode/utf8"
)

// maxToken bounds the length of a token: '<', an entity name of at most 32
// characters, '_', a number, '>'.
const maxToken = 48

// Restorer replaces tokens with their values. It is immutable and safe for
// concurrent use.
type Restorer struct {
	values map[string]string
}

// New returns a Restorer for a mapping from token (e.g. <EMAIL_ADDRESS_1>)
// to original value, as returned in ScrubResponse.tokens.
func New(values map[string]string) *Restorer {
	m := make(map[string]string, len(values))
	for k, v := range values {
		if isToken(k) {
			m[k] = v
		}
	}
	return &Restorer{values: m}
}

// Text returns s with every token of the mapping replaced by its value.
func (r *Restorer) Text(s string) string {
	if len(r.values) == 0 || strings.IndexByte(s, '<') < 0 {
		return s
	}
	var b strings.Builder
	prev := 0
	for i := strings.IndexByte(s, '<'); i >= 0; {
		end := tokenEnd(s, i)
		if end > 0 {
			if v, ok := r.values[s[i:end]]; ok {
				if b.Len() == 0 {
					b.Grow(len(s))
				}
				b.WriteString(s[prev:i])
				b.WriteString(v)
				prev = end
				i = end - 1
			}
		}
		next := strings.IndexByte(s[i+1:], '<')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	if prev == 0 {
		return s
	}
	b.WriteString(s[prev:])
	return b.String()
}

// Stream restores a text that arrives in pieces: a token split across
// pieces is held back until it is complete. Its outputs concatenated equal
// Text of the whole input. A Stream is not safe for concurrent use.
type Stream struct {
	r    *Restorer
	held string
}

// Stream returns a new Stream.
func (r *Restorer) Stream() *Stream { return &Stream{r: r} }

// Write adds the next piece and returns the restored text that is safe to
// release.
func (st *Stream) Write(p string) string {
	s := st.held + p
	// Hold back from the last '<' that may start an unfinished token.
	cut := len(s)
	if i := strings.LastIndexByte(s, '<'); i >= 0 && len(s)-i < maxToken && tokenPrefix(s[i:]) {
		cut = i
	}
	for cut > 0 && cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut--
	}
	st.held = s[cut:]
	return st.r.Text(s[:cut])
}

// Flush returns the rest: the input has ended.
func (st *Stream) Flush() string {
	s := st.held
	st.held = ""
	return st.r.Text(s)
}

// tokenEnd returns the end of the token <NAME_n> starting at i, or 0.
func tokenEnd(s string, i int) int {
	j := i + 1
	for j < len(s) && j-i < maxToken && (isUpper(s[j]) || isDigit(s[j]) || s[j] == '_') {
		j++
	}
	if j >= len(s) || s[j] != '>' || !isToken(s[i:j+1]) {
		return 0
	}
	return j + 1
}

// isToken reports whether s is <NAME_n>: upper-case letters, digits and
// underscores, then '_' and a number without leading zeros.
func isToken(s string) bool {
	if len(s) < 4 || len(s) > maxToken || s[0] != '<' || s[len(s)-1] != '>' {
		return false
	}
	name := s[1 : len(s)-1]
	u := strings.LastIndexByte(name, '_')
	if u <= 0 || u == len(name)-1 || name[u+1] == '0' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isUpper(c) && !isDigit(c) && c != '_' {
			return false
		}
		if i > u && !isDigit(c) {
			return false
		}
	}
	return isUpper(name[0])
}

// tokenPrefix reports whether s (starting with '<') could be the start of a
// token that has not fully arrived.
func tokenPrefix(s string) bool {
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isUpper(c) && !isDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

func isUpper(c byte) bool { return c-'A' < 26 }

func isDigit(c byte) bool { return c-'0' < 10 }
