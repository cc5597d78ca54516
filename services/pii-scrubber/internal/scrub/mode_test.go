package scrub

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/restore"
)

func TestModes(t *testing.T) {
	t.Parallel()
	s := mustNewKeyed(t)
	const in = "mail Bob@Example.com, card 4111 1111 1111 1111, iban DE89 3704 0044 0532 0130 00, ip 10.0.0.1"
	tests := []struct {
		name string
		mode Mode
		want string
	}{
		{"replace", ModeReplace, "mail <EMAIL_ADDRESS>, card <CREDIT_CARD>, iban <IBAN>, ip <IP>"},
		{"mask", ModeMask, "mail ***@*******.***, card **** **** **** 1111, iban **** **** **** **** **30 00, ip **.*.*.*"},
		{"tokenize", ModeTokenize, "mail <EMAIL_ADDRESS_1>, card <CREDIT_CARD_1>, iban <IBAN_1>, ip <IP_1>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := s.NewCall(Options{Mode: tt.mode})
			require.NoError(t, err)
			res := c.Scrub(in)
			require.Equal(t, tt.want, res.Text)
			require.Len(t, res.Findings, 4)
			again := c.Scrub(res.Text)
			require.Equal(t, res.Text, again.Text, "not idempotent")
		})
	}
}

func TestModeHash(t *testing.T) {
	t.Parallel()
	s := mustNewKeyed(t)
	c, err := s.NewCall(Options{Mode: ModeHash})
	require.NoError(t, err)
	a := c.Scrub("mail Bob@Example.com or +44 20 7946 0958")
	b := c.Scrub("mail bob@example.com or +44 (0)20 7946 0958")
	require.Regexp(t, `^mail <EMAIL_ADDRESS:[0-9a-f]{16}> or <PHONE_NUMBER:[0-9a-f]{16}>$`, a.Text)
	// The same address in another case hashes alike; the phone number is
	// normalized to its digits, so the trunk (0) makes another value.
	require.Equal(t, strings.Fields(a.Text)[1], strings.Fields(b.Text)[1])
	require.Equal(t, a.Text, c.Scrub(a.Text).Text, "not idempotent")

	other, err := New(Config{HashKey: []byte("another key of sixteen bytes")})
	require.NoError(t, err)
	oc, err := other.NewCall(Options{Mode: ModeHash})
	require.NoError(t, err)
	require.NotEqual(t, a.Text, oc.Scrub("mail Bob@Example.com or +44 20 7946 0958").Text, "the key must matter")

	_, err = mustNew(t).NewCall(Options{Mode: ModeHash})
	require.ErrorIs(t, err, ErrNoHashKey)
}

func TestModeTokenize(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	texts := []string{
		"Hi, I am <EMAIL_ADDRESS_1> in a test, mail bob@example.com or alice@example.com.",
		"Again BOB@example.com, and card 4111-1111-1111-1111.",
	}
	c, err := s.NewCall(Options{Mode: ModeTokenize})
	require.NoError(t, err)
	for _, text := range texts {
		c.Reserve(text)
	}
	got := []string{c.Scrub(texts[0]).Text, c.Scrub(texts[1]).Text}
	require.Equal(t, []string{
		"Hi, I am <EMAIL_ADDRESS_1> in a test, mail <EMAIL_ADDRESS_2> or <EMAIL_ADDRESS_3>.",
		"Again <EMAIL_ADDRESS_2>, and card <CREDIT_CARD_1>.",
	}, got, "a spoofed token is skipped; the same value keeps its token across texts")
	tokens := c.Tokens()
	require.Equal(t, []Token{
		{Token: "<EMAIL_ADDRESS_2>", Entity: EntityEmail, Value: "bob@example.com"},
		{Token: "<EMAIL_ADDRESS_3>", Entity: EntityEmail, Value: "alice@example.com"},
		{Token: "<CREDIT_CARD_1>", Entity: EntityCreditCard, Value: "4111-1111-1111-1111"},
	}, tokens)

	// A later call of the conversation continues the mapping.
	next, err := s.NewCall(Options{Mode: ModeTokenize, Tokens: tokens})
	require.NoError(t, err)
	require.Equal(t, "<EMAIL_ADDRESS_3> wrote to <EMAIL_ADDRESS_4> about <CREDIT_CARD_1>",
		next.Scrub("alice@example.com wrote to carol@example.com about 4111 1111 1111 1111").Text,
		"the card written with spaces is the same value")
	require.Len(t, next.Tokens(), 4)
}

func TestNewCallErrors(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	tests := []struct {
		name string
		give Options
		want error
	}{
		{"unknown entity", Options{Entities: []string{"SHOE_SIZE"}}, ErrUnknownEntity},
		{"unknown threshold entity", Options{Thresholds: map[string]float64{"SHOE_SIZE": 0.5}}, ErrUnknownEntity},
		{"threshold above one", Options{Thresholds: map[string]float64{EntityPhone: 1.5}}, ErrBadOption},
		{"threshold negative", Options{Thresholds: map[string]float64{EntityPhone: -0.1}}, ErrBadOption},
		{"unknown mode", Options{Mode: 9}, ErrBadOption},
		{"tokens outside tokenize", Options{Tokens: []Token{{Token: "<IP_1>", Entity: EntityIP, Value: "10.0.0.1"}}}, ErrBadOption},
		{"token of another entity", Options{Mode: ModeTokenize, Tokens: []Token{{Token: "<IP_1>", Entity: EntityEmail, Value: "a@b.co"}}}, ErrBadOption},
		{"malformed token", Options{Mode: ModeTokenize, Tokens: []Token{{Token: "<IP_01>", Entity: EntityIP, Value: "10.0.0.1"}}}, ErrBadOption},
		{"hash without key", Options{Mode: ModeHash}, ErrNoHashKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := s.NewCall(tt.give)
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestThresholds(t *testing.T) {
	t.Parallel()
	// +44 20 7946 0958 is valid (0.95); +2222222222, Dapr's example, only
	// has the shape of an E.164 number (0.55).
	const in = "see +44 20 7946 0958 or +2222222222"
	tests := []struct {
		name string
		give map[string]float64
		want string
	}{
		{"defaults", nil, "see <PHONE_NUMBER> or <PHONE_NUMBER>"},
		{"validated only", map[string]float64{EntityPhone: 0.6}, "see <PHONE_NUMBER> or +2222222222"},
		{"none", map[string]float64{EntityPhone: 0.96}, "see +44 20 7946 0958 or +2222222222"},
		{"everything", map[string]float64{EntityPhone: 0}, "see <PHONE_NUMBER> or <PHONE_NUMBER>"},
		{"other entities unaffected", map[string]float64{EntityIP: 1}, "see <PHONE_NUMBER> or <PHONE_NUMBER>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(Config{Thresholds: tt.give})
			require.NoError(t, err)
			res, err := s.Scrub(in, nil)
			require.NoError(t, err)
			require.Equal(t, tt.want, res.Text)
		})
	}
	s := mustNew(t)
	c, err := s.NewCall(Options{Thresholds: map[string]float64{EntityPhone: 0.6}})
	require.NoError(t, err)
	require.Equal(t, "see <PHONE_NUMBER> or +2222222222", c.Scrub(in).Text, "a call may override a threshold")
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give Config
		want error
	}{
		{"unknown default entity", Config{Entities: []string{"PHONE"}}, ErrUnknownEntity},
		{"bad threshold", Config{Thresholds: map[string]float64{EntityIP: 2}}, ErrBadOption},
		{"phone region typo UK", Config{PhoneRegions: []string{"UK"}}, ErrBadOption},
		{"phone region typo FE", Config{PhoneRegions: []string{"FR", "FE"}}, ErrBadOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.give)
			require.ErrorIs(t, err, tt.want)
		})
	}
	require.NoError(t, CheckPhoneRegions(DefaultPhoneRegions()), "every default region must be known to libphonenumber")
}

// TestPhoneRegions is the negative control of pii.md §3.2: a national number
// is found with its region configured and not without it, so a region that
// silently stops working fails here.
func TestPhoneRegions(t *testing.T) {
	t.Parallel()
	national := map[string]string{
		"US": "(201) 555-0123", "GB": "020 7946 0958", "DE": "030 12345678", "FR": "01 42 68 53 00", "ES": "912 34 56 78",
		"IT": "02 1234 5678", "NL": "020 123 4567", "IN": "098765 43210", "BR": "(11) 3456-7890", "JP": "03-3456-7890",
		"AU": "(02) 9876 5432", "CA": "(613) 555-0142",
	}
	for region, number := range national {
		t.Run(region, func(t *testing.T) {
			t.Parallel()
			with, err := New(Config{PhoneRegions: []string{region}})
			require.NoError(t, err)
			res, err := with.Scrub("number "+number, []string{EntityPhone})
			require.NoError(t, err)
			require.Equal(t, "number <PHONE_NUMBER>", res.Text, "%s with its region", number)
			if region == "US" || region == "CA" {
				return // NANP's shape is recognised without metadata
			}
			other := "US"
			without, err := New(Config{PhoneRegions: []string{other}})
			require.NoError(t, err)
			res, err = without.Scrub("number "+number, []string{EntityPhone})
			require.NoError(t, err)
			require.Equal(t, "number "+number, res.Text, "%s without its region", number)
		})
	}
}

func TestScrubJSON(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	tests := []struct {
		name string
		give string
		want string
	}{
		{"values", `{"to":"bob@example.com","phone":"+44 20 7946 0958"}`, `{"to":"<EMAIL_ADDRESS>","phone":"<PHONE_NUMBER>"}`},
		{"keys stay", `{"bob@example.com": 1}`, `{"bob@example.com": 1}`},
		{"escaped newline before an address", `{"body":"hi\nbob@example.com"}`, `{"body":"hi\n<EMAIL_ADDRESS>"}`},
		{"unicode escape inside an address", `{"to":"bob\u0040example.com"}`, `{"to":"<EMAIL_ADDRESS>"}`},
		{"number", `{"card":4111111111111111,"n":12}`, `{"card":"<CREDIT_CARD>","n":12}`},
		{"array and nesting", `[{"a":["10.0.0.1"]},"x"]`, `[{"a":["<IP>"]},"x"]`},
		{"layout kept", "{\n  \"ip\" : \"10.0.0.1\" ,\n  \"v\": \"1.2.3.4.5\"\n}", "{\n  \"ip\" : \"<IP>\" ,\n  \"v\": \"1.2.3.4.5\"\n}"},
		{"invalid json is text", `{"to": bob@example.com`, `{"to": <EMAIL_ADDRESS>`},
		{"nothing", `{"a":"b"}`, `{"a":"b"}`},
		// Keys are context for their values, as in text (issue 16).
		{"phone key raises", `{"phone": "538 2274", "note": "538 2274"}`, `{"phone": "<PHONE_NUMBER>", "note": "538 2274"}`},
		{"snake and camel keys", `{"mobile_phone": "47-12-63-08", "mobilePhone": "47-12-63-09"}`,
			`{"mobile_phone": "<PHONE_NUMBER>", "mobilePhone": "<PHONE_NUMBER>"}`},
		{"array elements keep the key", `{"phones": ["538 2274", "538 2275"], "n": ["538 2276"]}`,
			`{"phones": ["<PHONE_NUMBER>", "<PHONE_NUMBER>"], "n": ["538 2276"]}`},
		{"version key lowers", `{"client_version": "9.14.3.2", "ip": "9.14.3.2"}`, `{"client_version": "9.14.3.2", "ip": "<IP>"}`},
		{"card key on a number", `{"card_number": 3597123456789018, "order": 3597123456789018}`,
			`{"card_number": "<CREDIT_CARD>", "order": 3597123456789018}`},
		{"value words come first", `{"phone": "order 538 2274"}`, `{"phone": "order 538 2274"}`},
		{"object resets the key", `{"phone": {"id": "538 2274"}}`, `{"phone": {"id": "538 2274"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := s.NewCall(Options{})
			require.NoError(t, err)
			res := c.ScrubJSON(tt.give)
			require.Equal(t, tt.want, res.Text)
			if json.Valid([]byte(tt.give)) {
				require.True(t, json.Valid([]byte(res.Text)))
			}
			for _, f := range res.Findings {
				require.True(t, f.Start >= 0 && f.End <= len(tt.give) && f.Start < f.End)
			}
		})
	}
	c, err := s.NewCall(Options{})
	require.NoError(t, err)
	res := c.ScrubJSON(`{"to":"bob\u0040example.com"}`)
	require.Equal(t, []Finding{{Entity: EntityEmail, Start: 7, End: 27, Score: scoreEmail}}, res.Findings, "offsets into the JSON text")
}

// TestModesOnCorpus checks every mode on the labelled corpus: a second pass
// over the output finds nothing, and in tokenize mode restoring the tokens
// (with the public restore package, as the router does) gives back the
// input, each value in the form of its first occurrence.
func TestModesOnCorpus(t *testing.T) {
	t.Parallel()
	s := mustNewKeyed(t)
	for _, l := range loadCorpus(t) {
		for _, mode := range []Mode{ModeMask, ModeHash, ModeTokenize} {
			c, err := s.NewCall(Options{Mode: mode})
			require.NoError(t, err)
			c.Reserve(l.text)
			res := c.Scrub(l.text)
			again := c.Scrub(res.Text)
			if mode == ModeMask {
				// Masking keeps the shape of a value but not its letters and
				// digits, so a neighbour the first pass left alone (the
				// 555-123-4567 of "10.0.0.1-555-123-4567") may read
				// differently; what was masked must never match again.
				requireOutsideMasks(t, l.text, res, again.Findings)
				continue
			}
			require.Empty(t, again.Findings, "mode %d: a second pass found %v in %q (from %q)", mode, again.Findings, res.Text, l.text)
			if mode != ModeTokenize {
				continue
			}
			values := map[string]string{}
			first := map[string]string{} // entity and normalized value -> first surface form
			for _, tk := range c.Tokens() {
				values[tk.Token] = tk.Value
				e, _ := entityOf(tk.Entity)
				first[tk.Entity+"\x00"+normalize(tk.Value, e)] = tk.Value
			}
			var want strings.Builder
			prev := 0
			for _, f := range res.Findings {
				e, _ := entityOf(f.Entity)
				want.WriteString(l.text[prev:f.Start])
				want.WriteString(first[f.Entity+"\x00"+normalize(l.text[f.Start:f.End], e)])
				prev = f.End
			}
			want.WriteString(l.text[prev:])
			require.Equal(t, want.String(), restore.New(values).Text(res.Text), "round trip of %q", l.text)
		}
	}
}

// requireOutsideMasks checks that no finding of a second pass over a masked
// text overlaps a masked span.
func requireOutsideMasks(t *testing.T, in string, res Result, second []Finding) {
	t.Helper()
	shift := 0 // output offset minus input offset so far
	for _, f := range res.Findings {
		var b strings.Builder
		mask(&b, in[f.Start:f.End], 0)
		start, end := f.Start+shift, f.Start+shift+b.Len()
		for _, g := range second {
			require.False(t, g.Start < end && start < g.End, "masked %q matched again in %q", in[f.Start:f.End], res.Text)
		}
		shift += b.Len() - (f.End - f.Start)
	}
}
