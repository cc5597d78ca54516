package app_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/services/audit/internal/app"
)

func TestParsePeriod(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give     string
		want     time.Duration
		wantText string
	}{
		{give: "30d", want: 30 * 24 * time.Hour, wantText: "30d"},
		{give: "0d", want: 0, wantText: "0s"},
		{give: "1d", want: 24 * time.Hour, wantText: "1d"},
		{give: "720h", want: 720 * time.Hour, wantText: "30d"},
		{give: "36h", want: 36 * time.Hour, wantText: "36h0m0s"},
		{give: "0", want: 0, wantText: "0s"},
		{give: "1h30m", want: 90 * time.Minute, wantText: "1h30m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			t.Parallel()
			got, err := app.ParsePeriod(tt.give)
			require.NoError(t, err)
			require.Equal(t, tt.want, got.Duration())
			require.Equal(t, tt.wantText, got.String())
		})
	}
}

func TestParsePeriodRejects(t *testing.T) {
	t.Parallel()
	for _, give := range []string{"", "d", "-1d", "1.5d", "30 d", "30D", "1w", "-1h", "99999999999999999999d", "106752d", "soon"} {
		t.Run(give, func(t *testing.T) {
			t.Parallel()
			_, err := app.ParsePeriod(give)
			require.Error(t, err)
		})
	}
}

// FuzzParsePeriod checks that every accepted period is non-negative and survives a round
// trip through its String form.
func FuzzParsePeriod(f *testing.F) {
	for _, s := range []string{"30d", "0", "720h", "1h30m", "-1d", "d", "9223372036854775807ns", "106751d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := app.ParsePeriod(s)
		if err != nil {
			return
		}
		if p.Duration() < 0 {
			t.Fatalf("ParsePeriod(%q) = %v, negative", s, p.Duration())
		}
		again, err := app.ParsePeriod(p.String())
		if err != nil || again != p {
			t.Fatalf("ParsePeriod(%q) = %v; String %q parses to %v, %v", s, p.Duration(), p.String(), again.Duration(), err)
		}
	})
}
