package provider

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxEventBytes bounds one server-sent event (its data lines together) and one line.
const MaxEventBytes = 1 << 20

// ErrEventTooLarge reports an event or a line over MaxEventBytes.
var ErrEventTooLarge = errors.New("event stream: event larger than 1 MiB")

// Event is one server-sent event: its type (the "event:" field, empty when absent) and its
// data lines joined by "\n".
type Event struct {
	Type string
	Data []byte
}

// SSEReader reads server-sent events (text/event-stream): fields "event" and "data",
// comments and other fields ignored, an event ended by a blank line. It holds at most one
// event in memory, bounded by MaxEventBytes.
type SSEReader struct {
	r      *bufio.Reader
	typ    string
	data   []byte
	has    bool
	events int
}

// NewSSEReader reads events from r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{r: bufio.NewReaderSize(r, 4096)}
}

// Events is the number of events returned so far.
func (s *SSEReader) Events() int { return s.events }

// Next returns the next event. At the end of the input it returns io.EOF, after any last
// event that was not followed by a blank line. Other errors are the reader's, or
// ErrEventTooLarge.
func (s *SSEReader) Next() (Event, error) {
	for {
		line, err := s.line()
		if err != nil {
			if errors.Is(err, io.EOF) && s.has {
				return s.dispatch(), nil
			}
			return Event{}, err
		}
		if len(line) == 0 {
			if s.has {
				return s.dispatch(), nil
			}
			s.typ = ""
			continue
		}
		if line[0] == ':' {
			continue // a comment, such as a keep-alive
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if len(s.data)+len(value)+1 > MaxEventBytes {
				return Event{}, ErrEventTooLarge
			}
			if s.has {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, value...)
			s.has = true
		case "event":
			s.typ = string(value)
		}
	}
}

func (s *SSEReader) dispatch() Event {
	ev := Event{Type: s.typ, Data: s.data}
	s.typ, s.data, s.has = "", nil, false
	s.events++
	return ev
}

// line reads one line without its end of line ("\n", "\r\n"); io.EOF when no byte is left.
func (s *SSEReader) line() ([]byte, error) {
	var out []byte
	for {
		frag, err := s.r.ReadSlice('\n')
		if len(out)+len(frag) > MaxEventBytes+2 {
			return nil, ErrEventTooLarge
		}
		out = append(out, frag...)
		switch {
		case err == nil:
			out = out[:len(out)-1]
			return bytes.TrimSuffix(out, []byte("\r")), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(out) == 0 {
				return nil, io.EOF
			}
			return bytes.TrimSuffix(out, []byte("\r")), nil
		default:
			return nil, fmt.Errorf("read event stream: %w", err)
		}
	}
}
