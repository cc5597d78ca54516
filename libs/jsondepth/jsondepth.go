// Package jsondepth measures how deeply JSON nests, in one linear pass and without
// recursing deeper than the limit asked about, so that hostile input is refused before a
// recursive decoder (protojson, protobuf's binary decoder for google.protobuf.Value,
// PostgreSQL's jsonb) spends work on it or fails on it later.
package jsondepth

import "google.golang.org/protobuf/types/known/structpb"

// Max is Parley's one nesting limit for JSON a caller sends (tool parameters, response
// formats, tool-call arguments, tool results): objects and arrays nested at most this
// deep. It is far below what every decoder on the way accepts: protobuf's recursion limit
// of 10,000 messages (a JSON level is two messages deep as google.protobuf.Value) and
// PostgreSQL's jsonb, whose limit depends on its stack size (thousands of levels).
const Max = 64

// Exceeds reports whether the JSON text b nests objects and arrays deeper than limit.
// It does not validate b: brackets inside strings are skipped, anything else is counted
// as it comes.
func Exceeds[T ~string | ~[]byte](b T, limit int) bool {
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > limit {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}

// StructExceeds reports whether s, as JSON, nests objects and arrays deeper than limit
// (s itself is one level). A nil s nests nothing.
func StructExceeds(s *structpb.Struct, limit int) bool {
	if s == nil {
		return false
	}
	return structExceeds(s, 1, limit)
}

// ValueExceeds reports whether v, as JSON, nests objects and arrays deeper than limit.
func ValueExceeds(v *structpb.Value, limit int) bool {
	return valueExceeds(v, 0, limit)
}

func structExceeds(s *structpb.Struct, depth, limit int) bool {
	if depth > limit {
		return true
	}
	for _, v := range s.GetFields() {
		if valueExceeds(v, depth, limit) {
			return true
		}
	}
	return false
}

// valueExceeds recurses at most limit levels: it stops as soon as depth passes limit.
func valueExceeds(v *structpb.Value, depth, limit int) bool {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StructValue:
		return structExceeds(k.StructValue, depth+1, limit)
	case *structpb.Value_ListValue:
		if depth+1 > limit {
			return true
		}
		for _, e := range k.ListValue.GetValues() {
			if valueExceeds(e, depth+1, limit) {
				return true
			}
		}
	}
	return false
}
