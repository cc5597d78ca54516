package scrub

import (
	"encoding/json"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ScrubJSON scrubs a JSON document such as tool-call arguments: every string
// value is decoded, scrubbed and written back escaped, and a number that
// holds an entity (a card number written as a JSON number) becomes a
// string. Object keys, other values and the layout are kept byte for byte,
// so the output is valid JSON. Finding offsets are into the JSON text. A
// text that is not valid JSON is scrubbed as free text.
func (c *Call) ScrubJSON(text string) Result {
	if !json.Valid([]byte(text)) {
		return c.Scrub(text)
	}
	var out strings.Builder
	var findings []Finding
	prev := 0
	emit := func(rs, re int, repl func(*strings.Builder)) {
		if out.Len() == 0 {
			out.Grow(len(text) + 32)
		}
		out.WriteString(text[prev:rs])
		repl(&out)
		prev = re
	}
	var dec []byte
	var offs []int
	key := "" // the key of the value that follows, if any
	for i := 0; i < len(text); i++ {
		switch ch := text[i]; {
		case ch == '"':
			end := jsonStringEnd(text, i)
			if nextNonSpace(text, end) == ':' {
				key = text[i+1 : end-1]
				i = end - 1 // an object key
				continue
			}
			raw := text[i+1 : end-1]
			var s string
			if strings.IndexByte(raw, '\\') < 0 {
				s, offs = raw, offs[:0]
			} else {
				dec, offs = decodeJSONString(raw, dec[:0], offs[:0])
				s = string(dec)
			}
			at := func(k int) int { // raw offset of decoded byte k
				if len(offs) == 0 {
					return i + 1 + k
				}
				return i + 1 + offs[k]
			}
			spans := c.findKeyed(s, key)
			for _, sp := range spans {
				rs, re := at(sp.start), at(sp.end)
				findings = append(findings, Finding{Entity: sp.ent.name(), Start: rs, End: re, Score: sp.score})
				emit(rs, re, func(b *strings.Builder) {
					var r strings.Builder
					c.write(&r, s[sp.start:sp.end], sp.ent)
					jsonEscape(b, r.String())
				})
			}
			i = end - 1
		case ch == '-' || isDigit(ch):
			e := i
			for e < len(text) && (isDigit(text[e]) || strings.IndexByte("+-.eE", text[e]) >= 0) {
				e++
			}
			num := text[i:e]
			if res := c.result(num, c.findKeyed(num, key)); len(res.Findings) > 0 {
				for _, f := range res.Findings {
					f.Start += i
					f.End += i
					findings = append(findings, f)
				}
				emit(i, e, func(b *strings.Builder) {
					b.WriteByte('"')
					jsonEscape(b, res.Text)
					b.WriteByte('"')
				})
			}
			i = e - 1
		case ch == '{' || ch == '}':
			key = "" // the elements of an array keep their key, a new object has its own
		}
	}
	if len(findings) == 0 {
		return Result{Text: text}
	}
	out.WriteString(text[prev:])
	return Result{Text: out.String(), Findings: findings}
}

// findKeyed is find for a JSON string value whose object key is key: the
// key's words are context before the value's first word ("phone": "538
// 2274", "client_version": "9.14.3.2"), as they are when the document is
// scanned as text.
func (c *Call) findKeyed(text, key string) []candidate {
	sc := scanner{class: &c.s.class, phone: c.s.phone, thr: c.thr, text: text, key: key, set: c.set, pending: len(text)}
	sc.run()
	cs := sc.candidates()
	if len(cs) == 0 {
		return nil
	}
	return merge(append([]candidate(nil), cs...)) // a copy, so the scanner stays on the stack
}

// jsonStringEnd returns the index after the closing quote of the valid JSON
// string starting at i.
func jsonStringEnd(t string, i int) int {
	for j := i + 1; j < len(t); j++ {
		switch t[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(t)
}

func nextNonSpace(t string, i int) byte {
	for ; i < len(t); i++ {
		switch t[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return t[i]
		}
	}
	return 0
}

// decodeJSONString decodes the contents of a valid JSON string into dec and
// records in offs, for each decoded byte and one past the end, the raw
// offset it came from.
func decodeJSONString(raw string, dec []byte, offs []int) ([]byte, []int) {
	for i := 0; i < len(raw); {
		start := i
		c := raw[i]
		if c != '\\' {
			dec = append(dec, c)
			offs = append(offs, start)
			i++
			continue
		}
		var r rune
		switch raw[i+1] {
		case 'n':
			r = '\n'
		case 'r':
			r = '\r'
		case 't':
			r = '\t'
		case 'b':
			r = '\b'
		case 'f':
			r = '\f'
		case 'u':
			r = hex4(raw[i+2 : i+6])
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
					r2 = hex4(raw[i+8 : i+12])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			i += 4
		default: // \" \\ \/
			r = rune(raw[i+1])
		}
		i += 2
		n := len(dec)
		dec = utf8.AppendRune(dec, r)
		for range len(dec) - n {
			offs = append(offs, start)
		}
	}
	return dec, append(offs, len(raw))
}

func hex4(s string) rune {
	var r rune
	for i := 0; i < 4; i++ {
		c := s[i]
		switch {
		case isDigit(c):
			r = r<<4 | rune(c-'0')
		default:
			r = r<<4 | rune(c|0x20-'a'+10)
		}
	}
	return r
}

// jsonEscape writes s as the contents of a JSON string.
func jsonEscape(b *strings.Builder, s string) {
	const hexDigits = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
}
