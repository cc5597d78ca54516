package store

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestCleanJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give string
		want string
	}{
		{name: "empty is null", give: "", want: ""},
		{name: "unchanged", give: `{"b":[1,2.5,-3,true,null],"a":"x\"y\\z \u00e9"}`, want: `{"b":[1,2.5,-3,true,null],"a":"x\"y\\z \u00e9"}`},
		{name: "nul escape", give: `{"a":"x\u0000y"}`, want: `{"a":"x` + "\uFFFD" + `y"}`},
		{name: "escaped backslash then u0000 is text", give: `["\\u0000"]`, want: `["\\u0000"]`},
		{name: "lone surrogate", give: `["\udc00"]`, want: `["` + "\uFFFD" + `"]`},
		{name: "surrogate pair kept", give: `["\ud83d\ude00"]`, want: `["😀"]`},
		{name: "nested order kept", give: `{"z":{"y":[{"x":"\u0000"}],"w":1},"v":[]}`, want: `{"z":{"y":[{"x":"` + "\uFFFD" + `"}],"w":1},"v":[]}`},
		{name: "overflowing number", give: `[1e400,-1E+400]`, want: `["1e400","-1E+400"]`},
		{name: "underflowing number", give: `{"n":1e-400}`, want: `{"n":"1e-400"}`},
		{name: "zero with small exponent", give: `[0e-5,-0.0E+9,1.5e3]`, want: `[0e-5,-0.0E+9,1.5e3]`},
		{name: "zero with huge exponent", give: `[0e-20000]`, want: `["0e-20000"]`},
		{name: "subnormal", give: `[4e-324]`, want: `[4e-324]`},
		{name: "invalid utf8", give: "[\"a\xffb\"]", want: `["a` + "\uFFFD" + `b"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := cleanJSON([]byte(tt.give))
			require.NoError(t, err)
			require.Equal(t, tt.want, string(got))
		})
	}
}

func TestCleanJSONLongNumber(t *testing.T) {
	t.Parallel()
	long := make([]byte, 400)
	for i := range long {
		long[i] = '7'
	}
	got, err := cleanJSON([]byte("[" + string(long) + "]"))
	require.NoError(t, err)
	require.Equal(t, `["`+string(long)+`"]`, string(got))
}

func TestCleanJSONRejects(t *testing.T) {
	t.Parallel()
	for _, give := range []string{"{", "nope", `{"a":1,}`, "[1] [2]", "\"\x00\""} {
		_, err := cleanJSON([]byte(give))
		require.Error(t, err, give)
	}
}

// FuzzCleanJSON checks that whatever cleanJSON accepts comes out as valid UTF-8 JSON that a
// google.protobuf.Value can hold, with no escape jsonb rejects, and that cleaning is stable.
func FuzzCleanJSON(f *testing.F) {
	for _, s := range []string{`{"a":"\u0000"}`, `[1e400]`, `["\ud800"]`, `{"a":[1,{"b":null}]}`, `"x"`, `1e-400`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := cleanJSON(b)
		if err != nil || got == nil {
			return
		}
		if !utf8.Valid(got) || !json.Valid(got) {
			t.Fatalf("cleanJSON(%q) = %q: not valid UTF-8 JSON", b, got)
		}
		if err := protojson.Unmarshal(got, &structpb.Value{}); err != nil {
			t.Fatalf("cleanJSON(%q) = %q: not a Value: %v", b, got, err)
		}
		again, err := cleanJSON(got)
		if err != nil {
			t.Fatalf("cleanJSON(cleanJSON(%q)): %v", b, err)
		}
		if needsRewrite(got) {
			// A rewrite may only change what jsonb or Value cannot hold, so the result is a
			// fixed point.
			if string(again) != string(got) {
				t.Fatalf("cleanJSON not stable: %q -> %q -> %q", b, got, again)
			}
		}
	})
}
