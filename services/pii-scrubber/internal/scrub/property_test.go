package scrub

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// positives are values every detector must find when they stand alone.
var positives = []string{
	"test@test.com", "john.doe+tag@example.co.uk", "josé@münchen.de", "a.b-c@mail.eu.example.org",
	"+2222222222", "+1 (555) 123-4567", "+44 20 7946 0958", "+46 (0)8 928 571 38", "(555) 123-4567",
	"555-123-4567", "555.123.4567", "1-800-555-0199", "(415) 555-0132 ext. 12", "020 7946 0958", "01 42 68 53 00",
	"10.8.9.1", "192.168.1.100", "2001:db8::1", "::1", "fe80::1ff:fe23:4567:890a", "::ffff:192.0.2.128",
	"4111 1111 1111 1111", "4111-1111-1111-1111", "4263982640269299", "2223003122003222", "378282246310005",
	"3782 822463 10005", "30569309025904", "4131034282458809939",
	"123-45-6789", "219-09-9999",
}

// traps look like PII to naive detectors and must be left alone.
var traps = []string{
	"2025", "2024-01-01", "01/02/2024", "10:30:00", "2024-01-15T10:30:00Z", "1.2.3", "1.2.3.4.5", "v1.2.3.4",
	"$1,299.99", "42", "12345", "94105-1234", "123e4567-e89b-12d3-a456-426614174000", "1705314600",
	"4111111111111112", "1234567812345670", "000-12-3456", "666-12-3456", "123-00-4567", "std::cout",
	"00:1A:2B:3C:4D:5E", "978-3-16-148410-0", "PSC 0413, Box 8144", "d41d8cd98f00b204e9800998ecf8427e",
	"@alice", "user@localhost", "<EMAIL_ADDRESS>", "<IP>", "<PHONE_NUMBER>",
}

var words = []string{
	"hello", "the", "and", "ID", "v", "x", "ext", "IPv6", "addr", "Grüße", "🙂", "naïve", "日本", "cafe", "dead",
	"beef", "at", "dot", "com", "e", "9", "0", "1", "12", "555", "4111", "(", ")", "+", "@", ":", "::", ".", "-",
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
	s := New()
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
	s := New()
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

// TestScrubLinearTime scrubs adversarial inputs of two sizes. A quadratic
// path takes about 16 times longer on the 4 times larger input; the bound of
// 10 leaves room for a noisy machine, and a pattern only fails if three
// measurements in a row exceed it.
func TestScrubLinearTime(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	s := New()
	patterns := []string{
		"1 ", "12 ", "1-", "1.", "+1 ", "(1)", "(555) ", "4111 ", "1.1.1.1.", "a@", "@a.", "a.a@", "..@", "x@a-",
		":", "a:", "1:", "1::", "ab:cd.", "a", "é", "555-123-4567 ", "+44 20 7946 0958 ", "bob@example.com ",
		"10.0.0.1-", "0 ", "01 ", "1 ext 1", "a@b.c", "a-b.", strings.Repeat("1", 30) + " ",
	}
	elapsed := func(in string) time.Duration {
		best := time.Duration(1 << 62)
		for range 5 {
			runtime.GC()
			start := time.Now()
			_, err := s.Scrub(in, nil)
			require.NoError(t, err)
			best = min(best, time.Since(start))
		}
		return best
	}
	const small = 32 << 10
	for _, p := range patterns {
		in := strings.Repeat(p, small/len(p)+1)
		in4 := strings.Repeat(p, 4*small/len(p)+1)
		var ratio float64
		var a, b time.Duration
		for range 3 {
			a, b = elapsed(in), elapsed(in4)
			if ratio = float64(b) / float64(max(a, 20*time.Microsecond)); ratio < 10 {
				break
			}
		}
		require.Less(t, ratio, 10.0, "pattern %q: %v for 32 KiB, %v for 128 KiB", p, a, b)
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
