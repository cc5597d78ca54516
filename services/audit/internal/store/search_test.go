package store

import (
	"encoding/json"
	"hash/fnv"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// refHashes is a plain reference for searchHashes: decode the documents, walk their
// string values, split, lower-case, cut and hash each word with hash/fnv.
func refHashes(t testing.TB, docs ...[]byte) []int64 {
	t.Helper()
	var texts []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			texts = append(texts, v)
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	for _, d := range docs {
		if len(d) == 0 {
			continue
		}
		var v any
		require.NoError(t, json.Unmarshal(d, &v))
		walk(v)
	}
	out := []int64{}
	for _, text := range texts {
		out = append(out, refWordHashes(text)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func refWordHashes(text string) []int64 {
	var out []int64
	for _, w := range strings.FieldsFunc(text, func(r rune) bool { return r == utf8.RuneError || !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		var b []byte
		for _, r := range w {
			r = unicode.ToLower(r)
			if len(b)+utf8.RuneLen(r) > maxWordBytes {
				break
			}
			b = utf8.AppendRune(b, r)
		}
		h := fnv.New64a()
		_, _ = h.Write(b)
		out = append(out, int64(h.Sum64())) //nolint:gosec // a bit pattern
	}
	return out
}

func hashesOf(words ...string) []int64 {
	var out []int64
	for _, w := range words {
		h := fnv.New64a()
		_, _ = h.Write([]byte(w))
		out = append(out, int64(h.Sum64())) //nolint:gosec // a bit pattern
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestSearchHashes(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 40) // 80 bytes; cut to 32 runes (64 bytes)
	tests := []struct {
		name string
		give []string
		want []int64
	}{
		{name: "values not keys", give: []string{`{"content":"Hello, World","role":"user"}`}, want: hashesOf("hello", "world", "user")},
		{name: "nested and both documents", give: []string{`{"a":[{"b":"x1 y2"}],"n":3}`, `{"outputs":["Y2 z3"]}`}, want: hashesOf("x1", "y2", "z3")},
		{name: "placeholders split on punctuation", give: []string{`["mail <EMAIL_ADDRESS> now"]`}, want: hashesOf("mail", "email", "address", "now")},
		{name: "escapes decoded", give: []string{`["caf\u00e9 \"quoted\" tab\tsep"]`}, want: hashesOf("café", "quoted", "tab", "sep")},
		{name: "escaped quote before a colon is not a key", give: []string{`{"k":"a\":b"}`}, want: hashesOf("a", "b")},
		{name: "unicode letters and digits", give: []string{`["ΑΒΓ δ ٣٤ 東京"]`}, want: hashesOf("αβγ", "δ", "٣٤", "東京")},
		{name: "long word cut on a rune boundary", give: []string{`["` + long + `"]`}, want: hashesOf(strings.Repeat("é", 32))},
		{name: "whitespace before a colon", give: []string{"{\"key\" \n: \"value\"}"}, want: hashesOf("value")},
		{name: "no strings", give: []string{`{"n":[1,2,true,null]}`}, want: []int64{}},
		{name: "empty documents", give: []string{"", ""}, want: []int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			docs := make([][]byte, len(tt.give))
			for i, d := range tt.give {
				docs[i] = []byte(d)
			}
			got := sorted(searchHashes(docs...))
			require.Equal(t, tt.want, got)
			require.Equal(t, refHashes(t, docs...), got)
		})
	}
}

func TestSearchHashesBoundsScannedText(t *testing.T) {
	t.Parallel()
	// The budget is per document: words past it in one are not indexed; the other
	// document is scanned in full.
	big := `["` + strings.Repeat("a ", maxSearchBytes/2) + `late"]`
	got := sorted(searchHashes([]byte(big), []byte(`["other"]`)))
	require.Equal(t, hashesOf("a", "other"), got)
}

func TestQueryHashes(t *testing.T) {
	t.Parallel()
	got, err := queryHashes("Hello,  WORLD hello!")
	require.NoError(t, err)
	require.Equal(t, hashesOf("hello", "world"), sorted(got))
	stored := searchHashes([]byte(`{"inputs":[{"content":"well hello there world"}]}`))
	for _, h := range got {
		require.Contains(t, stored, h)
	}
}

// FuzzSearchHashes checks searchHashes against the reference on whatever JSON cleanJSON
// accepts, so the hand-written scanner never misses or invents a word.
func FuzzSearchHashes(f *testing.F) {
	for _, s := range []string{`{"a":"b c"}`, `["x\"y:z", {"k" : "v"}]`, `"\u00e9t\u00c9"`, `{"a":{"b":["c",1,"d e"]}}`, `"\ud83d\ude00 smile"`, `[1e400, "n"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := cleanJSON(b)
		if err != nil || doc == nil || len(doc) > maxSearchBytes {
			return
		}
		got := sorted(searchHashes(doc))
		if want := refHashes(t, doc); !slices.Equal(got, want) {
			t.Fatalf("searchHashes(%q) = %v, want %v", doc, got, want)
		}
	})
}

// sorted returns hs sorted, after checking that it holds no value twice.
func sorted(hs []int64) []int64 {
	out := slices.Clone(hs)
	slices.Sort(out)
	if len(slices.Compact(slices.Clone(out))) != len(out) {
		panic("repeated hash")
	}
	return out
}

func TestDedupe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give, want []int64
	}{
		{give: nil, want: nil},
		{give: []int64{5}, want: []int64{5}},
		{give: []int64{3, 1, 3, 2, 1, 0, 0}, want: []int64{3, 1, 2, 0}},
		{give: []int64{-1, 7, 15, 23, 7, -1}, want: []int64{-1, 7, 15, 23}}, // colliding low bits
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, dedupe(slices.Clone(tt.give)))
	}
}

func TestParsePartitionName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give    string
		wantDay string // empty: invalid
	}{
		{give: "conversations_p20260301", wantDay: "2026-03-01"},
		{give: "conversations_p00010101", wantDay: "0001-01-01"},
		{give: "conversations_p99991231", wantDay: "9999-12-31"},
		{give: "conversations_p20260230"},
		{give: "conversations_p2026031"},
		{give: "conversations_p202603011"},
		{give: "conversations_p2026-3-1"},
		{give: "conversations_20260301"},
		{give: "conversations_p+2026030"},
		{give: "other_p20260301"},
		{give: ""},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePartitionName(tt.give)
			if tt.wantDay == "" {
				require.ErrorIs(t, err, ErrInvalidPartitionName)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantDay, got.Format("2006-01-02"))
			require.Equal(t, tt.give, PartitionName(got))
		})
	}
}

// FuzzParsePartitionName checks that a name parses only if it is exactly the name of the
// day it parses to.
func FuzzParsePartitionName(f *testing.F) {
	for _, s := range []string{"conversations_p20260301", "conversations_p00000101", "conversations_p2026", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParsePartitionName(s)
		if err != nil {
			return
		}
		if got := PartitionName(d); got != s {
			t.Fatalf("ParsePartitionName(%q) = %v, whose name is %q", s, d, got)
		}
	})
}

func BenchmarkSearchHashes(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < 1024; i++ {
		sb.WriteString([]string{"Please ", "summarise ", "the ", "quarterly ", "report ", "for ", "ACME ", "<EMAIL_ADDRESS> ", "invoice ", "March "}[i%10])
		sb.WriteString(strings.Repeat("x", i%7))
		sb.WriteString(" ")
	}
	req := []byte(`{"inputs":[{"messages":[{"ofUser":{"content":[{"text":` + strconvQuote(sb.String()) + `}]}}]}]}`)
	resp := []byte(`{"outputs":[{"choices":[{"finishReason":"stop","message":{"content":"Revenue rose 4% in Q3."}}]}]}`)
	b.SetBytes(int64(len(req) + len(resp)))
	b.ReportAllocs()
	for b.Loop() {
		_ = searchHashes(req, resp)
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
