package scrub

import (
	"strings"
	"unicode/utf8"
)

// Stream window sizes.
const (
	// StreamHold is how many bytes at the end of the text seen so far a
	// Stream holds back: more than any entity's length plus the look-ahead
	// of its detector (an address is at most 64+1+255 bytes, a quoted
	// password=... value 256), so a finding is never decided before all of
	// its text has arrived. Longer entities hold back more: a run of
	// non-space characters at the end (a JWT, a key) is held whole, and an
	// open PEM block until its END line.
	StreamHold = 512
	// streamContext is how many released bytes a Stream keeps as left
	// context: the look-behind of the detectors (context words, an e-mail
	// local part, a URL's user information) is shorter.
	streamContext = 512
	// maxTokenHold bounds how long a run of non-space characters at the end
	// is held back whole (a JWT, a long key); a longer run is released like
	// any text.
	maxTokenHold = 16 << 10
	// maxStreamHeld bounds the unreleased text of a Stream.
	maxStreamHeld = 1 << 20
)

// Stream scrubs one text that arrives in pieces, such as a streamed model
// answer. The concatenated outputs of Write and Flush equal the text of
// Call.Scrub on the whole input, findings included, so no entity split
// across pieces escapes. A Stream is not safe for concurrent use.
type Stream struct {
	c        *Call
	buf      []byte // retained input: left context, then unreleased text
	base     int    // offset of buf[0] in the whole input
	emit     int    // index in buf of the first unreleased byte
	nextScan int    // len(buf) at which Write scans again
}

// Piece is output released by a Stream.
type Piece struct {
	// Text is the next part of the scrubbed text.
	Text string
	// Findings in Text, with offsets into the whole input.
	Findings []Finding
}

// NewStream returns a Stream that scrubs with the call's options. In
// tokenize mode it shares the call's mapping.
func (c *Call) NewStream() *Stream { return &Stream{c: c, nextScan: 2 * StreamHold} }

// Write adds the next piece of the input and returns the output that has
// become safe to release, possibly none.
func (st *Stream) Write(p string) Piece {
	// Reserve the numbered placeholders the input writes (tokenize mode),
	// including one split across pieces. A token used before the input
	// writes it cannot be reserved: streams do not see the future.
	from := max(0, len(st.buf)-maxPlaceholder)
	st.buf = append(st.buf, p...)
	if st.c.tok != nil {
		st.c.Reserve(string(st.buf[from:]))
	}
	if len(st.buf) < st.nextScan {
		return Piece{}
	}
	return st.release(false)
}

// Flush scrubs and returns everything held back: the input has ended.
func (st *Stream) Flush() Piece { return st.release(true) }

// Pending returns the number of input bytes held back.
func (st *Stream) Pending() int { return len(st.buf) - st.emit }

func (st *Stream) release(final bool) Piece {
	text := string(st.buf)
	spans, pending := st.c.findFrom(text, !final, st.emit, nil)
	cut := len(text)
	if !final {
		cut = min(len(text)-StreamHold, pending)
		if ts := trailingToken(text); len(text)-ts <= maxTokenHold {
			cut = min(cut, ts)
		}
		for _, sp := range spans {
			if sp.start < cut && cut < sp.end {
				cut = sp.start
			}
		}
		for cut > st.emit && cut < len(text) && !utf8.RuneStart(text[cut]) {
			cut--
		}
		// Scan again once another window's worth has arrived, or, while
		// nothing can be released (a long entity is still open), once the
		// held text has grown by half, so rescanning stays linear overall.
		st.nextScan = len(st.buf) + max(StreamHold, (len(st.buf)-st.emit)/2)
		if cut <= st.emit {
			if len(st.buf)-st.emit <= maxStreamHeld {
				return Piece{}
			}
			// A chain of overlapping candidates longer than any entity
			// ("a@b.cd@e.fg@..."): release it rather than hold the input
			// without bound, redacting the span that crosses the cut whole.
			// Only such pathological input can make the output differ from
			// a batch call.
			cut = len(text) - StreamHold
			for _, sp := range spans {
				if sp.start < cut && cut < sp.end {
					cut = sp.end
				}
			}
		}
	}
	var out strings.Builder
	var findings []Finding
	prev := st.emit
	for _, sp := range spans {
		if sp.end > cut {
			break
		}
		out.WriteString(text[prev:sp.start])
		st.c.write(&out, text[sp.start:sp.end], sp.ent)
		findings = append(findings, Finding{Entity: sp.ent.name(), Start: st.base + sp.start, End: st.base + sp.end, Score: sp.score})
		prev = sp.end
	}
	out.WriteString(text[prev:cut])

	keep := max(0, cut-streamContext)
	for keep > 0 && !utf8.RuneStart(text[keep]) {
		keep--
	}
	st.buf = append(st.buf[:0], st.buf[keep:]...)
	st.base += keep
	st.emit = cut - keep
	st.nextScan = max(st.nextScan-keep, len(st.buf)+1)
	return Piece{Text: out.String(), Findings: findings}
}

// trailingToken returns the start of the run of non-space bytes that ends
// the text.
func trailingToken(t string) int {
	i := len(t)
	for i > 0 && t[i-1] != ' ' && t[i-1] != '\n' && t[i-1] != '\t' && t[i-1] != '\r' && len(t)-i <= maxTokenHold {
		i--
	}
	return i
}

// findFrom is find without the candidates that start before from: in a
// Stream they belong to text already released.
func (c *Call) findFrom(text string, partial bool, from int, dst []candidate) ([]candidate, int) {
	sc := scanner{class: &c.s.class, phone: c.s.phone, thr: c.thr, text: text, set: c.set, partial: partial, pending: len(text)}
	sc.run()
	if c.steps != nil {
		*c.steps += sc.steps
	}
	if sc.pending < from {
		sc.pending = len(text) // a block already released cannot be pending
	}
	if sc.more != nil {
		dst = sc.more[:0] // already on the heap: filter in place
	}
	for _, cd := range sc.candidates() {
		if cd.start >= from {
			dst = append(dst, cd)
		}
	}
	if len(dst) == 0 {
		return nil, sc.pending
	}
	return merge(dst), sc.pending
}
