package scrub

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// positives are values every detector must find when they stand alone.
var positives = []string{
	"test@test.com", "john.doe+tag@example.co.uk", "josé@münchen.de", "a.b-c@mail.eu.example.org",
	"+2222222222", "+1 (555) 123-4567", "+44 20 7946 0958", "+46 (0)8 928 571 38", "(555) 123-4567",
	"555-123-4567", "555.123.4567", "1-800-555-0199", "(415) 555-0132 ext. 12", "020 7946 0958", "01 42 68 53 00",
	"(030) 1234567", "06-12345678", "612 34 56 78", "(11) 98765-4321", "03-3456-7890", "0412 345 678", "0044 20 7946 0958",
	"10.8.9.1", "192.168.1.100", "2001:db8::1", "::1", "fe80::1ff:fe23:4567:890a", "::ffff:192.0.2.128",
	"4111 1111 1111 1111", "4111-1111-1111-1111", "4263982640269299", "2223003122003222", "378282246310005",
	"3782 822463 10005", "30569309025904", "4131034282458809939",
	"123-45-6789", "219-09-9999",
	"DE89370400440532013000", "DE89 3704 0044 0532 0130 00", "gb82west12345698765432", "FR1420041010050500013M02606",
	"00:1a:2b:3c:4d:5e", "A0-B1-C2-D3-E4-F5", "0011.2233.4455",
	"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
	"AKIAIOSFODNN7EXAMPLE", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "sk-proj-Jk3L9mQ2xW7vB4nR8tY1uZ5aE6cD0fGhIjKl",
	"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
	"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
}

// traps look like PII to naive detectors and must be left alone.
var traps = []string{
	"2025", "2024-01-01", "01/02/2024", "10:30:00", "2024-01-15T10:30:00Z", "1.2.3", "1.2.3.4.5", "v1.2.3.4",
	"$1,299.99", "42", "12345", "94105-1234", "123e4567-e89b-12d3-a456-426614174000", "1705314600",
	"4111111111111112", "1234567812345670", "000-12-3456", "666-12-3456", "123-00-4567", "std::cout",
	"00:00:00:00:00:00", "978-3-16-148410-0", "PSC 0413, Box 8144", "d41d8cd98f00b204e9800998ecf8427e",
	"@alice", "user@localhost", "<EMAIL_ADDRESS>", "<IP>", "<PHONE_NUMBER>", "<IBAN_2>", "<SECRET:0123456789abcdef>",
	"DE89 3704 0044 0532 0130 01", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", "sk-learn", "ghp_short", "AKIA",
	"a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", "-----BEGIN PUBLIC KEY-----", "password: changed",
}

var words = []string{
	"hello", "the", "and", "ID", "v", "x", "ext", "IPv6", "addr", "Grüße", "🙂", "naïve", "日本", "cafe", "dead",
	"beef", "at", "dot", "com", "e", "9", "0", "1", "12", "555", "4111", "(", ")", "+", "@", ":", "::", ".", "-",
	"order", "card", "phone", "SSN", "version", "password", "Bearer", "DE", "bc", "sk", "eyJ", "-----", "です",
}

var joins = []string{
	" ", " ", " ", ", ", ". ", "\n", "-", ".", ":", "/", "+", "@", "<", ">", "", "", "_", "=", "&", "?", "(", ")",
	"\u00a0", "\u2013", "..", "--", " - ", "#", "x", "%",
}

func pick(r *rand.Rand, s []string) string { return s[r.IntN(len(s))] }

// TestScrubProperties scrubs random compositions of PII, traps, words and
// glue. Every result must satisfy checkResult (in particular idempotence),
// and when the pieces are well separated no positive may survive.
func TestScrubProperties(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		var glued, separated strings.Builder
		var placed []string
		for i := range 1 + r.IntN(10) {
			var piece string
			switch r.IntN(3) {
			case 0:
				piece = pick(r, positives)
				placed = append(placed, piece)
			case 1:
				piece = pick(r, traps)
			default:
				piece = pick(r, words)
			}
			if i > 0 {
				glued.WriteString(pick(r, joins))
				separated.WriteString(" ; ")
			}
			glued.WriteString(piece)
			separated.WriteString(piece)
		}

		in := glued.String()
		res, err := s.Scrub(in, nil)
		require.NoError(t, err)
		checkResult(t, s, in, nil, res)

		in = separated.String()
		res, err = s.Scrub(in, nil)
		require.NoError(t, err)
		checkResult(t, s, in, nil, res)
		for _, p := range placed {
			require.NotContains(t, res.Text, p, "leaked from %q", in)
		}
	}
}

// TestScrubTraps checks that no trap alone produces a finding and that every
// positive alone is a single finding covering all of it.
func TestScrubTraps(t *testing.T) {
	t.Parallel()
	s := mustNew(t)
	for _, trap := range traps {
		res, err := s.Scrub("see "+trap+" here", nil)
		require.NoError(t, err)
		require.Empty(t, res.Findings, "trap %q", trap)
	}
	for _, p := range positives {
		in := "see " + p + " here"
		res, err := s.Scrub(in, nil)
		require.NoError(t, err)
		require.Len(t, res.Findings, 1, "positive %q", p)
		require.Equal(t, p, in[res.Findings[0].Start:res.Findings[0].End])
	}
}

// TestScrubLinearWork proves the scan linear by counting its work, not by
// timing it: each adversarial pattern is repeated to n and to 16n bytes, and
// the scanner's steps (every iteration of the pass and every byte a detector
// walks over, see scanner.run) and the allocations of the whole Scrub must
// grow at most 16 times, with 10% for the ends of the text. A quadratic
// path grows 256 times; a detector that walked from each trigger to the end
// of the text would grow some 100 times. Neither count depends on the
// machine's speed or load: the steps are exact, and the allocations vary
// only by the few a sync.Pool refill after a GC costs, which the slack
// covers. (Not parallel: AllocsPerRun counts the allocations of the whole
// process. Allocations are not counted under the race detector, which
// makes sync.Pool, and so regexp, drop cached values at random.)
func TestScrubLinearWork(t *testing.T) {
	s := mustNew(t)
	const small, large = 4 << 10, 64 << 10
	type work struct {
		steps  int
		allocs float64
	}
	measure := func(in string) work {
		var w work
		c := Call{s: s, set: s.defaults, thr: s.thresholds, steps: &w.steps}
		c.Scrub(in)
		if !raceEnabled {
			steps := w.steps
			w.allocs = testing.AllocsPerRun(1, func() { c.Scrub(in) })
			w.steps = steps
		}
		return w
	}
	worst, worstPattern := 0.0, ""
	for _, p := range adversarialPatterns() {
		a := measure(strings.Repeat(p, small/len(p)+1)[:small])
		b := measure(strings.Repeat(p, large/len(p)+1)[:large])
		// The pass alone visits every byte: a counter that stopped counting
		// would make the bounds below meaningless.
		require.GreaterOrEqual(t, a.steps, small, "pattern %q: steps not counted", p)
		require.LessOrEqual(t, float64(b.steps), 1.1*large/small*float64(a.steps),
			"pattern %q: %d steps for %d bytes, %d for %d", p, a.steps, small, b.steps, large)
		// The candidate list grows by doubling: a few allocations more.
		require.LessOrEqual(t, b.allocs, 1.1*large/small*a.allocs+8,
			"pattern %q: %v allocations for %d bytes, %v for %d", p, a.allocs, small, b.allocs, large)
		if perByte := float64(b.steps) / large; perByte > worst {
			worst, worstPattern = perByte, p
		}
	}
	t.Logf("most work per byte: %.1f steps for pattern %q", worst, worstPattern)
}

// adversarialPatterns are inputs that trigger every detector as often as
// possible; repeated, they must still scrub in linear time.
func adversarialPatterns() []string {
	return []string{
		"1 ", "12 ", "1-", "1.", "+1 ", "(1)", "(555) ", "4111 ", "1.1.1.1.", "a@", "@a.", "a.a@", "..@", "x@a-",
		":", "a:", "1:", "1::", "ab:cd.", "a", "é", "555-123-4567 ", "+44 20 7946 0958 ", "bob@example.com ",
		"10.0.0.1-", "0 ", "01 ", "1 ext 1", "a@b.c", "a-b.", strings.Repeat("1", 30) + " ",
		"-----BEGIN RSA PRIVATE KEY-----\n", "-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAAAAAA\n", "-", "--", "sk-", "sk-a",
		"eyJ", "eyJhbGciOiJIUzI1NiJ9.", "AKIA", "ghp_", "xoxb-", "Bearer ", "bearer a", "bc1", "bc1q", "1A", "3J98t1WpEZ7",
		"DE89 ", "DE89", "de89 3704 ", "password=", "password: x1", "x://a:b@", "://@", "<EMAIL_ADDRESS>", "<IP_1>",
		"<SECRET:0123456789abcdef>", "<", "00:1a:", "00-1a-", "0011.", "X1234567L ", "12345678Z ", "00 ", "0044 ",
		"(0)", "+44 (0)", "1 (800) ", "06.", "電話03-", "=", "a=", "token=", "ab.cd@",
	}
}

// TestPlausibleIP compares the IP pre-checks with netip on random strings
// over the address alphabet; FuzzPlausibleIP does the same with a fuzzer.
func TestPlausibleIP(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	const alphabet = "0123456789abcdefABCDEF:.::..0000ffff1"
	var b []byte
	for range 200000 {
		b = b[:0]
		for range 1 + r.IntN(40) {
			b = append(b, alphabet[r.IntN(len(alphabet))])
		}
		checkPlausible(t, string(b))
	}
	for range 20000 {
		var a [16]byte
		for i := range a {
			if r.IntN(3) > 0 { // zero runs exercise "::"
				a[i] = byte(r.Uint32())
			}
		}
		if r.IntN(4) == 0 {
			a = netip.AddrFrom4([4]byte{a[0], a[1], a[2], a[3]}).As16() // ::ffff:a.b.c.d
		}
		addr := netip.AddrFrom16(a)
		require.True(t, plausibleV6(addr.String()), addr.String())
		require.True(t, plausibleV6(addr.StringExpanded()), addr.StringExpanded())
	}
	for _, s := range []string{"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "::1.2.3.4"} {
		checkPlausible(t, s)
		require.True(t, plausibleV6(s), s)
	}
}
