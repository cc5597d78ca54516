package store

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// The audit copy of every conversation is a parley.provider.v1 Request and Response, and
// the log stores them as the JSON protojson.Marshal writes. protojson walks the message
// by reflection: it was the largest part of the audit service's CPU per event (about 30 %
// in a profile of the hit path). The encoders below write the same JSON for these two
// messages directly: the same field names, the same omissions (proto3 zero values, an
// unset oneof), int64 and uint64 as strings, enums by name, Duration and Timestamp in
// protojson's form with its range checks, map keys in order. Only a Struct (a tool's
// parameters, a response format: rare) still goes through protojson. TestMessageJSON,
// TestMessageJSONEveryField and FuzzMessageJSON hold them equal, as parsed JSON, to
// protojson's output.

// errInvalidUTF8 is what protojson reports for a string field that is not UTF-8.
var errInvalidUTF8 = errors.New("string field contains invalid UTF-8")

// jsonWriter appends JSON to b; the first error stops it.
type jsonWriter struct {
	b     []byte
	err   error
	first bool // no member written yet in the current object or array
	// foreign is set once protojson has written part of b (a Struct, of any depth).
	foreign bool
}

func (w *jsonWriter) open(c byte) {
	w.b = append(w.b, c)
	w.first = true
}

func (w *jsonWriter) close(c byte) {
	w.b = append(w.b, c)
	w.first = false
}

// key writes a member's name (ASCII, no escaping needed).
func (w *jsonWriter) key(name string) {
	w.elem()
	w.b = append(w.b, '"')
	w.b = append(w.b, name...)
	w.b = append(w.b, '"', ':')
}

// elem separates an array's elements, and an object's members (key).
func (w *jsonWriter) elem() {
	if !w.first {
		w.b = append(w.b, ',')
	}
	w.first = false
}

// str writes s as a JSON string, as protojson escapes it.
func (w *jsonWriter) str(s string) {
	if !utf8.ValidString(s) {
		w.fail(errInvalidUTF8)
	}
	w.b = append(w.b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		w.b = append(w.b, s[start:i]...)
		switch c {
		case '"':
			w.b = append(w.b, '\\', '"')
		case '\\':
			w.b = append(w.b, '\\', '\\')
		case '\b':
			w.b = append(w.b, '\\', 'b')
		case '\f':
			w.b = append(w.b, '\\', 'f')
		case '\n':
			w.b = append(w.b, '\\', 'n')
		case '\r':
			w.b = append(w.b, '\\', 'r')
		case '\t':
			w.b = append(w.b, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			w.b = append(w.b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	w.b = append(w.b, s[start:]...)
	w.b = append(w.b, '"')
}

func (w *jsonWriter) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// list writes the member name, an array of each(item), unless items is empty (a repeated
// field's zero value).
func list[T any](w *jsonWriter, name string, items []T, each func(T)) {
	if len(items) == 0 {
		return
	}
	w.key(name)
	w.open('[')
	for _, item := range items {
		w.elem()
		each(item)
	}
	w.close(']')
}

// object writes an object whose members members writes.
func (w *jsonWriter) object(members func()) {
	w.open('{')
	members()
	w.close('}')
}

// Members, each omitted at its zero value as proto3 fields without presence are.

func (w *jsonWriter) strField(name, v string) {
	if v != "" {
		w.key(name)
		w.str(v)
	}
}

func (w *jsonWriter) int64Field(name string, v int64) {
	if v != 0 {
		w.key(name)
		w.quotedInt(v)
	}
}

// quotedInt writes a 64-bit integer as protojson does, as a string.
func (w *jsonWriter) quotedInt(v int64) {
	w.b = append(w.b, '"')
	w.b = strconv.AppendInt(w.b, v, 10)
	w.b = append(w.b, '"')
}

func (w *jsonWriter) uint64Field(name string, v uint64) {
	if v != 0 {
		w.key(name)
		w.b = append(w.b, '"')
		w.b = strconv.AppendUint(w.b, v, 10)
		w.b = append(w.b, '"')
	}
}

func (w *jsonWriter) int32Field(name string, v int32) {
	if v != 0 {
		w.key(name)
		w.b = strconv.AppendInt(w.b, int64(v), 10)
	}
}

func (w *jsonWriter) uint32Field(name string, v uint32) {
	if v != 0 {
		w.key(name)
		w.b = strconv.AppendUint(w.b, uint64(v), 10)
	}
}

func (w *jsonWriter) boolField(name string, v bool) {
	if v {
		w.key(name)
		w.b = append(w.b, "true"...)
	}
}

// doubleField writes v as protojson does: present unless +0 (a -0 is populated), NaN and
// the infinities as strings, otherwise the shortest form that reads back as v.
func (w *jsonWriter) doubleField(name string, v float64) {
	if math.Float64bits(v) == 0 {
		return
	}
	w.key(name)
	switch {
	case math.IsNaN(v):
		w.b = append(w.b, `"NaN"`...)
	case math.IsInf(v, 1):
		w.b = append(w.b, `"Infinity"`...)
	case math.IsInf(v, -1):
		w.b = append(w.b, `"-Infinity"`...)
	default:
		format := byte('f')
		if abs := math.Abs(v); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
			format = 'e'
		}
		w.b = strconv.AppendFloat(w.b, v, format, -1, 64)
		if n := len(w.b); format == 'e' && w.b[n-4] == 'e' && w.b[n-3] == '-' && w.b[n-2] == '0' {
			w.b[n-2] = w.b[n-1] // e-07 → e-7
			w.b = w.b[:n-1]
		}
	}
}

// enumField writes an enum by its name, or by its number when it has none.
func (w *jsonWriter) enumField(name string, v int32, names map[int32]string) {
	if v == 0 {
		return
	}
	w.key(name)
	if n, ok := names[v]; ok {
		w.str(n)
		return
	}
	w.b = strconv.AppendInt(w.b, int64(v), 10)
}

// durationField writes d as protojson does ("1.500s"); a Duration protojson refuses
// (CheckValid: out of range, or seconds and nanos of opposite signs) fails the encoding.
func (w *jsonWriter) durationField(name string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	w.key(name)
	if err := d.CheckValid(); err != nil {
		w.fail(fmt.Errorf("%s: %w", name, err))
		return
	}
	secs, nanos := d.GetSeconds(), int64(d.GetNanos())
	w.b = append(w.b, '"')
	if secs < 0 || nanos < 0 {
		w.b = append(w.b, '-')
		secs, nanos = -secs, -nanos
	}
	w.b = strconv.AppendInt(w.b, secs, 10)
	w.b = appendFraction(w.b, nanos)
	w.b = append(w.b, 's', '"')
}

// timestampField writes t as protojson does (RFC 3339 in UTC); a Timestamp protojson
// refuses (CheckValid: outside years 1 to 9999, nanos out of range) fails the encoding.
func (w *jsonWriter) timestampField(name string, t *timestamppb.Timestamp) {
	if t == nil {
		return
	}
	w.key(name)
	if err := t.CheckValid(); err != nil {
		w.fail(fmt.Errorf("%s: %w", name, err))
		return
	}
	w.b = append(w.b, '"')
	w.b = time.Unix(t.GetSeconds(), 0).UTC().AppendFormat(w.b, "2006-01-02T15:04:05")
	w.b = appendFraction(w.b, int64(t.GetNanos()))
	w.b = append(w.b, 'Z', '"')
}

// appendFraction appends nanos (0 to 999,999,999) as 0, 3, 6 or 9 fractional digits.
func appendFraction(b []byte, nanos int64) []byte {
	if nanos == 0 {
		return b
	}
	digits := 9
	for digits > 3 && nanos%1000 == 0 {
		nanos /= 1000
		digits -= 3
	}
	b = append(b, '.')
	s := strconv.AppendInt(nil, nanos, 10)
	for range digits - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// structField writes s through protojson (a tool's parameters, a response format).
func (w *jsonWriter) structField(name string, s *structpb.Struct) {
	if s == nil {
		return
	}
	w.key(name)
	w.foreign = true
	b, err := protojson.Marshal(s)
	if err != nil {
		w.fail(fmt.Errorf("%s: %w", name, err))
		return
	}
	w.b = append(w.b, b...)
}

func (w *jsonWriter) toolCall(c *providerv1.ToolCall) {
	w.object(func() {
		w.strField("id", c.GetId())
		w.strField("type", c.GetType())
		w.strField("name", c.GetName())
		w.strField("arguments", c.GetArguments())
	})
}

func (w *jsonWriter) part(p *providerv1.Part) {
	w.open('{')
	switch k := p.GetKind().(type) {
	case *providerv1.Part_Text:
		// A oneof member is present when set, even to "".
		w.key("text")
		w.str(k.Text)
	case *providerv1.Part_ToolCall:
		w.key("toolCall")
		w.toolCall(k.ToolCall)
	case *providerv1.Part_ToolResult:
		w.key("toolResult")
		w.object(func() {
			w.strField("toolCallId", k.ToolResult.GetToolCallId())
			w.strField("name", k.ToolResult.GetName())
			w.strField("content", k.ToolResult.GetContent())
		})
	}
	w.close('}')
}

// request writes r as protojson.Marshal does.
func (w *jsonWriter) request(r *providerv1.Request) {
	w.open('{')
	w.strField("requestId", r.GetRequestId())
	w.strField("tenant", r.GetTenant())
	w.strField("component", r.GetComponent())
	list(w, "messages", r.GetMessages(), func(m *providerv1.Message) {
		w.object(func() {
			w.enumField("role", int32(m.GetRole()), providerv1.Role_name)
			list(w, "parts", m.GetParts(), w.part)
		})
	})
	list(w, "tools", r.GetTools(), func(t *providerv1.Tool) {
		w.object(func() {
			w.strField("type", t.GetType())
			w.strField("name", t.GetName())
			w.strField("description", t.GetDescription())
			w.structField("parameters", t.GetParameters())
		})
	})
	w.strField("toolChoice", r.GetToolChoice())
	w.doubleField("temperature", r.GetTemperature())
	if r.MaxTokens != nil {
		// An optional field: present when set, even to 0.
		w.key("maxTokens")
		w.quotedInt(r.GetMaxTokens())
	}
	list(w, "stop", r.GetStop(), w.str)
	w.structField("responseFormat", r.GetResponseFormat())
	w.durationField("promptCacheRetention", r.GetPromptCacheRetention())
	if md := r.GetMetadata(); len(md) > 0 {
		w.key("metadata")
		// Sized once: slices.Sorted(maps.Keys(md)) grows its slice key by key.
		keys := make([]string, 0, len(md))
		for k := range md {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.object(func() {
			for _, k := range keys {
				w.elem()
				w.str(k)
				w.b = append(w.b, ':')
				w.str(md[k])
			}
		})
	}
	w.timestampField("deadline", r.GetDeadline())
	w.boolField("stream", r.GetStream())
	w.uint32Field("streamWindow", r.GetStreamWindow())
	w.close('}')
}

// response writes r as protojson.Marshal does.
func (w *jsonWriter) response(r *providerv1.Response) {
	w.open('{')
	list(w, "choices", r.GetChoices(), func(c *providerv1.Choice) {
		w.object(func() {
			w.int64Field("index", c.GetIndex())
			w.strField("finishReason", c.GetFinishReason())
			w.strField("content", c.GetContent())
			list(w, "toolCalls", c.GetToolCalls(), w.toolCall)
		})
	})
	w.strField("model", r.GetModel())
	if u := r.GetUsage(); u != nil {
		w.key("usage")
		w.object(func() {
			w.uint64Field("promptTokens", u.GetPromptTokens())
			w.uint64Field("completionTokens", u.GetCompletionTokens())
			w.uint64Field("totalTokens", u.GetTotalTokens())
			w.uint64Field("promptCachedTokens", u.GetPromptCachedTokens())
			w.uint64Field("promptAudioTokens", u.GetPromptAudioTokens())
			w.uint64Field("completionReasoningTokens", u.GetCompletionReasoningTokens())
			w.uint64Field("completionAudioTokens", u.GetCompletionAudioTokens())
			w.uint64Field("completionAcceptedPredictionTokens", u.GetCompletionAcceptedPredictionTokens())
			w.uint64Field("completionRejectedPredictionTokens", u.GetCompletionRejectedPredictionTokens())
		})
	}
	w.strField("workerId", r.GetWorkerId())
	w.durationField("providerLatency", r.GetProviderLatency())
	w.int32Field("attempts", r.GetAttempts())
	w.close('}')
}

// marshalJSON is protojson.Marshal(m), written directly for the audit copy's two
// messages. direct reports that all of it was written here: valid UTF-8 (every string is
// checked) and valid JSON of a depth the two messages bound, by construction.
func marshalJSON(m proto.Message) (b []byte, direct bool, err error) {
	w := &jsonWriter{b: make([]byte, 0, 512)}
	switch m := m.(type) {
	case *providerv1.Request:
		w.request(m)
	case *providerv1.Response:
		w.response(m)
	default:
		b, err := protojson.Marshal(m)
		return b, false, err
	}
	if w.err != nil {
		return nil, false, w.err
	}
	return w.b, !w.foreign, nil
}
