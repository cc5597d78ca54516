package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/parleyhq/parley/libs/jsondepth"
)

// maxJSONDepth bounds the nesting of the JSON documents stored as JSON; a deeper one is
// stored as a JSON string holding its text. It is well above what the router accepts
// (jsondepth.Max plus the few levels of a request's own shape) and far below what breaks
// a reader: as a google.protobuf.Value each level is two messages deep, and protobuf's
// decoders stop at 10,000 (a ~4,900-level request made every audit page holding it fail
// with "exceeded maximum recursion depth").
const maxJSONDepth = 256

// maxNumberLen bounds the JSON numbers kept as numbers; longer ones cannot be a float64 anyway.
const maxNumberLen = 300

// maxExponent bounds the exponents of JSON numbers kept as numbers.
const maxExponent = 400

// cleanJSON checks that b is JSON and returns it in a form jsonb accepts and
// google.protobuf.Value can represent. Empty input becomes SQL NULL.
//
// jsonb rejects some valid JSON: the escape \u0000, unpaired surrogate escapes, and numbers
// outside PostgreSQL's numeric range. An audit record must not be lost to such input, so it
// is rewritten: NUL and unpaired surrogates become U+FFFD, and numbers a float64 cannot hold
// become strings of their digits. The scan that decides whether to rewrite is cheap, and
// almost every document passes through unchanged.
func cleanJSON(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if !utf8.Valid(b) {
		b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
	}
	if !json.Valid(b) {
		return nil, errors.New("not valid JSON")
	}
	if jsondepth.Exceeds(b, maxJSONDepth) {
		// Kept, as the text of one JSON string: the record is not lost, and nothing that
		// reads it back recurses through thousands of levels.
		s, err := json.Marshal(cleanText(string(b)))
		if err != nil {
			return nil, fmt.Errorf("quote over-deep JSON: %w", err)
		}
		return s, nil
	}
	return cleanValidJSON(b)
}

// cleanValidJSON is cleanJSON for b known to be valid UTF-8 JSON within maxJSONDepth.
func cleanValidJSON(b []byte) ([]byte, error) {
	if !needsRewrite(b) {
		return b, nil
	}
	return rewriteJSON(b)
}

// needsRewrite reports whether valid JSON b may hold something jsonb rejects or a float64
// cannot represent: a \u0000 or surrogate escape, or a number with an exponent or of more
// than maxNumberLen characters. False positives only cost a rewrite.
func needsRewrite(b []byte) bool {
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			if b[i+1] == 'u' {
				v, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16)
				if err != nil || v == 0 || (v >= 0xD800 && v <= 0xDFFF) {
					return true
				}
				i += 5
			} else {
				i++
			}
		case inString:
			if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			for j < len(b) && bytes.IndexByte([]byte("0123456789.eE+-"), b[j]) >= 0 {
				if b[j] == 'e' || b[j] == 'E' {
					return true
				}
				j++
			}
			if j-i > maxNumberLen {
				return true
			}
			i = j - 1
		}
	}
	return false
}

// rewriteJSON re-encodes valid JSON b token by token, keeping key order. The decoder turns
// unpaired surrogates into U+FFFD; cleanText does the same for NUL.
func rewriteJSON(b []byte) ([]byte, error) {
	type frame struct {
		object  bool
		n       int
		wantKey bool
	}
	var (
		out   bytes.Buffer
		stack []frame
	)
	out.Grow(len(b))
	prefix := func() {
		if len(stack) == 0 {
			return
		}
		f := &stack[len(stack)-1]
		switch {
		case f.object && !f.wantKey:
			out.WriteByte(':')
		case f.n > 0:
			out.WriteByte(',')
		}
	}
	done := func() {
		if len(stack) == 0 {
			return
		}
		f := &stack[len(stack)-1]
		if f.object && f.wantKey {
			f.wantKey = false
			return
		}
		f.n++
		f.wantKey = f.object
	}

	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("rewrite: %w", err)
		}
		switch t := tok.(type) {
		case json.Delim:
			if t == '{' || t == '[' {
				prefix()
				out.WriteByte(byte(t))
				stack = append(stack, frame{object: t == '{', wantKey: t == '{'})
				continue
			}
			out.WriteByte(byte(t))
			stack = stack[:len(stack)-1]
			done()
			continue
		case string:
			prefix()
			s, err := json.Marshal(cleanText(t))
			if err != nil {
				return nil, fmt.Errorf("rewrite: %w", err)
			}
			out.Write(s)
		case json.Number:
			prefix()
			if representable(t) {
				out.WriteString(t.String())
			} else {
				s, _ := json.Marshal(t.String()) // a string of ASCII digits always marshals
				out.Write(s)
			}
		case bool:
			prefix()
			out.WriteString(strconv.FormatBool(t))
		case nil:
			prefix()
			out.WriteString("null")
		}
		done()
	}
	return out.Bytes(), nil
}

// representable reports whether n fits a float64 without overflow or underflow to zero, which
// also keeps it well within PostgreSQL's numeric range.
func representable(n json.Number) bool {
	s := n.String()
	if len(s) > maxNumberLen {
		return false
	}
	mantissa, exp, hasExp := strings.Cut(strings.ToLower(s), "e")
	if hasExp {
		// PostgreSQL rejects even a zero with a large exponent, such as 0e-20000.
		e, err := strconv.Atoi(exp)
		if err != nil || e < -maxExponent || e > maxExponent {
			return false
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return false
	}
	// Zero is fine only when the mantissa is all zeros; otherwise it underflowed.
	return f != 0 || strings.Trim(mantissa, "-0.") == ""
}
