package scrub

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// mustNewKeyed returns a Scrubber that can hash.
func mustNewKeyed(tb testing.TB) *Scrubber {
	tb.Helper()
	s, err := New(Config{HashKey: []byte("0123456789abcdef-test-key")})
	require.NoError(tb, err)
	return s
}

// TestStreamEqualsBatch streams the labelled corpus, as one long text and
// line by line, in many chunkings and every mode: the output and findings
// must equal one batch call on the whole text.
func TestStreamEqualsBatch(t *testing.T) {
	t.Parallel()
	s := mustNewKeyed(t)
	lines := loadCorpus(t)
	var all strings.Builder
	for _, l := range lines {
		all.WriteString(l.text)
		all.WriteByte('\n')
	}
	whole := all.String()
	chunkings := [][]int{{1}, {3}, {7, 1, 13}, {64}, {1000}, {4096}, {StreamHold - 1, 1}, {len(whole)}}
	if raceEnabled {
		chunkings = [][]int{{7, 1, 13}, {StreamHold - 1, 1}}
	}
	for _, mode := range []Mode{ModeReplace, ModeMask, ModeHash, ModeTokenize} {
		for _, sizes := range chunkings {
			checkStream(t, s, whole, mode, sizes)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, l := range lines {
		checkStream(t, s, l.text, Mode(r.IntN(4)), []int{1 + r.IntN(8)})
	}
}

// TestStreamLongEntities covers entities longer than the hold-back window,
// split at every kind of place.
func TestStreamLongEntities(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	body := strings.Repeat("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n", 60)
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJkYXRhIjoi" + strings.Repeat("QUFB", 700) + "In0.c2lnbmF0dXJl"
	tests := []struct {
		name string
		text string
	}{
		{"pem with end", "key:\n-----BEGIN PRIVATE KEY-----\n" + body + "-----END PRIVATE KEY-----\nthanks, call 555-123-4567"},
		{"pem without end", "key:\n-----BEGIN EC PRIVATE KEY-----\n" + body + "\nand then prose bob@example.com " + strings.Repeat("filler ", 400)},
		{"jwt longer than the window", "token " + jwt + " and mail bob@example.com"},
		{"entity at every offset", strings.Repeat("x", StreamHold-5) + " bob@example.com 4111 1111 1111 1111 DE89 3704 0044 0532 0130 00"},
		{"placeholders and tokens in the input", strings.Repeat("<EMAIL_ADDRESS_1> bob@example.com <IP> ", 200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, sizes := range [][]int{{1}, {5}, {StreamHold}, {StreamHold + 1}, {2*StreamHold + 3}, {100000}} {
				checkStream(t, s, tt.text, ModeReplace, sizes)
				checkStream(t, s, tt.text, ModeTokenize, sizes)
			}
		})
	}
}

// TestStreamHoldsBack checks that nothing near the end is released early
// and that a release happens once enough text has arrived.
func TestStreamHoldsBack(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	c, err := s.NewCall(Options{})
	require.NoError(t, err)
	st := c.NewStream()
	p := st.Write("my email is bob@exa")
	require.Empty(t, p.Text)
	p = st.Write("mple.com and " + strings.Repeat("more words ", 300))
	require.Contains(t, p.Text, "my email is <EMAIL_ADDRESS>")
	require.NotContains(t, p.Text, "bob")
	require.Equal(t, []Finding{{Entity: EntityEmail, Start: 12, End: 27, Score: scoreEmail}}, p.Findings)
	require.Positive(t, st.Pending())
	require.LessOrEqual(t, st.Pending(), 3*StreamHold)
	rest := st.Flush()
	require.Zero(t, st.Pending())
	require.True(t, strings.HasSuffix(rest.Text, "more words "))
}
