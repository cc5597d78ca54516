package scrub

import (
	"strings"
	"testing"
)

// benchProse is a typical prompt: support-ticket prose with a couple of
// entities and the usual numbers (dates, versions, amounts).
func benchProse() string {
	para := "Hi team, I am writing about the order I placed on 2024-03-18 for the Pro plan (version 2.4.1). " +
		"The invoice shows $1,299.99 instead of the $999 we agreed on, and the renewal date moved to 01/04/2025. " +
		"Could you check what happened? Our account has been active since 2019 and we have 42 seats. " +
		"The dashboard also showed a timeout at 10:30:00 yesterday, which may be related to the migration. "
	var b strings.Builder
	for b.Len() < 1800 {
		b.WriteString(para)
	}
	b.WriteString("You can reach me at jane.doe+billing@example.com or on +1 (555) 123-4567. Thanks, Jane")
	return b.String()
}

// benchNumbers is number-dense text: a log of orders with ids, dates,
// amounts, addresses, phones and cards.
func benchNumbers() string {
	rows := []string{
		"2024-01-15T10:30:00Z order 100234 total $1,299.99 ip 192.168.1.100 phone 555-123-4567\n",
		"2024-01-15T10:31:12Z order 100235 total $19.99 ip 10.0.0.7 card 4111 1111 1111 1111 exp 12/27\n",
		"2024-01-15T10:32:40Z order 100236 uuid 123e4567-e89b-12d3-a456-426614174000 zip 94105-1234\n",
		"2024-01-15T10:33:05Z order 100237 ssn 123-45-6789 ipv6 2001:db8::1 build 1.2.3.4.5 qty 12\n",
	}
	var b strings.Builder
	for i := 0; b.Len() < 2048; i++ {
		b.WriteString(rows[i%len(rows)])
	}
	return b.String()
}

// BenchmarkScrub reports throughput on prose and on number-dense text.
//
//	go test -run '^$' -bench BenchmarkScrub -benchmem ./services/pii-scrubber/internal/scrub/
func BenchmarkScrub(b *testing.B) {
	s := New()
	cases := []struct {
		name string
		text string
	}{
		{"prose", benchProse()},
		{"prose-clean", strings.Repeat("The quick brown fox jumps over the lazy dog, again and again. ", 33)},
		{"number-dense", benchNumbers()},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.text)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Scrub(c.text, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
