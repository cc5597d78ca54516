package command_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/cli/internal/command"
	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
)

func TestParseTime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give    string
		want    time.Time
		wantErr bool
	}{
		{give: "2026-03-01", want: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		{give: "2026-03-01T10:00:00Z", want: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)},
		{give: "2026-03-01T10:00:00.5-02:00", want: time.Date(2026, 3, 1, 12, 0, 0, 5e8, time.UTC)},
		{give: "2026-02-30", wantErr: true},
		{give: "0000-01-01T00:00:00Z", wantErr: true},
		{give: "now", wantErr: true},
		{give: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			t.Parallel()
			got, err := command.ParseTime(tt.give)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.True(t, tt.want.Equal(got), "got %v", got)
		})
	}
}

func TestParseSince(t *testing.T) {
	t.Parallel()
	for give, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "90m": 90 * time.Minute, "0": 0, "1h30m": 90 * time.Minute} {
		got, err := command.ParseSince(give)
		require.NoError(t, err, give)
		require.Equal(t, want, got, give)
	}
	for _, give := range []string{"", "d", "-1h", "1w", "1.5d", "100001d"} {
		_, err := command.ParseSince(give)
		require.Error(t, err, give)
	}
}

func TestParseGroupBy(t *testing.T) {
	t.Parallel()
	got, err := command.ParseGroupBy(" Model ,component,model")
	require.NoError(t, err)
	require.Equal(t, []auditv1.UsageDimension{auditv1.UsageDimension_USAGE_DIMENSION_MODEL, auditv1.UsageDimension_USAGE_DIMENSION_COMPONENT}, got)
	got, err = command.ParseGroupBy("")
	require.NoError(t, err)
	require.Empty(t, got)
	_, err = command.ParseGroupBy("component,,model")
	require.Error(t, err)
}

// FuzzParseTime checks that an accepted time is within the range a protobuf Timestamp
// holds, and that its RFC 3339 form parses back to the same instant.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-03-01", "2026-03-01T10:00:00Z", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00-01:00", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := command.ParseTime(s)
		if err != nil {
			return
		}
		if y := got.UTC().Year(); y < 1 || y > 9999 {
			t.Fatalf("ParseTime(%q) = %v: out of range", s, got)
		}
		again, err := command.ParseTime(got.Format(time.RFC3339Nano))
		if err != nil || !again.Equal(got) {
			t.Fatalf("ParseTime(%q) = %v; round trip gives %v, %v", s, got, again, err)
		}
	})
}

// FuzzParseSince checks that an accepted period is never negative.
func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"7d", "90m", "-1h", "99999d", "1h-1m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := command.ParseSince(s)
		if err == nil && d < 0 {
			t.Fatalf("ParseSince(%q) = %v", s, d)
		}
	})
}

// FuzzParseGroupBy checks that accepted dimensions are known and listed once.
func FuzzParseGroupBy(f *testing.F) {
	for _, s := range []string{"component", "model,component", "x", ",", "MODEL , model"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dims, err := command.ParseGroupBy(s)
		if err != nil {
			return
		}
		seen := map[auditv1.UsageDimension]bool{}
		for _, d := range dims {
			if d != auditv1.UsageDimension_USAGE_DIMENSION_COMPONENT && d != auditv1.UsageDimension_USAGE_DIMENSION_MODEL || seen[d] {
				t.Fatalf("ParseGroupBy(%q) = %v", s, dims)
			}
			seen[d] = true
		}
	})
}
