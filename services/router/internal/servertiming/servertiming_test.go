package servertiming

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		total, provider time.Duration
		want            string
	}{
		{"miss", 851234 * time.Microsecond, 850 * time.Millisecond, "gateway;dur=1.234, provider;dur=850.000, total;dur=851.234"},
		{"cache hit", 2500 * time.Microsecond, 0, "gateway;dur=2.500, provider;dur=0.000, total;dur=2.500"},
		{"sub-microsecond truncated", 1999 * time.Nanosecond, 0, "gateway;dur=0.001, provider;dur=0.000, total;dur=0.001"},
		{"provider longer than total", time.Millisecond, 3 * time.Millisecond, "gateway;dur=0.000, provider;dur=3.000, total;dur=1.000"},
		{"negative provider", time.Millisecond, -time.Millisecond, "gateway;dur=1.000, provider;dur=0.000, total;dur=1.000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Format(tt.total, tt.provider))
		})
	}
}

// TestValueAddsUp: the gateway's and the provider's times make the total, and the
// provider's is reported as given.
func TestValueAddsUp(t *testing.T) {
	t.Parallel()
	timer := Start()
	got := map[string]float64{}
	for part := range strings.SplitSeq(timer.Value(0), ", ") {
		name, dur, ok := strings.Cut(part, ";dur=")
		require.True(t, ok, part)
		v, err := strconv.ParseFloat(dur, 64)
		require.NoError(t, err)
		got[name] = v
	}
	require.Len(t, got, 3)
	require.Zero(t, got["provider"])
	require.Equal(t, got["total"], got["gateway"])
}
