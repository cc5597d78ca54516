package store

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPageTokenRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give pageCursor
	}{
		{name: "typical", give: pageCursor{createdAt: time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC), requestID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}},
		{name: "zero id", give: pageCursor{createdAt: time.Unix(0, 0).UTC()}},
		{name: "year 1", give: pageCursor{createdAt: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{name: "year 9999", give: pageCursor{createdAt: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok := encodePageToken(tt.give)
			got, err := decodePageToken(tok)
			require.NoError(t, err)
			require.True(t, tt.give.createdAt.Equal(got.createdAt))
			require.Equal(t, tt.give.requestID, got.requestID)
		})
	}
}

// FuzzDecodePageToken checks that any string either fails with ErrInvalidPageToken or
// decodes to a cursor that encodes back to the same string, so a token names one position.
func FuzzDecodePageToken(f *testing.F) {
	f.Add("")
	f.Add("garbage")
	f.Add(encodePageToken(pageCursor{createdAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), requestID: [16]byte{0xff}}))
	f.Add(encodePageToken(pageCursor{createdAt: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)}))
	f.Add("AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==")
	f.Add("Af____________________________________")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodePageToken(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidPageToken) {
				t.Fatalf("decode %q: error %v does not wrap ErrInvalidPageToken", s, err)
			}
			return
		}
		if got := encodePageToken(c); got != s {
			t.Fatalf("decode %q then encode = %q", s, got)
		}
		if y := c.createdAt.Year(); y < 1 || y > 9999 {
			t.Fatalf("decode %q: created_at %v out of range", s, c.createdAt)
		}
	})
}
