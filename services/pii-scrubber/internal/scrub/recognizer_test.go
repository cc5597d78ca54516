package scrub

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestScrubIBAN(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"plain", "iban DE89370400440532013000", "iban <IBAN>"},
		{"printed", "IBAN DE89 3704 0044 0532 0130 00 EUR", "IBAN <IBAN> EUR"},
		{"lower case", "gb82west12345698765432", "<IBAN>"},
		{"letters in the bban", "FR1420041010050500013M02606.", "<IBAN>."},
		{"hyphens", "ES91-2100-0418-4502-0005-1332", "<IBAN>"},
		{"shortest", "NO9386011117947", "<IBAN>"},
		{"longest", "LC55HEMM000100010012001200023015", "<IBAN>"},
		{"json", `{"iban":"CH9300762011623852957"}`, `{"iban":"<IBAN>"}`},
		{"bad check digits", "DE88370400440532013000", ""},
		{"bad checksum printed", "DE89 3704 0044 0532 0130 01", ""},
		{"wrong length", "DE8937040044053201300", ""},
		{"digits where letters belong", "GB82 1234 1234 5698 7654 32", ""},
		{"unknown country", "XX89370400440532013000", ""},
		{"glued to a word", "xDE89370400440532013000", ""},
		{"followed by more", "DE89370400440532013000X", ""},
		{"separator inside a group", "DE89 370 40044 0532 0130 00", ""},
	}.sameOut())
}

func TestScrubMAC(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"colons", "mac 00:1a:2b:3c:4d:5e up", "mac <MAC_ADDRESS> up"},
		{"upper dashes", "A0-B1-C2-D3-E4-F5", "<MAC_ADDRESS>"},
		{"cisco", "0011.2233.4455", "<MAC_ADDRESS>"},
		{"all zero", "00:00:00:00:00:00", ""},
		{"broadcast", "ff:ff:ff:ff:ff:ff", ""},
		{"mixed separators", "00:1a-2b:3c:4d:5e", ""},
		{"mixed case", "00:1A:2b:3C:4d:5E", ""},
		{"time", "10:30:45", ""},
		{"longer run", "00:1a:2b:3c:4d:5e:6f:70:81", ""},
		{"in a uuid", "123e4567-e89b-12d3-a456-426614174000", ""},
	}.sameOut())
}

func TestScrubCrypto(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"p2pkh", "send to 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "send to <CRYPTO>"},
		{"p2sh", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy.", "<CRYPTO>."},
		{"bech32", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "<CRYPTO>"},
		{"bech32 upper", "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ", "<CRYPTO>"},
		{"taproot", "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297", "<CRYPTO>"},
		{"bad base58 checksum", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", ""},
		{"bad bech32 checksum", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdr", ""},
		{"mixed case bech32", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwF5mdq", ""},
		{"too short", "1A1zP1eP5QGefi2DMP", ""},
	}.sameOut())
}

func TestScrubSecret(t *testing.T) {
	t.Parallel()
	jwt := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	runScrubTable(t, scrubCases{
		{"aws", "aws_access_key_id=AKIAIOSFODNN7EXAMPLE", "aws_access_key_id=<SECRET>"},
		{"github", "token ghp_16C7e42F292c6912E7710c838347Ae178B4a ok", "token <SECRET> ok"},
		{"openai", "sk-proj-Jk3L9mQ2xW7vB4nR8tY1uZ5aE6cD0fGhIjKl", "<SECRET>"},
		{"anthropic", "sk-ant-api03-abcdefghij0123456789ABCDEFGHIJ", "<SECRET>"},
		{"stripe", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "<SECRET>"},
		{"slack", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "<SECRET>"},
		{"google", "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "<SECRET>"},
		{"jwt", "Authorization: Bearer " + jwt, "Authorization: Bearer <SECRET>"},
		{"bearer opaque", "Authorization: Bearer 8f14e45fceea167a5a36dedd4bea2543", "Authorization: Bearer <SECRET>"},
		{"pem", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\nok", "<SECRET>\nok"},
		{"pem escaped newlines", `"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n-----END EC PRIVATE KEY-----"`, `"<SECRET>"`},
		{"pem without end", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASCBKcwggSjAgEAAoIB\n\nthanks", "<SECRET>\n\nthanks"},
		{"pem without end before a word", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nthanks", "<SECRET>\nthanks"},
		{"url password", "postgres://app:s3cr3t!@db.example.com:5432/x", "postgres://app:<SECRET>@db.example.com:5432/x"},
		{"url user only", "ftp://anonymous@ftp.example.com/", ""},
		{"assignment", "PASSWORD=hunter2! user=x", "PASSWORD=<SECRET> user=x"},
		{"json assignment", `{"client_secret": "abcdefgh"}`, `{"client_secret": "<SECRET>"}`},
		{"prose", "Your password: changed successfully.", ""},
		{"placeholder value", "password=<SECRET>", ""},
		{"variable", "password=${DB_PASSWORD}", ""},
		{"masked", "password=********", ""},
		{"short prefixes", "sk-learn, ghp_short, AKIA, xoxb-1", ""},
		{"git sha", "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", ""},
		{"public key", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----", ""},
		{"not a jwt", "eyJzdWIiOiIx.eyJzdWIiOiIx.abc", ""},
		{"token count", "max_tokens=4096 token_count=12", ""},
	}.sameOut())
}

func TestScrubCountryIDs(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	all := Entities()
	tests := []struct {
		name string
		give string
		want string
	}{
		{"nhs", "NHS number 943 476 5919", "NHS number <UK_NHS>"},
		{"nhs bare", "NHS 9434765919", "NHS <UK_NHS>"},
		{"nhs bad check", "NHS number 943 476 5918", "NHS number 943 476 5918"},
		{"sin", "SIN: 130 692 544", "SIN: <CA_SIN>"},
		{"sin bad luhn", "SIN: 130 692 545", "SIN: 130 692 545"},
		{"dni", "DNI 12345678Z", "DNI <ES_NIF>"},
		{"dni hyphen", "DNI 12345678-z", "DNI <ES_NIF>"},
		{"dni bad letter", "DNI 12345678A", "DNI 12345678A"},
		{"nie", "NIE X1234567L", "NIE <ES_NIF>"},
		{"nie bad letter", "NIE X1234567A", "NIE X1234567A"},
		{"aadhaar", "Aadhaar 2341 2341 2346", "Aadhaar <IN_AADHAAR>"},
		{"aadhaar bad check", "Aadhaar 2341 2341 2345", "Aadhaar 2341 2341 2345"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := s.Scrub(tt.give, all)
			require.NoError(t, err)
			require.Equal(t, tt.want, res.Text)
			checkResult(t, s, tt.give, all, res)
		})
	}
	// Opt-in: not in the default set.
	res, err := s.Scrub("NIE X1234567L and DNI 12345678Z", nil)
	require.NoError(t, err)
	require.Equal(t, "NIE X1234567L and DNI 12345678Z", res.Text)
}

func TestScrubContext(t *testing.T) {
	t.Parallel()
	runScrubTable(t, []scrubCase{
		{"order lowers a card", "Order 4000123412341234 shipped", "Order 4000123412341234 shipped"},
		{"card raises a card", "card 4000123412341234", "card <CREDIT_CARD>"},
		{"nearest word wins", "order 12, card 4000123412341234", "order 12, card <CREDIT_CARD>"},
		{"compound order word", "Bestellnummer 4000 1234 1234 1234", "Bestellnummer 4000 1234 1234 1234"},
		{"version lowers an ip", "version 1.2.3.4", "version 1.2.3.4"},
		{"ip raises an ip", "ip 1.2.3.4", "ip <IP>"},
		{"context stays in its clause", "order shipped; card 4000123412341234", "order shipped; card <CREDIT_CARD>"},
		{"glued words do not count", "myorder 4000123412341234", "myorder <CREDIT_CARD>"},
		{"bare ssn needs context", "ref 536225548 and SSN 536225548", "ref 536225548 and SSN <US_SSN>"},
		{"bare phone needs context", "unix 1705314600, call 4155550132", "unix 1705314600, call <PHONE_NUMBER>"},
		{"other id lowers a phone", "NHS number 337 727 2488", "NHS number 337 727 2488"},
		{"cjk boundaries", "電話番号は03-3456-7890です。カード4111111111111111", "電話番号は<PHONE_NUMBER>です。カード<CREDIT_CARD>"},
	})
}

// TestNegativeControls is invariant 7 of pii.md §9: each rule is switched
// off in turn, and the texts only it finds must then pass through, so a
// rule that silently stops working makes a test fail instead of hiding
// behind another rule.
func TestNegativeControls(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	only := map[string][]string{
		EntityEmail:      {"bob@example.com"},
		EntityPhone:      {"+44 20 7946 0958", "020 7946 0958", "(555) 123-4567"},
		EntityIP:         {"10.8.9.1", "2001:db8::1"},
		EntityCreditCard: {"4111 1111 1111 1111", "378282246310005"},
		EntityUSSSN:      {"123-45-6789"},
		EntityIBAN:       {"DE89370400440532013000"},
		EntityMAC:        {"00:1a:2b:3c:4d:5e"},
		EntityCrypto:     {"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"},
		EntitySecret:     {"AKIAIOSFODNN7EXAMPLE", "password=hunter2!"},
		EntityUKNHS:      {"943 476 5919"},
		EntityCASIN:      {"130 692 544"},
		EntityESNIF:      {"12345678Z"},
		EntityINAadhaar:  {"2341 2341 2346"},
	}
	all := Entities()
	require.Len(t, only, len(all))
	for name, texts := range only {
		var without []string
		for _, e := range all {
			if e != name {
				without = append(without, e)
			}
		}
		for _, text := range texts {
			res, err := s.Scrub("x "+text+" y", []string{name})
			require.NoError(t, err)
			require.Len(t, res.Findings, 1, "%s alone must find %q", name, text)
			require.Equal(t, name, res.Findings[0].Entity)
			res, err = s.Scrub("x "+text+" y", without)
			require.NoError(t, err)
			for _, f := range res.Findings {
				require.NotEqual(t, name, f.Entity, "%s found %q while switched off", name, text)
			}
		}
	}
}

// TestPlaceholders checks that every placeholder form is recognised, so a
// scrubbed text in any mode is left alone by a second pass.
func TestPlaceholders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give string
		want bool
	}{
		{"<EMAIL_ADDRESS>", true}, {"<US_SSN>", true}, {"<IP>", true}, {"<IN_AADHAAR>", true},
		{"<EMAIL_ADDRESS_1>", true}, {"<US_SSN_12>", true}, {"<IP:0123456789abcdef>", true},
		{"<EMAIL_ADDRESS_0>", false}, {"<EMAIL_ADDRESS_01>", false}, {"<EMAIL_ADDRESS_>", false},
		{"<IP:0123456789ABCDEF>", false}, {"<IP:0123>", false}, {"<IP_1:0123456789abcdef>", false},
		{"<SHOE_SIZE>", false}, {"<ip>", false}, {"<>", false}, {"<" + strings.Repeat("A", 40) + ">", false},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, placeholderAt(tt.give, 0) == len(tt.give))
			require.Equal(t, tt.want, placeholderEndsAt(tt.give, len(tt.give)))
		})
	}
}

func TestScrubPhoneAfterNumbers(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"after an address", "from 10.0.0.1 020 7946 0958", "from <IP> <PHONE_NUMBER>"},
		{"after a version", "v1.2 020 7946 0958", "v1.2 <PHONE_NUMBER>"},
		{"tail of a grouped number", "5 020 7946 0958", ""},
		{"tail of an iban", "IBAN DE89 3704 0044 0532 0130 01", ""},
		{"after a card", "4111 1111 1111 1111 020 7946 0958", "<CREDIT_CARD> <PHONE_NUMBER>"},
		{"card after a phone", "+44 20 7946 0958 4111 1111 1111 1111", "<PHONE_NUMBER> <CREDIT_CARD>"},
	}.sameOut())
}
