package scrub

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestContextRaises checks the rules that accept, next to a label only,
// candidates that fail strict validation: each is found with its own score
// after the label, passes through without it or after a word that makes
// it another kind of number, and drops out when the entity's threshold is
// set just above its score.
func TestContextRaises(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	tests := []struct {
		name     string
		label    string // text before the value that raises it
		value    string
		entity   string
		score    float64
		unlabels []string // texts before the value that must not raise it
	}{
		{"short local 3-4", "Phone: ", "538 2274", EntityPhone, scorePhoneLabelledShort, []string{"", "Room ", "Order "}},
		{"short local 2-2-2-2", "Mobile: ", "47-12-63-08", EntityPhone, scorePhoneLabelledShort, []string{"", "Invoice: "}},
		{"parenthesised area", "Fax: ", "(52) 614-239", EntityPhone, scorePhoneLabelledShort, []string{""}},
		{"unvalidated 12 digits", "Desk: ", "31 495 207 3361", EntityPhone, scorePhoneLabelled, []string{"", "Tracking: "}},
		{"2-6", "call me on ", "88 417293", EntityPhone, scorePhoneLabelledShort, []string{"", "lot "}},
		{"reach me at", "You can reach me at ", "538 2274", EntityPhone, scorePhoneLabelledShort, []string{"You can find it at "}},
		{"office label", "Phone-Office: ", "538 2274", EntityPhone, scorePhoneLabelledShort, nil},
		{"office fax", "Office fax: ", "538 2274", EntityPhone, scorePhoneLabelledShort, []string{"Office: "}},
		{"Spanish label", "Teléfono: ", "47-12-63-08", EntityPhone, scorePhoneLabelledShort, []string{"Pedido: "}},
		{"French label", "Téléphone : ", "88 417293", EntityPhone, scorePhoneLabelledShort, []string{"Commande : "}},
		{"German label", "Telefon: ", "538 2274", EntityPhone, scorePhoneLabelledShort, []string{"Bestellnummer: "}},
		{"Japanese label", "電話番号：", "538 2274", EntityPhone, scorePhoneLabelledShort, []string{"注文番号："}},
		{"JSON key", `{"mobile_phone": "`, "538 2274", EntityPhone, scorePhoneLabelledShort, []string{`{"order_id": "`}},
		{"toll-free 4-2-4", "Phone: ", "1800 12 3942", EntityPhone, scorePhoneLabelled, []string{""}},
		{"card 3597", "card ", "3597 1234 5678 9018", EntityCreditCard, scoreCardLabelled, []string{"", "Order ", "Gift card order "}},
		{"card 07, 12 digits", "credit card ", "071234567890", EntityCreditCard, scoreCardLabelled, []string{"", "Reference "}},
		{"card JSON key", `{"card_number": "`, "3597123456789018", EntityCreditCard, scoreCardLabelled, []string{`{"order_number": "`}},
		{"card in Japanese", "カード番号：", "3597123456789018", EntityCreditCard, scoreCardLabelled, []string{"注文番号："}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.label + tt.value + " ok"
			res, err := s.Scrub(in, nil)
			require.NoError(t, err)
			checkResult(t, s, in, nil, res)
			require.Len(t, res.Findings, 1, "%q -> %q", in, res.Text)
			f := res.Findings[0]
			require.Equal(t, tt.entity, f.Entity)
			require.Equal(t, tt.value, in[f.Start:f.End])
			require.InDelta(t, tt.score, f.Score, 1e-9)
			for _, u := range tt.unlabels {
				in := u + tt.value + " ok"
				res, err := s.Scrub(in, nil)
				require.NoError(t, err)
				require.Empty(t, res.Findings, "%q -> %q", in, res.Text)
			}
			// The relaxed rule's score is what a threshold compares.
			call, err := s.NewCall(Options{Thresholds: map[string]float64{tt.entity: tt.score + 0.01}})
			require.NoError(t, err)
			require.Empty(t, call.Scrub(tt.label+tt.value+" ok").Findings)
		})
	}
}

// TestContextTraps checks that the labels do not turn other numbers into
// phone numbers or cards: dates, times, versions, order and tracking
// numbers, prices, ZIP codes, ISBNs and dotted quads next to the labels.
func TestContextTraps(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"date", "Phone: 2024-03-18", ""},
		{"dotted date", "Tel. 18.03.2024", ""},
		{"spaced date and time", "Fax: sent 01 12 2022 17:40", ""},
		{"slashed date", "call me on 03/18/2024", ""},
		{"time", "reach me at 10:30", ""},
		{"version", "Phone app version 2.4.10.1", ""},
		{"order", "Phone order 48213377", ""},
		{"order after label", "Mobile: order #4821 3377", ""},
		{"tracking", "Fax: tracking 1Z999AA10123456784", ""},
		{"price", "Mobile: $1,299.99", ""},
		{"euro price", "Handy für 1.299,00 €", ""},
		{"zip plus four", "Desk ZIP 94105-1234", ""},
		{"isbn", "Phone book ISBN 978-3-16-148410-0", ""},
		{"dotted quad", "Phone: 10.44.3.17", "Phone: <IP>"},
		{"ssn shape", "Phone: 123-45-6789", "Phone: <US_SSN>"},
		{"luhn broken card", "card 3597 1234 5678 9019", ""},
		{"card word, order number", "Kreditkarte Bestellnummer 3597123456789018", ""},
		{"no label, unknown issuer", "3597 1234 5678 9018", ""},
	}.sameOut())
}

// TestContextIP checks the words that lower and raise dotted quads,
// including JSON keys.
func TestContextIP(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"section", "See section 4.2.7.1.", ""},
		{"chapter", "Chapter 2.6.1.3 covers it.", ""},
		{"version", "version 9.14.3.2", ""},
		{"v", "v 9.14.3.2", ""},
		{"json version key", `{"client_version": "9.14.3.2"}`, ""},
		{"German chapter", "Kapitel 2.6.1.3", ""},
		{"node", "node 10.44.3.17 is down", "node <IP> is down"},
		{"json ip key", `{"ip": "10.44.3.17"}`, `{"ip": "<IP>"}`},
		{"json client ip key", `{"client_ip": "10.44.3.17"}`, `{"client_ip": "<IP>"}`},
		{"no word", "10.44.3.17", "<IP>"},
	}.sameOut())
}

// TestInternationalPrefix checks numbers written with 00 or 011 instead of
// '+', with the country code apart or joined to the prefix and single-digit
// groups after it.
func TestInternationalPrefix(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"00 joined", "Call 0061 3 9457 2281 now", "Call <PHONE_NUMBER> now"},
		{"00 apart", "Call 00 61 3 9457 2281 now", "Call <PHONE_NUMBER> now"},
		{"011", "Dial 011 44 20 7946 0958 now", "Dial <PHONE_NUMBER> now"},
		{"011 mixed separators", "Dial 011 55 11 96123-4772 now", "Dial <PHONE_NUMBER> now"},
		{"no label needed", "0044 20 7946 0958", "<PHONE_NUMBER>"},
		{"isbn-10 with 0-011", "ISBN-10 0-011-27499-0", ""},
		{"invalid after 00", "00 99 1 2 3 4", ""},
	}.sameOut())
}

// TestSecretsInContext checks AWS secret keys after their variable or
// their key id, and generic credential assignments in env, YAML and JSON.
func TestSecretsInContext(t *testing.T) {
	t.Parallel()
	const id, sec = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	runScrubTable(t, scrubCases{
		{"env", "AWS_SECRET_ACCESS_KEY=" + sec, "AWS_SECRET_ACCESS_KEY=<SECRET>"},
		{"ini", "aws_secret_access_key = " + sec, "aws_secret_access_key = <SECRET>"},
		{"after the id", "Creds: " + id + " / " + sec, "Creds: <SECRET> / <SECRET>"},
		{"after the id, space", id + " " + sec + " rotate", "<SECRET> <SECRET> rotate"},
		{"not on the next line", id + "\n" + sec, "<SECRET>\n" + sec},
		{"a hex digest after the id", id + " " + strings.Repeat("a1b2", 10), "<SECRET> " + strings.Repeat("a1b2", 10)},
		{"a word first", id + " rotated " + sec, "<SECRET> rotated " + sec},
		{"yaml", "  api_key: xKd8vQ2mZpL0aB7nR4tY   # staging", "  api_key: <SECRET>   # staging"},
		{"json", `{"client_secret": "xKd8vQ2mZpL0aB7nR4tY"}`, `{"client_secret": "<SECRET>"}`},
		{"letters only, mixed case", "SECRET=AbCdEfGhIjKlMnOpQrSt", "SECRET=<SECRET>"},
		{"letters only, short", "SECRET=AbCdEfGh", ""},
		{"lower case word", "secret: confidential", ""},
		{"token count", "token_count=4096", ""},
		{"environment reference", "api_key: ${API_KEY}", ""},
	}.sameOut())
}

// TestEncodedEmail checks addresses whose '@' is written %40 in a URL.
func TestEncodedEmail(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"query", "https://x.example.com/?to=alice%40example.com&y=1", "https://x.example.com/?to=<EMAIL_ADDRESS>&y=1"},
		{"path", "/users/bob.smith%40example.org/settings", "/users/<EMAIL_ADDRESS>/settings"},
		{"encoded plus", "?u=bob%2Bnews%40example.org", "?u=<EMAIL_ADDRESS>"},
		{"encoded query in a parameter", "redirect=https%3A%2F%2Fa.example.com%2F%3Fu%3Dalice%40example.com",
			"redirect=https%3A%2F%2Fa.example.com%2F%3Fu%3D<EMAIL_ADDRESS>"},
		{"no domain", "user%40localhost", ""},
		{"percent sign", "100%40 pieces", ""},
	}.sameOut())
}

// TestContextProperties composes labels, filler words, values the label
// rules read, other entities and placeholders at random, and checks every
// invariant of checkResult on each text (idempotence included: a label
// that raised a candidate in the first pass must not raise another one in
// the second, nor a placeholder change what a label means), and the same
// for JSON documents whose keys are labels.
func TestContextProperties(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	r := rand.New(rand.NewPCG(16, 2026))
	pieces := []string{
		"Phone: ", "Mobile ", "Fax: ", "Desk ", "tel ", "Tel. ", "call me on ", "reach me at ", "Phone-Office: ", "Office fax ",
		"Teléfono: ", "Téléphone : ", "Telefon: ", "電話番号：", "カード番号：", "card ", "credit card ", "cc: ", "card number ",
		"section ", "Chapter ", "version ", "v ", "node ", "order ", "my ", "is ", "number ", "_", "-", ":", "\"", " ", " ", ", ",
		"538 2274", "47-12-63-08", "(52) 614-239", "31 495 207 3361", "88 417293", "0061 3 9457 2281", "011 44 20 7946 0958",
		"3597 1234 5678 9018", "071234567890", "2024-03-18", "18.03.2024", "10:30", "9.14.3.2", "10.44.3.17", "$1,299.99",
		"94105-1234", "978-3-16-148410-0", "bob%40example.com", "a@b.io", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		"AWS_SECRET_ACCESS_KEY=", "api_key: ", "<PHONE_NUMBER>", "<CREDIT_CARD>", "<EMAIL_ADDRESS_1>", "<SECRET>", "<IP>", "%40", "é", "は", "\n",
	}
	keys := []string{"phone", "mobile_phone", "mobilePhone", "card_number", "cc", "client_version", "ip", "order", "note", "token", "id"}
	for range 5000 {
		var b strings.Builder
		for range 1 + r.IntN(8) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		in := b.String()
		res, err := s.Scrub(in, nil)
		require.NoError(t, err)
		checkResult(t, s, in, nil, res)

		doc, err := json.Marshal(map[string]any{keys[r.IntN(len(keys))]: in, keys[r.IntN(len(keys))]: []string{in, in}})
		require.NoError(t, err)
		c, err := s.NewCall(Options{})
		require.NoError(t, err)
		once := c.ScrubJSON(string(doc))
		require.True(t, json.Valid([]byte(once.Text)), "%s -> %s", doc, once.Text)
		require.Equal(t, once.Text, c.ScrubJSON(once.Text).Text, "JSON scrubbing is not idempotent on %s", doc)
	}
}
