package store

import (
	"fmt"
	"math/bits"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Text search works on words: maximal runs of Unicode letters and digits, lower-cased. At
// ingest, the 64-bit FNV-1a hashes of the distinct words of the string values of the
// scrubbed request and response (not their keys) go into the search_hashes column, which a
// GIN index per partition serves; a ListConversations text_query matches the conversations
// that contain every word of the query. Hashes rather than the words themselves: eight
// bytes a word keep rows small, and two different words share a hash with a probability
// of about 2^-64. Words rather than trigrams: a trigram index costs several times as much
// to build and maintain.
const (
	// maxSearchBytes bounds the string bytes of one document scanned for words.
	maxSearchBytes = 64 << 10
	// maxWordBytes cuts longer words (base64 blobs, hashes) short; nobody searches for
	// such a thing in full.
	maxWordBytes = 64
	// MaxTextQuery bounds a text_query, in bytes.
	MaxTextQuery = 256
	// MaxQueryWords bounds the words of a text_query.
	MaxQueryWords = 16
)

// searchHashes returns the hashes of the distinct words of the string values of the JSON
// documents docs, which must be valid JSON (as cleanJSON returns them), in order of first
// appearance.
func searchHashes(docs ...[]byte) []int64 {
	out := []int64{}
	for _, doc := range docs {
		budget := maxSearchBytes
		jsonStrings(doc, func(s []byte) bool {
			if len(s) > budget {
				s = s[:budget]
			}
			budget -= len(s)
			out = appendWordHashes(out, s)
			return budget > 0
		})
	}
	return dedupe(out)
}

// queryHashes returns the hashes of the distinct words of a text_query. Errors wrap
// ErrInvalidRequest.
func queryHashes(text string) ([]int64, error) {
	if !utf8.ValidString(text) || len(text) > MaxTextQuery {
		return nil, fmt.Errorf("%w: text_query must be UTF-8 text of at most %d bytes", ErrInvalidRequest, MaxTextQuery)
	}
	hashes := dedupe(appendWordHashes(nil, []byte(text)))
	switch {
	case len(hashes) == 0:
		return nil, fmt.Errorf("%w: text_query has no words (letters or digits)", ErrInvalidRequest)
	case len(hashes) > MaxQueryWords:
		return nil, fmt.Errorf("%w: text_query has more than %d words", ErrInvalidRequest, MaxQueryWords)
	}
	return hashes, nil
}

// dedupe removes repeated values from hs in place, keeping first occurrences. The values
// are FNV hashes, uniform already, so their low bits index an open-addressing table.
func dedupe(hs []int64) []int64 {
	if len(hs) < 2 {
		return hs
	}
	size := 1 << bits.Len(uint(2*len(hs)))
	mask := uint64(size - 1)
	table := make([]int64, size)
	used := make([]bool, size)
	out := hs[:0]
	for _, h := range hs {
		i := uint64(h) & mask
		for used[i] && table[i] != h {
			i = (i + 1) & mask
		}
		if !used[i] {
			used[i], table[i] = true, h
			out = append(out, h)
		}
	}
	return out
}

// FNV-1a, 64 bits.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// appendWordHashes appends to hashes the hash of every word of s: a maximal run of
// letters and digits, lower-cased, cut to maxWordBytes bytes on a rune boundary. Invalid
// UTF-8 separates words. The hash of a word is the FNV-1a hash (64 bits, as a signed
// integer) of its UTF-8 bytes; stored hashes must never change, or the rows stored
// before would no longer be found.
func appendWordHashes(hashes []int64, s []byte) []int64 {
	var (
		h      uint64 = fnvOffset
		n      int    // bytes of the current word
		full   bool   // the word reached maxWordBytes: ignore the rest of it
		enc    [utf8.UTFMax]byte
		inWord bool
	)
	end := func() {
		if inWord {
			hashes = append(hashes, int64(h)) //nolint:gosec // a bit pattern, not a quantity
			h, n, full, inWord = fnvOffset, 0, false, false
		}
	}
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			// ASCII, nearly all text: no decoding, no tables.
			i++
			if lc := c | 0x20; lc-'a' < 26 {
				c = lc
			} else if c-'0' >= 10 {
				end()
				continue
			}
			inWord = true
			if full || n == maxWordBytes {
				full = true
				continue
			}
			h ^= uint64(c)
			h *= fnvPrime
			n++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		i += size
		if !isWordRune(r) {
			end()
			continue
		}
		inWord = true
		if full {
			continue
		}
		k := utf8.EncodeRune(enc[:], unicode.ToLower(r))
		if n+k > maxWordBytes {
			full = true
			continue
		}
		for _, c := range enc[:k] {
			h ^= uint64(c)
			h *= fnvPrime
		}
		n += k
	}
	end()
	return hashes
}

// jsonStrings calls f with the content of every string value of valid JSON doc, object
// keys excluded, unescaped, until f returns false. It does not check doc.
func jsonStrings(doc []byte, f func([]byte) bool) {
	var buf []byte
	for i := 0; i < len(doc); i++ {
		if doc[i] != '"' {
			continue
		}
		j, escaped := i+1, false
		for ; j < len(doc) && doc[j] != '"'; j++ {
			if doc[j] == '\\' {
				escaped = true
				j++
			}
		}
		if j >= len(doc) {
			return
		}
		k := j + 1
		for k < len(doc) && (doc[k] == ' ' || doc[k] == '\t' || doc[k] == '\n' || doc[k] == '\r') {
			k++
		}
		if k < len(doc) && doc[k] == ':' {
			i = j
			continue
		}
		s := doc[i+1 : j]
		if escaped {
			buf = unescape(buf[:0], s)
			s = buf
		}
		if !f(s) {
			return
		}
		i = j
	}
}

// unescape appends the content of a valid JSON string literal (without its quotes) to
// dst, escapes decoded. A lone surrogate becomes U+FFFD, as encoding/json decodes it.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			dst = append(dst, c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, n := hex4(s[i+1:])
			i += n
			if utf16.IsSurrogate(r) {
				r2, n2 := rune(-1), 0
				if i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					r2, n2 = hex4(s[i+3:])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 2 + n2
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, s[i])
		}
	}
	return dst
}

// hex4 decodes the four hex digits at the start of s and returns them and 4; on bad
// input, which valid JSON does not have, it returns U+FFFD and how many bytes it read.
func hex4(s []byte) (rune, int) {
	if len(s) < 4 {
		return utf8.RuneError, len(s)
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return utf8.RuneError, 4
		}
	}
	return r, 4
}

func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9')
	}
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r))
}
