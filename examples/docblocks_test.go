package examples_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOutputMismatch pins how the quickstart test compares a command's output with the
// page: JSON by value with "..." wildcards, text by line with spaces collapsed.
func TestOutputMismatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, want, lang, got string
		ok                    bool
	}{
		{name: "json equal, other spacing", lang: "json", want: `{"a":[1,"x"]}`, got: `{"a": [1, "x"]}`, ok: true},
		{name: "json value differs", lang: "json", want: `{"a":"4"}`, got: `{"a":"5"}`},
		{name: "json field missing", lang: "json", want: `{"a":1,"b":2}`, got: `{"a":1}`},
		{name: "json field not on the page", lang: "json", want: `{"a":1}`, got: `{"a":1,"b":2}`},
		{name: "json wildcard matches any value", lang: "json", want: `{"a":"...","b":"..."}`, got: `{"a":{"x":1},"b":"y"}`, ok: true},
		{name: "json prefix wildcard", lang: "json", want: `{"id":"019..."}`, got: `{"id":"019abc"}`, ok: true},
		{name: "json prefix wildcard mismatch", lang: "json", want: `{"id":"019..."}`, got: `{"id":"020abc"}`},
		{name: "json array length", lang: "json", want: `[1]`, got: `[1,2]`},
		{name: "not json", lang: "json", want: `{}`, got: `oops`},
		{name: "text spaces collapse", lang: "text", want: "a b\n", got: "a    b\n", ok: true},
		{name: "text wildcard", lang: "text", want: "x ... z\n", got: "x 1 2 y z\n", ok: true},
		{name: "text line differs", lang: "text", want: "x ... z\n", got: "x 1 2 y\n"},
		{name: "text line count", lang: "text", want: "a\n", got: "a\nb\n"},
		{name: "no output block", lang: "", want: "", got: "anything", ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := outputMismatch(tt.want, tt.lang, tt.got)
			if tt.ok {
				require.Empty(t, m)
			} else {
				require.NotEmpty(t, m)
			}
		})
	}
}

// TestShellBlocks pins how a page's blocks are read: sh blocks in order, a directive just
// above, and the json or text block just under as the expected output.
func TestShellBlocks(t *testing.T) {
	t.Parallel()
	doc := "# Page\n\n<!-- quickstart-test: up (why) -->\n```sh\nmake up\n```\n\ntext\n\n" +
		"```sh\ncurl x\n```\n\n```json\n{}\n```\n\n```yaml\na: 1\n```\n\n```sh\necho hi\n```\n\nprose\n\n```text\nhi\n```\n"
	got := shellBlocks(doc)
	require.Equal(t, []docBlock{
		{line: 4, directive: "up", code: "make up\n"},
		{line: 10, code: "curl x\n", want: "{}\n", wantLang: "json"},
		{line: 22, code: "echo hi\n"},
	}, got)
}
