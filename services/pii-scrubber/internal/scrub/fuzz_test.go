package scrub

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzScrub checks that Scrub never fails or panics on any input and entity
// subset, and that every result satisfies checkResult: findings sorted,
// disjoint, in bounds and on rune boundaries, the text consistent with them,
// valid UTF-8 preserved, and a second pass a no-op.
//
//	go test -run '^$' -fuzz FuzzScrub -fuzztime 30s ./services/pii-scrubber/internal/scrub/
func FuzzScrub(f *testing.F) {
	for _, p := range positives {
		f.Add("x "+p+" y", uint8(0))
	}
	for _, p := range traps {
		f.Add(p, uint8(0))
	}
	for _, seed := range []string{
		"well hello there, my phone number is +2222222222",
		"IP is 192.168.1.100 and card 4263982640269299",
		"ISBN 978-3-16-148410-0 and order id 123-45-6789",
		"https://example.com/reset?email=alice@example.com&ssn=123-45-6789",
		"10.0.0.1-555-123-4567 bob@x.co-10.0.0.1 IPv6:fe80::1 4111111111111111@example.com",
		"\xff\xfe@\xc3.com +1\u00a0555\u00a0123\u00a04567 \u2013",
	} {
		f.Add(seed, uint8(0))
		f.Add(seed, uint8(0b10101))
	}
	s := New()
	f.Fuzz(func(t *testing.T, text string, mask uint8) {
		var entities []string
		for i, e := range Entities() {
			if mask&(1<<i) != 0 {
				entities = append(entities, e)
			}
		}
		res, err := s.Scrub(text, entities)
		require.NoError(t, err)
		checkResult(t, s, text, entities, res)
	})
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

func checkPlausible(t testing.TB, s string) {
	t.Helper()
	addr, err := netip.ParseAddr(s)
	if err == nil && addr.Is6() && addr.Zone() == "" {
		require.True(t, plausibleV6(s), "plausibleV6 rejects valid %q", s)
	}
	require.Equal(t, err == nil && addr.Is4(), plausibleV4(s), "plausibleV4 disagrees with netip on %q", s)
}
