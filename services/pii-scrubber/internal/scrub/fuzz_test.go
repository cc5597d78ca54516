package scrub

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// fuzzSeeds are texts that exercise every detector and the traps.
func fuzzSeeds() []string {
	seeds := []string{
		"well hello there, my phone number is +2222222222",
		"IP is 192.168.1.100 and card 4263982640269299",
		"ISBN 978-3-16-148410-0 and order id 123-45-6789",
		"https://example.com/reset?email=alice@example.com&ssn=123-45-6789",
		"10.0.0.1-555-123-4567 bob@x.co-10.0.0.1 IPv6:fe80::1 4111111111111111@example.com",
		"\xff\xfe@\xc3.com +1\u00a0555\u00a0123\u00a04567 \u2013",
		"IBAN DE89 3704 0044 0532 0130 00, mac 00:1a:2b:3c:4d:5e, btc bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
		"postgres://u:p4ss!word@db:5432/x password=hunter2! Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_sig_sig",
		"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
		"電話番号は03-3456-7890です。 <EMAIL_ADDRESS_1> <IP:0123456789abcdef>",
		`{"to":"bob@example.com","n":4111111111111111,"s":"\u0040 \ud83d\ude00"}`,
	}
	return append(append(seeds, positives...), traps...)
}

// entitiesOf maps a fuzzed bit mask to an entity list.
func entitiesOf(mask uint16) []string {
	var entities []string
	for i, e := range Entities() {
		if mask&(1<<i) != 0 {
			entities = append(entities, e)
		}
	}
	return entities
}

// FuzzScrub checks that Scrub never fails or panics on any input and entity
// subset, and that every result satisfies checkResult: findings sorted,
// disjoint, in bounds and on rune boundaries, the text consistent with them,
// valid UTF-8 preserved, and a second pass a no-op.
//
//	go test -run '^$' -fuzz FuzzScrub -fuzztime 60s ./services/pii-scrubber/internal/scrub/
func FuzzScrub(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed, uint16(0))
		f.Add("x "+seed+" y", uint16(0b1_0101_0101_0101))
	}
	s := mustNew(f)
	f.Fuzz(func(t *testing.T, text string, mask uint16) {
		entities := entitiesOf(mask)
		res, err := s.Scrub(text, entities)
		require.NoError(t, err)
		checkResult(t, s, text, entities, res)
	})
}

// FuzzStream checks that any chunking of any input gives the batch result,
// text and findings, in every mode.
//
//	go test -run '^$' -fuzz FuzzStream -fuzztime 60s ./services/pii-scrubber/internal/scrub/
func FuzzStream(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed, uint8(3), uint8(0))
		f.Add(strings.Repeat(seed+" ", 12), uint8(97), uint8(3))
	}
	s := mustNewKeyed(f)
	f.Fuzz(func(t *testing.T, text string, chunk uint8, mode uint8) {
		if len(text) > 4<<10 {
			return // large inputs make minimisation slow; TestStream* cover them
		}
		checkStream(t, s, text, Mode(mode%4), chunkSizes(int(chunk)))
	})
}

// FuzzScrubJSON checks that valid JSON stays valid JSON with the same
// structure, and that invalid JSON is scrubbed as text.
//
//	go test -run '^$' -fuzz FuzzScrubJSON -fuzztime 60s ./services/pii-scrubber/internal/scrub/
func FuzzScrubJSON(f *testing.F) {
	for _, seed := range []string{
		`{"to":"bob@example.com","phone":"+44 20 7946 0958","card":4111111111111111}`,
		`["\u0062ob@example.com", "a\\nbob@example.com", "\"10.0.0.1\""]`,
		`{"email@example.com": "key is not scrubbed", "x": [1, 2.5e3, -4111111111111111]}`,
		`"\ud83d\ude00 +1 (555) 123-4567"`, `{"a":`, `null`,
	} {
		f.Add(seed)
	}
	s := mustNew(f)
	f.Fuzz(func(t *testing.T, text string) {
		c, err := s.NewCall(Options{})
		require.NoError(t, err)
		res := c.ScrubJSON(text)
		if !json.Valid([]byte(text)) {
			require.Equal(t, c.Scrub(text), res)
			return
		}
		require.True(t, json.Valid([]byte(res.Text)), "invalid JSON out of %q: %q", text, res.Text)
		in, out := decodeNumbers(t, text), decodeNumbers(t, res.Text)
		require.Equal(t, shape(in), shape(out), "structure changed: %q -> %q", text, res.Text)
		again := c.ScrubJSON(res.Text)
		require.Equal(t, res.Text, again.Text, "not idempotent")
		for _, fd := range res.Findings {
			require.True(t, fd.Start >= 0 && fd.Start < fd.End && fd.End <= len(text))
		}
	})
}

// decodeNumbers decodes JSON keeping numbers as text (1E1000 overflows a
// float64).
func decodeNumbers(t *testing.T, text string) any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(text))
	d.UseNumber()
	var v any
	require.NoError(t, d.Decode(&v))
	return v
}

// shape reduces a decoded JSON value to its structure: keys and kinds.
func shape(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range x {
			m[k] = shape(e)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = shape(e)
		}
		return out
	case json.Number, string:
		return "scalar" // a number holding an entity becomes a string
	default:
		return x
	}
}

// FuzzPlausibleIP checks that the allocation-free pre-checks never reject an
// address netip accepts, and that the IPv4 one agrees with netip exactly.
func FuzzPlausibleIP(f *testing.F) {
	for _, seed := range []string{
		"::", "::1", "1::", "2001:db8::1", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::ffff:192.0.2.128",
		"1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "1:::2", ":1::", "1::2::3", "10:30:00",
		"00:1A:2B:3C:4D:5E", "1.2.3.4", "01.2.3.4", "256.1.1.1", "1.2.3.4.", "1..2.3",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkPlausible(t, s)
	})
}

// FuzzDigitRun fuzzes the digit-group candidate extractor behind phones,
// cards, SSNs, IPv4 and the national identifiers on its own: the groups it
// reports lie inside the text, in order, and hold exactly its digits.
func FuzzDigitRun(f *testing.F) {
	for _, seed := range []string{"+44 (0)20 7946 0958", "(555)123-4567", "4111 1111 1111 1111 123", "1.2.3.4", "0 1 2 3 4 5 6"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if text == "" || (!isDigit(text[0]) && text[0] != '+' && text[0] != '(') {
			return
		}
		d := &digitRun{start: 0, plus: text[0] == '+'}
		d.parse(text)
		prev, n := 0, 0
		for k := range d.ng {
			g := d.groups[k]
			require.True(t, prev <= g.start && g.start < g.end && g.end <= g.close && g.close <= len(text))
			for i := g.start; i < g.end; i++ {
				require.True(t, isDigit(text[i]))
				require.Equal(t, text[i], d.digits[n])
				n++
			}
			require.Equal(t, n, d.cum[k])
			prev = g.close
		}
		require.LessOrEqual(t, n, maxDigits)
	})
}

func checkPlausible(t testing.TB, s string) {
	t.Helper()
	addr, err := netip.ParseAddr(s)
	if err == nil && addr.Is6() && addr.Zone() == "" {
		require.True(t, plausibleV6(s), "plausibleV6 rejects valid %q", s)
	}
	require.Equal(t, err == nil && addr.Is4(), plausibleV4(s), "plausibleV4 disagrees with netip on %q", s)
}

// chunkSizes turns a fuzzed byte into a repeating pattern of chunk sizes.
func chunkSizes(b int) []int {
	return []int{1 + b%7, 1 + b, 1 + (b*13)%300, 1}
}

// checkStream writes text to a Stream in chunks of the given sizes (cycled)
// and checks the concatenated output and findings against one batch call.
func checkStream(t testing.TB, s *Scrubber, text string, mode Mode, sizes []int) {
	t.Helper()
	batch, err := s.NewCall(Options{Mode: mode})
	require.NoError(t, err)
	// A stream reserves the placeholders the input writes as they arrive,
	// at least StreamHold bytes before it releases text near them; the
	// batch call reserves them all first, as the RPC handler does.
	batch.Reserve(text)
	want := batch.Scrub(text)

	call, err := s.NewCall(Options{Mode: mode})
	require.NoError(t, err)
	st := call.NewStream()
	var got strings.Builder
	var findings []Finding
	for i, k := 0, 0; i < len(text); k++ {
		n := min(sizes[k%len(sizes)], len(text)-i)
		p := st.Write(text[i : i+n])
		got.WriteString(p.Text)
		findings = append(findings, p.Findings...)
		i += n
		require.LessOrEqual(t, st.Pending(), 2*StreamHold+maxTokenHold+maxPEM+len(text[i-n:i])+StreamHold, "unbounded hold-back")
	}
	p := st.Flush()
	got.WriteString(p.Text)
	findings = append(findings, p.Findings...)
	require.Equal(t, want.Text, got.String(), "chunked output differs from batch for %q", text)
	if len(want.Findings) == 0 {
		require.Empty(t, findings)
	} else {
		require.Equal(t, want.Findings, findings)
	}
	require.Equal(t, batch.Tokens(), call.Tokens())
	if utf8.ValidString(text) {
		require.True(t, utf8.ValidString(got.String()))
	}
}
