package scrub

import (
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// scrubCase is one row of the redaction tables: give is scrubbed with all
// entities and must come out as want.
type scrubCase struct {
	name string
	give string
	want string
}

func runScrubTable(t *testing.T, tests []scrubCase) {
	t.Helper()
	s := mustNew(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := s.Scrub(tt.give, nil)
			require.NoError(t, err)
			require.Equal(t, tt.want, res.Text)
			checkResult(t, s, tt.give, nil, res)
		})
	}
}

// checkResult verifies the invariants every Result must satisfy: findings
// sorted, disjoint, in bounds and on UTF-8 boundaries; the text equals the
// input with each finding replaced by its placeholder (the input itself when
// nothing was found); valid UTF-8 stays valid; a second pass changes nothing.
func checkResult(t testing.TB, s *Scrubber, in string, entities []string, res Result) {
	t.Helper()
	// Rune boundaries as range decodes them: an invalid byte is a rune of
	// its own, so the check also holds for invalid UTF-8.
	boundary := make([]bool, len(in)+1)
	for i := range in {
		boundary[i] = true
	}
	boundary[len(in)] = true
	var b strings.Builder
	prev := 0
	for i, f := range res.Findings {
		require.GreaterOrEqual(t, f.Start, prev, "finding %d overlaps or is unsorted: %+v", i, res.Findings)
		require.Less(t, f.Start, f.End, "finding %d is empty", i)
		require.LessOrEqual(t, f.End, len(in), "finding %d out of bounds", i)
		require.True(t, boundary[f.Start], "finding %d starts inside a rune", i)
		require.True(t, boundary[f.End], "finding %d ends inside a rune", i)
		require.Contains(t, Entities(), f.Entity)
		require.Greater(t, f.Score, 0.0)
		require.LessOrEqual(t, f.Score, 1.0)
		b.WriteString(in[prev:f.Start])
		b.WriteString("<" + f.Entity + ">")
		prev = f.End
	}
	b.WriteString(in[prev:])
	require.Equal(t, b.String(), res.Text, "text does not match the findings")
	if len(res.Findings) == 0 {
		require.Equal(t, unsafe.StringData(in), unsafe.StringData(res.Text), "unchanged text was copied")
	}
	if utf8.ValidString(in) {
		require.True(t, utf8.ValidString(res.Text), "valid UTF-8 became invalid")
	}
	again, err := s.Scrub(res.Text, entities)
	require.NoError(t, err)
	require.Equal(t, res.Text, again.Text, "not idempotent: %q", in)
	require.Empty(t, again.Findings, "second pass found something")
}

// TestScrubDapr covers Dapr's integration tests and the verified outputs of
// dapr-conversation-api.md §4.5 for the entities this package handles.
func TestScrubDapr(t *testing.T) {
	t.Parallel()
	runScrubTable(t, []scrubCase{
		{"dapr phone", "well hello there, my phone number is +2222222222", "well hello there, my phone number is <PHONE_NUMBER>"},
		{"dapr email", "well hello there, my email is test@test.com", "well hello there, my email is <EMAIL_ADDRESS>"},
		{"dapr ip", "well hello there from 10.8.9.1", "well hello there from <IP>"},
		{"verified phone", "my phone number is +2222222222", "my phone number is <PHONE_NUMBER>"},
		{"verified email", "email test@test.com", "email <EMAIL_ADDRESS>"},
		{"verified ip", "from 10.8.9.1", "from <IP>"},
		{"verified ssn", "ssn 123-45-6789", "ssn <US_SSN>"},
		{"verified card", "card 4111 1111 1111 1111", "card <CREDIT_CARD>"},
		// Dapr's library turns these into <PHONE_NUMBER>, <ISBN> and
		// mangled IPv6; Parley gets them right.
		{"year and number", "the year 2025 and number 12345", "the year 2025 and number 12345"},
		{"nanp phone", "call 555-123-4567 now", "call <PHONE_NUMBER> now"},
		{"date", "date 2024-01-01", "date 2024-01-01"},
		{"ipv6", "ipv6 2001:db8::ff00:42:8329 end", "ipv6 <IP> end"},
	})
}

func TestScrubEmail(t *testing.T) {
	t.Parallel()
	runScrubTable(t, []scrubCase{
		{"plain", "test@test.com", "<EMAIL_ADDRESS>"},
		{"plus tag", "write john.doe+tag@example.co.uk today", "write <EMAIL_ADDRESS> today"},
		{"sub-domains", "first_last-99@mail.eu.example.org", "<EMAIL_ADDRESS>"},
		{"upper case", "UPPER.CASE@EXAMPLE.COM", "<EMAIL_ADDRESS>"},
		{"percent", "user%tag@example.com", "<EMAIL_ADDRESS>"},
		{"digits", "12345@example.com", "<EMAIL_ADDRESS>"},
		{"mailto", "mailto:bob@example.com", "mailto:<EMAIL_ADDRESS>"},
		{"angle brackets", "Bob <bob@example.com>", "Bob <<EMAIL_ADDRESS>>"},
		{"html", `<a href="mailto:bob@example.com">bob@example.com</a>`, `<a href="mailto:<EMAIL_ADDRESS>"><EMAIL_ADDRESS></a>`},
		{"url query", "https://example.com/reset?email=alice@example.com&ssn=123-45-6789", "https://example.com/reset?email=<EMAIL_ADDRESS>&ssn=<US_SSN>"},
		{"url encoded query", "https://x.io/?to=alice@example.com#top", "https://x.io/?to=<EMAIL_ADDRESS>#top"},
		{"sentence end", "Write to bob@example.com.", "Write to <EMAIL_ADDRESS>."},
		{"trailing dashes", "bob@example.com--thanks", "<EMAIL_ADDRESS>--thanks"},
		{"ellipsis", "see...bob@example.com", "see...<EMAIL_ADDRESS>"},
		{"idn", "josé@münchen.de", "<EMAIL_ADDRESS>"},
		{"idn tld", "info@例子.测试 ok", "<EMAIL_ADDRESS> ok"},
		{"punycode domain", "bob@xn--mnchen-3ya.de", "<EMAIL_ADDRESS>"},
		{"punycode tld", "bob@example.xn--p1ai", "<EMAIL_ADDRESS>"},
		{"hyphenated domain", "bob@my-company.io", "<EMAIL_ADDRESS>"},
		{"two addresses", "a@example.com,b@example.org", "<EMAIL_ADDRESS>,<EMAIL_ADDRESS>"},
		{"json", `{"email":"bob@example.com"}`, `{"email":"<EMAIL_ADDRESS>"}`},
	})
}

func TestScrubEmailNegative(t *testing.T) {
	t.Parallel()
	runScrubTable(t, []scrubCase{
		{"handle", "ping @alice on chat", "ping @alice on chat"},
		{"no dot", "user@localhost", "user@localhost"},
		{"one letter tld", "a@b.c", "a@b.c"},
		{"numeric tld", "x@123.456", "x@123.456"},
		{"obfuscated", "john at example dot com", "john at example dot com"},
		{"double at", "a@@example.com", "a@@example.com"},
		{"decorator", "@Override and @@", "@Override and @@"},
		{"placeholder", "<EMAIL_ADDRESS>@example", "<EMAIL_ADDRESS>@example"},
	})
}

func TestScrubPhone(t *testing.T) {
	t.Parallel()
	runScrubTable(t, []scrubCase{
		{"e164", "+2222222222", "<PHONE_NUMBER>"},
		{"nanp intl parens", "+1 (555) 123-4567", "<PHONE_NUMBER>"},
		{"nanp intl dashes", "+1-555-123-4567", "<PHONE_NUMBER>"},
		{"nanp intl dots", "+1.555.123.4567", "<PHONE_NUMBER>"},
		{"gb intl", "+44 20 7946 0958", "<PHONE_NUMBER>"},
		{"gb intl trunk", "+44 (0)20 7946 0958", "<PHONE_NUMBER>"},
		{"se intl trunk", "+46 (0)8 928 571 38", "<PHONE_NUMBER>"},
		{"fr intl", "+33 1 42 68 53 00", "<PHONE_NUMBER>"},
		{"de intl", "Tel.: +49 30 12345678.", "Tel.: <PHONE_NUMBER>."},
		{"intl no-break spaces", "+44\u00a020\u00a07946\u00a00958", "<PHONE_NUMBER>"},
		{"intl followed by year", "+44 20 7946 0958 2024", "<PHONE_NUMBER> 2024"},
		{"parens", "(555) 123-4567", "<PHONE_NUMBER>"},
		{"parens no space", "(555)123-4567", "<PHONE_NUMBER>"},
		{"dashes", "555-123-4567", "<PHONE_NUMBER>"},
		{"dots", "555.123.4567", "<PHONE_NUMBER>"},
		{"spaces", "555 123 4567", "<PHONE_NUMBER>"},
		{"leading one", "1-800-555-0199", "<PHONE_NUMBER>"},
		{"leading one parens", "1 (800) 555-0199", "<PHONE_NUMBER>"},
		{"ext dot", "(415) 555-0132 ext. 12", "<PHONE_NUMBER>"},
		{"ext word", "555-123-4567 extension 7", "<PHONE_NUMBER>"},
		{"ext x", "555-123-4567 x1234", "<PHONE_NUMBER>"},
		{"ext glued", "555-123-4567x12", "<PHONE_NUMBER>"},
		{"ext hash", "+1 555 123 4567 #89", "<PHONE_NUMBER>"},
		{"not an extension", "555-123-4567 extra", "<PHONE_NUMBER> extra"},
		{"gb national", "020 7946 0958", "<PHONE_NUMBER>"},
		{"fr national", "FR 01 42 68 53 00", "FR <PHONE_NUMBER>"},
		{"de national parens", "(030) 1234567", "<PHONE_NUMBER>"},
		{"nl mobile", "06-12345678", "<PHONE_NUMBER>"},
		{"in prose", "Call me (or text) on 555-123-4567, thanks!", "Call me (or text) on <PHONE_NUMBER>, thanks!"},
		{"in parens", "(call 555-123-4567)", "(call <PHONE_NUMBER>)"},
		{"after a number", "room 2 555-123-4567", "room 2 <PHONE_NUMBER>"},
		{"csv", "Ann,555-123-4567,123-45-6789", "Ann,<PHONE_NUMBER>,<US_SSN>"},
		{"tel uri", "tel:+15551234567", "tel:<PHONE_NUMBER>"},
		{"two numbers", "555-123-4567/555-987-6543", "<PHONE_NUMBER>/<PHONE_NUMBER>"},
	})
}

func TestScrubPhoneNegative(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"year", "the year 2025", ""},
		{"iso date", "date 2024-01-01", ""},
		{"slash date", "on 01/02/2024", ""},
		{"dotted date", "am 01.02.2024 um 10:30", ""},
		{"time", "at 10:30:00", ""},
		{"timestamp", "2024-01-15T10:30:00Z", ""},
		{"unix time", "unix 1705314600", ""},
		{"version", "version 1.2.3", ""},
		{"price", "costs $1,299.99", ""},
		{"euro price", "costs €1234567890", ""},
		{"big number", "1,000,000 users", ""},
		{"short number", "42 and 7", ""},
		{"zip", "ZIP 94105", ""},
		{"zip plus four", "ZIP 94105-1234", ""},
		{"uuid", "id 123e4567-e89b-12d3-a456-426614174000", ""},
		{"numeric uuid", "id 12345678-1234-1234-1234-123456789012", ""},
		{"md5", "md5 d41d8cd98f00b204e9800998ecf8427e", ""},
		{"git sha", "commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", ""},
		{"box numbers", "PSC 0413, Box 8144", ""},
		{"isbn", "ISBN 978-3-16-148410-0", ""},
		{"bare ten digits", "order 5551234567", ""},
		{"seven digit local without a phone label", "see 555-1234", ""},
		{"short e164", "+12 and +123456", ""},
		{"arithmetic", "3+4=7 and 2+2222222222", ""},
		{"dashed id", "ID-555-123-4567", ""},
		{"longer dashed id", "555-123-4567-890", ""},
		{"dotted number", "1.555.123.4567.8", ""},
		{"glued to word", "abc555-123-4567", ""},
		{"hex id", "ab12-555-123-4567", ""},
		{"trunk list", "0 1 2 3 4 5 6 7 8 9", ""},
		{"leading double zero", "00 42 68 53 00", ""},
		{"iban tail", "IBAN DE89 3704 0044 0532 0130 01", ""},
		{"grouped number tail", "5 020 7946 0958", ""},
	}.sameOut())
}

func TestScrubIP(t *testing.T) {
	t.Parallel()
	runScrubTable(t, []scrubCase{
		{"v4", "10.8.9.1", "<IP>"},
		{"v4 private", "IP is 192.168.1.100", "IP is <IP>"},
		{"v4 broadcast", "255.255.255.255", "<IP>"},
		{"v4 port", "10.0.0.1:8080", "<IP>:8080"},
		{"v4 cidr", "10.0.0.0/8", "<IP>/8"},
		{"v4 range", "10.0.0.1-10.0.0.9", "<IP>-<IP>"},
		{"v4 sentence end", "from 10.8.9.1.", "from <IP>."},
		{"v4 list", "10.0.0.1,10.0.0.2", "<IP>,<IP>"},
		{"v4 url", "http://10.0.0.1/admin", "http://<IP>/admin"},
		{"v4 after equals", "host=10.0.0.1", "host=<IP>"},
		{"v6 compressed", "2001:db8::1", "<IP>"},
		{"v6 loopback", "::1", "<IP>"},
		{"v6 full", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "<IP>"},
		{"v6 link local", "fe80::1ff:fe23:4567:890a", "<IP>"},
		{"v6 bracket port", "[2001:db8::1]:8080", "[<IP>]:8080"},
		{"v6 mapped v4", "::ffff:192.0.2.128", "<IP>"},
		{"v6 zone", "fe80::1%eth0", "<IP>%eth0"},
		{"v6 sentence end", "ping 2001:db8::1.", "ping <IP>."},
		{"v6 trailing colon", "addr 2001:db8::1: up", "addr <IP>: up"},
		{"v6 glued prefix", "IPv6:fe80::1", "IPv6:<IP>"},
		{"v6 glued word", "addr:2001:db8::2", "addr:<IP>"},
		{"v6 hex only", "dead:beef::cafe", "<IP>"},
	})
}

func TestScrubIPNegative(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"five parts", "version 1.2.3.4.5", ""},
		{"six parts", "1.2.3.4.5.6", ""},
		{"v prefix", "v1.2.3.4", ""},
		{"octet too big", "256.1.1.1", ""},
		{"leading zeros", "01.02.03.04", ""},
		{"three parts", "1.2.3", ""},
		{"cpp", "std::cout << x", ""},
		{"rust path", "Foo::Bar::baz", ""},
		{"short hex words", "a::b and cafe::babe", ""},
		{"unspecified", "the :: operator", ""},
		{"time", "10:30:00", ""},
		{"ratio", "16:9", ""},
		{"glued to word", "x10.0.0.1", ""},
		{"glued after", "10.0.0.1x", ""},
		{"dashed word", "host-10.0.0.1", ""},
	}.sameOut())
}

// luhnComplete pads prefix with the digits of 7, 3, 9, ... to length-1 digits
// and appends the Luhn check digit.
func luhnComplete(prefix string, length int) string {
	b := []byte(prefix)
	for i := 0; len(b) < length-1; i++ {
		b = append(b, "739215846"[i%9])
	}
	for c := byte('0'); c <= '9'; c++ {
		if luhn(append(b, c)) {
			return string(append(b, c))
		}
	}
	return ""
}

// luhnBreak returns the valid number with its check digit changed.
func luhnBreak(n string) string {
	last := n[len(n)-1]
	return n[:len(n)-1] + string('0'+(last-'0'+1)%10)
}

func TestScrubCreditCard(t *testing.T) {
	t.Parallel()
	tests := []scrubCase{
		{"visa", "4111111111111111", "<CREDIT_CARD>"},
		{"visa spaces", "card 4111 1111 1111 1111", "card <CREDIT_CARD>"},
		{"visa dashes", "4111-1111-1111-1111", "<CREDIT_CARD>"},
		{"visa no-break spaces", "4111\u00a01111\u00a01111\u00a01111", "<CREDIT_CARD>"},
		{"visa 13", "4222222222222", "<CREDIT_CARD>"},
		{"visa 19", "4131034282458809939", "<CREDIT_CARD>"},
		{"visa 19 grouped", "4131 0342 8245 8809 939", "<CREDIT_CARD>"},
		{"visa in prose", "IP is 192.168.1.100 and card 4263982640269299.", "IP is <IP> and card <CREDIT_CARD>."},
		{"mastercard", "5555555555554444", "<CREDIT_CARD>"},
		{"mastercard 2-series", "2223003122003222", "<CREDIT_CARD>"},
		{"mastercard 2-series top", luhnComplete("2720", 16), "<CREDIT_CARD>"},
		{"amex", "378282246310005", "<CREDIT_CARD>"},
		{"amex 4-6-5", "3782 822463 10005", "<CREDIT_CARD>"},
		{"discover", "6011111111111117", "<CREDIT_CARD>"},
		{"diners 14", "30569309025904", "<CREDIT_CARD>"},
		{"diners 4-6-4", "3056 930902 5904", "<CREDIT_CARD>"},
		{"jcb", "3530111333300000", "<CREDIT_CARD>"},
		{"jcb 15", luhnComplete("1800", 15), "<CREDIT_CARD>"},
		{"unionpay", "6200000000000005", "<CREDIT_CARD>"},
		{"unionpay 19", luhnComplete("62", 19), "<CREDIT_CARD>"},
		{"maestro 12", luhnComplete("5018", 12), "<CREDIT_CARD>"},
		{"mir", luhnComplete("2200", 16), "<CREDIT_CARD>"},
		{"trailing cvv", "4111 1111 1111 1111 123", "<CREDIT_CARD> 123"},
		{"trailing expiry", "4111111111111111 12/27", "<CREDIT_CARD> 12/27"},
		{"after label", "card:4111111111111111;", "card:<CREDIT_CARD>;"},
	}
	runScrubTable(t, tests)
}

func TestScrubCreditCardNegative(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"luhn invalid", "order 4111111111111112", ""},
		{"luhn invalid 2-series", luhnBreak("2223003122003222"), ""},
		{"unknown issuer", "1234567812345670", ""},
		{"unknown issuer 9", luhnComplete("9100", 16), ""},
		{"visa 15", luhnComplete("4", 15), ""},
		{"amex 16", luhnComplete("37", 16), ""},
		{"mastercard 15", luhnComplete("55", 15), ""},
		{"too short", luhnComplete("50", 11), ""},
		{"too long", luhnComplete("4", 20), ""},
		{"mixed separators", "4111 1111-1111 1111", ""},
		{"dot separators", "4111.1111.1111.1111", ""},
		{"glued to letters", "ABC4111111111111111", ""},
		{"hex id", "f00d-4111-1111-1111-1111", ""},
		{"dashed tail", "4111-1111-1111-1111-22", ""},
	}.sameOut())
}

func TestScrubSSN(t *testing.T) {
	t.Parallel()
	runScrubTable(t, []scrubCase{
		{"plain", "123-45-6789", "<US_SSN>"},
		{"prose", "my ssn is 219-09-9999.", "my ssn is <US_SSN>."},
		{"area 899", "899-12-3456", "<US_SSN>"},
		{"area 665", "665-12-3456", "<US_SSN>"},
		{"after isbn", "ISBN 978-3-16-148410-0 and order id 123-45-6789", "ISBN 978-3-16-148410-0 and order id <US_SSN>"},
		{"json", `{"ssn":"123-45-6789"}`, `{"ssn":"<US_SSN>"}`},
		{"spaces", "123 45 6789", "<US_SSN>"},
		{"dots", "123.45.6789", "<US_SSN>"},
		{"bare after ssn", "SSN: 123456789", "SSN: <US_SSN>"},
		{"dashed after order id", "order id 123-45-6789", "order id <US_SSN>"},
	})
}

func TestScrubSSNNegative(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"area 000", "000-12-3456", ""},
		{"area 666", "666-12-3456", ""},
		{"area 900", "900-12-3456", ""},
		{"area 999", "999-12-3456", ""},
		{"group 00", "123-00-4567", ""},
		{"serial 0000", "123-45-0000", ""},
		{"unformatted", "123456789", ""},
		{"mixed separators", "123-45 6789", ""},
		{"spaced after order", "order 123 45 6789", ""},
		{"serial too long", "123-45-67890", ""},
		{"area too long", "1234-56-7890", ""},
		{"dashed tail", "123-45-6789-1", ""},
		{"glued", "x123-45-6789", ""},
	}.sameOut())
}

// scrubCases is a table whose rows with an empty want expect the input back.
type scrubCases []scrubCase

func (cs scrubCases) sameOut() []scrubCase {
	out := make([]scrubCase, len(cs))
	for i, c := range cs {
		if c.want == "" {
			c.want = c.give
		}
		out[i] = c
	}
	return out
}

// TestScrubOverlaps covers the fail-open bug of Dapr's scrubber (pii.md §4.4)
// and the merging of overlapping candidates.
func TestScrubOverlaps(t *testing.T) {
	t.Parallel()
	runScrubTable(t, scrubCases{
		{"ip then card", "IP is 192.168.1.100 and card 4263982640269299", "IP is <IP> and card <CREDIT_CARD>"},
		{"isbn then ssn", "ISBN 978-3-16-148410-0 and order id 123-45-6789", "ISBN 978-3-16-148410-0 and order id <US_SSN>"},
		{"everything", "Email bob@example.com, call +1 555 123 4567, card 4111 1111 1111 1111, ssn 123-45-6789, hosts 10.0.0.1 and 2001:db8::1.",
			"Email <EMAIL_ADDRESS>, call <PHONE_NUMBER>, card <CREDIT_CARD>, ssn <US_SSN>, hosts <IP> and <IP>."},
		{"card as local part", "4111111111111111@example.com", "<EMAIL_ADDRESS>"},
		{"phone as local part", "555-123-4567@example.com", "<EMAIL_ADDRESS>"},
		{"ip in email domain", "bob@10.0.0.1", "bob@<IP>"},
		{"mapped v4", "::ffff:10.0.0.1", "<IP>"},
		{"intl and nanp", "+1 555 123 4567", "<PHONE_NUMBER>"},
		{"phone then card", "+44 20 7946 0958 4111 1111 1111 1111", "<PHONE_NUMBER> <CREDIT_CARD>"},
		{"adjacent", "10.0.0.1-555-123-4567", "<IP>-555-123-4567"},
		{"html markup", "<td>555-123-4567</td><td>10.0.0.1</td><b>4111111111111111</b><i>123-45-6789</i>",
			"<td><PHONE_NUMBER></td><td><IP></td><b><CREDIT_CARD></b><i><US_SSN></i>"},
		{"placeholder neighbours block like words", "<IP>555-123-4567 <IP>-555-123-4567 555-123-4567<IP>", ""},
		{"spoofed placeholders", "<EMAIL_ADDRESS> <IP> <CREDIT_CARD>", "<EMAIL_ADDRESS> <IP> <CREDIT_CARD>"},
	}.sameOut())
}

func TestScrubFindings(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	in := "Grüße an josé@münchen.de, ruf +49 30 12345678 an; 🙂 IP 10.0.0.1"
	res, err := s.Scrub(in, nil)
	require.NoError(t, err)
	type span struct {
		Entity, Value string
		Score         float64
	}
	var got []span
	for _, f := range res.Findings {
		got = append(got, span{f.Entity, in[f.Start:f.End], f.Score})
	}
	require.Equal(t, []span{
		{EntityEmail, "josé@münchen.de", scoreEmail},
		{EntityPhone, "+49 30 12345678", scorePhoneIntlValid},
		{EntityIP, "10.0.0.1", 1}, // raised by the context word "IP"
	}, got)
	require.Equal(t, "Grüße an <EMAIL_ADDRESS>, ruf <PHONE_NUMBER> an; 🙂 IP <IP>", res.Text)
}

func TestScrubEntities(t *testing.T) {
	t.Parallel()
	const in = "bob@example.com 555-123-4567 10.0.0.1 4111111111111111 123-45-6789"
	tests := []struct {
		name string
		give []string
		want string
	}{
		{"nil is all", nil, "<EMAIL_ADDRESS> <PHONE_NUMBER> <IP> <CREDIT_CARD> <US_SSN>"},
		{"empty is all", []string{}, "<EMAIL_ADDRESS> <PHONE_NUMBER> <IP> <CREDIT_CARD> <US_SSN>"},
		{"all", Entities(), "<EMAIL_ADDRESS> <PHONE_NUMBER> <IP> <CREDIT_CARD> <US_SSN>"},
		{"email", []string{EntityEmail}, "<EMAIL_ADDRESS> 555-123-4567 10.0.0.1 4111111111111111 123-45-6789"},
		{"phone", []string{EntityPhone}, "bob@example.com <PHONE_NUMBER> 10.0.0.1 4111111111111111 123-45-6789"},
		{"ip", []string{EntityIP}, "bob@example.com 555-123-4567 <IP> 4111111111111111 123-45-6789"},
		{"card", []string{EntityCreditCard}, "bob@example.com 555-123-4567 10.0.0.1 <CREDIT_CARD> 123-45-6789"},
		{"ssn", []string{EntityUSSSN}, "bob@example.com 555-123-4567 10.0.0.1 4111111111111111 <US_SSN>"},
		{"two with duplicate", []string{EntityIP, EntityUSSSN, EntityIP}, "bob@example.com 555-123-4567 <IP> 4111111111111111 <US_SSN>"},
	}
	s := mustNew(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := s.Scrub(in, tt.give)
			require.NoError(t, err)
			require.Equal(t, tt.want, res.Text)
			checkResult(t, s, in, tt.give, res)
		})
	}
}

func TestScrubUnknownEntity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give []string
	}{
		{"dapr library name", []string{"PHONE"}},
		{"lower case", []string{"email_address"}},
		{"empty name", []string{""}},
		{"after a known one", []string{EntityEmail, "ZIP_CODE"}},
	}
	s := mustNew(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := s.Scrub("bob@example.com", tt.give)
			require.ErrorIs(t, err, ErrUnknownEntity)
			require.ErrorContains(t, err, `"`+tt.give[len(tt.give)-1]+`"`)
			require.Equal(t, Result{}, res)
		})
	}
}

func TestEntities(t *testing.T) {
	t.Parallel()
	got := Entities()
	require.Equal(t, []string{"EMAIL_ADDRESS", "PHONE_NUMBER", "IP", "CREDIT_CARD", "US_SSN", "IBAN", "MAC_ADDRESS",
		"CRYPTO", "SECRET", "UK_NHS", "CA_SIN", "ES_NIF", "IN_AADHAAR"}, got)
	got[0] = "changed"
	require.Equal(t, EntityEmail, Entities()[0], "Entities must return a fresh slice")
	require.Equal(t, []string{"EMAIL_ADDRESS", "PHONE_NUMBER", "IP", "CREDIT_CARD", "US_SSN", "IBAN", "MAC_ADDRESS",
		"CRYPTO", "SECRET"}, DefaultEntities())
	for _, name := range got[1:] {
		e, ok := entityOf(name)
		require.True(t, ok, name)
		require.Equal(t, name, e.name())
		ph := "<" + name + ">"
		require.Equal(t, len(ph), placeholderAt(ph, 0), "placeholder %s", ph)
	}
}

func TestScrubUnchangedIsNotCopied(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	for _, in := range []string{"", "plain prose without anything", "year 2025, v1.2.3.4.5, 10:30", strings.Repeat("é", 100)} {
		res, err := s.Scrub(in, nil)
		require.NoError(t, err)
		require.Nil(t, res.Findings)
		require.Equal(t, in, res.Text)
		require.Equal(t, unsafe.StringData(in), unsafe.StringData(res.Text))
	}
}

// TestScrubAllocations counts allocations exactly, so it runs without the race detector
// (which makes sync.Pool drop values at random): `make test` runs it in a plain build too.
func TestScrubAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are exact only without -race; make test-allocations runs it")
	}
	s := mustNew(t)
	clean := strings.Repeat("Nothing to see here, version 1.2.3 shipped in 2025. ", 20)
	allocs := testing.AllocsPerRun(50, func() {
		_, _ = s.Scrub(clean, nil)
	})
	require.Zero(t, allocs, "a text without findings must not allocate")

	dirty := clean + "Mail bob@example.com or call 555-123-4567."
	allocs = testing.AllocsPerRun(50, func() {
		_, _ = s.Scrub(dirty, nil)
	})
	require.LessOrEqual(t, allocs, 3.0, "findings, text and the phone number's digits for validation")
}

func TestScrubConcurrent(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	inputs := []string{
		"well hello there, my phone number is +2222222222",
		"mail bob@example.com from 10.0.0.1 about 4111 1111 1111 1111",
		"ssn 123-45-6789 and +44 20 7946 0958 and 2001:db8::1",
		strings.Repeat("nothing here 2025 ", 50),
	}
	want := make([]Result, len(inputs))
	for i, in := range inputs {
		var err error
		want[i], err = s.Scrub(in, nil)
		require.NoError(t, err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				k := (g + i) % len(inputs)
				got, err := s.Scrub(inputs[k], nil)
				if err != nil || got.Text != want[k].Text || len(got.Findings) != len(want[k].Findings) {
					errs <- inputs[k]
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for in := range errs {
		t.Errorf("concurrent scrub differs for %q", in)
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	c := func(start, end int, ent entity, score float64) candidate {
		return candidate{start: start, end: end, ent: ent, score: score}
	}
	tests := []struct {
		name string
		give []candidate
		want []candidate
	}{
		{
			name: "disjoint out of order",
			give: []candidate{c(10, 12, entIP, scoreIP), c(0, 3, entEmail, scoreEmail)},
			want: []candidate{c(0, 3, entEmail, scoreEmail), c(10, 12, entIP, scoreIP)},
		},
		{
			name: "touching spans stay apart",
			give: []candidate{c(0, 3, entIP, scoreIP), c(3, 6, entPhone, scorePhoneIntlValid)},
			want: []candidate{c(0, 3, entIP, scoreIP), c(3, 6, entPhone, scorePhoneIntlValid)},
		},
		{
			name: "nested weaker is absorbed",
			give: []candidate{c(0, 20, entEmail, scoreEmail), c(0, 16, entCard, scoreCard), c(5, 8, entIP, scoreIP)},
			want: []candidate{c(0, 20, entEmail, scoreEmail)},
		},
		{
			name: "partial overlap covers the union with the stronger label",
			give: []candidate{c(0, 15, entPhone, 0.8), c(11, 25, entCard, scoreCard)},
			want: []candidate{c(0, 25, entCard, scoreCard)},
		},
		{
			name: "same score longer wins",
			give: []candidate{c(2, 14, entPhone, scorePhoneIntlValid), c(0, 14, entPhone, scorePhoneIntlValid)},
			want: []candidate{c(0, 14, entPhone, scorePhoneIntlValid)},
		},
		{
			name: "a false positive nested in an earlier match does not hide a later entity",
			give: []candidate{c(6, 19, entIP, scoreIP), c(16, 28, entPhone, 0.1), c(29, 45, entCard, scoreCard)},
			want: []candidate{c(6, 28, entIP, scoreIP), c(29, 45, entCard, scoreCard)},
		},
		{
			name: "chain",
			give: []candidate{c(0, 4, entIP, scoreIP), c(3, 7, entPhone, scorePhoneNational), c(6, 9, entSSN, scoreSSN)},
			want: []candidate{c(0, 9, entIP, scoreIP)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, merge(tt.give))
		})
	}
}

func TestKnownIIN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give string
		want bool
	}{
		{"4111111111111", true},
		{"41111111111111", false},
		{"2221000000000000", true},
		{"2720999999999999", true},
		{"2721000000000000", false},
		{"2220999999999999", false},
		{"5100000000000000", true},
		{"5600000000000000", true},
		{"340000000000000", true},
		{"3400000000000000", false},
		{"30000000000000", true},
		{"3528000000000000", true},
		{"180000000000000", true},
		{"1234000000000000", false},
		{"7000000000000000", false},
		{"500000000000", true},
		{"40000000000", false},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, knownIIN([]byte(tt.give)))
		})
	}
}

// mustNew returns a Scrubber with the default configuration.
func mustNew(tb testing.TB) *Scrubber {
	tb.Helper()
	s, err := New(Config{})
	require.NoError(tb, err)
	return s
}
