package store

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/libs/pgtest"
)

// TestHistBucketMatchesSQL checks the Go mirror of audit_latency_bucket, which the ingest
// path uses to build the roll-up's histograms, on every bound and its neighbours.
func TestHistBucketMatchesSQL(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t, Migrations())
	us := []int64{0, 1, 50, 12345, 1_000_000, 60_000_000, 3_600_000_000, math.MaxInt64}
	for i := range histBuckets - 1 {
		b := histBound(i)
		us = append(us, b-1, b, b+1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		us = append(us, int64(math.Exp(rng.Float64()*math.Log(1e10))))
	}
	rows, err := pool.Query(t.Context(), "SELECT audit_latency_bucket(x) FROM unnest($1::bigint[]) WITH ORDINALITY AS t (x, i) ORDER BY i", us)
	require.NoError(t, err)
	sql, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	for i, u := range us {
		require.Equal(t, int(sql[i]), histBucket(u), "latency %dµs", u)
	}
}

func TestHistBounds(t *testing.T) {
	t.Parallel()
	for b := range histBuckets {
		lo, hi := histBounds(b)
		if hi != 0 {
			require.Less(t, lo, hi, "bucket %d", b)
			require.Equal(t, b, histBucket((lo + (hi-lo)/2).Microseconds()), "the middle of bucket %d", b)
		}
		if b > 0 {
			_, prevHi := histBounds(b - 1)
			require.Equal(t, prevHi, lo, "bucket %d starts where %d ends", b, b-1)
		}
	}
}

// TestHistQuantileAccuracy checks the documented bound: an estimate within about 10% of
// the exact nearest-rank percentile, for latency samples of various shapes.
func TestHistQuantileAccuracy(t *testing.T) {
	t.Parallel()
	shapes := map[string]func(rng *rand.Rand) time.Duration{
		"log uniform 0.1ms to 100s": func(rng *rand.Rand) time.Duration {
			return time.Duration(math.Exp(math.Log(1e5) + rng.Float64()*math.Log(1e6)))
		},
		"normal around 800ms": func(rng *rand.Rand) time.Duration { return time.Duration(max(1e5, 8e8+rng.NormFloat64()*1e8)) },
		"bimodal cache and provider": func(rng *rand.Rand) time.Duration {
			if rng.IntN(3) == 0 {
				return time.Duration(2e6 + rng.Float64()*1e6)
			}
			return time.Duration(1e9 + rng.Float64()*2e9)
		},
	}
	for name, draw := range shapes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(3, 4)) // one a subtest: they run in parallel
			hist := make([]int64, histBuckets)
			samples := make([]time.Duration, 5000)
			for i := range samples {
				samples[i] = draw(rng)
				hist[histBucket(samples[i].Microseconds())]++
			}
			slices.Sort(samples)
			for _, q := range []float64{0.5, 0.9, 0.99} {
				exact := samples[int(math.Ceil(q*float64(len(samples))))-1]
				got := histQuantile(hist, q)
				require.InEpsilon(t, float64(exact), float64(got), 0.1, "q=%v exact %v estimate %v", q, exact, got)
			}
		})
	}
}

func TestHistQuantileEdges(t *testing.T) {
	t.Parallel()
	hist := make([]int64, histBuckets)
	require.Zero(t, histQuantile(hist, 0.5), "no samples")
	hist[0] = 3
	require.Equal(t, 50*time.Microsecond, histQuantile(hist, 0.99), "under 100µs")
	hist[histBuckets-1] = 100
	lo, _ := histBounds(histBuckets - 1)
	require.Equal(t, lo, histQuantile(hist, 0.5), "past the last bucket's start")
	require.Equal(t, 50*time.Microsecond, histQuantile(hist, 0.01))
}

func TestPlanUsage(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 30, 0, 0, time.UTC)
	tests := []struct {
		name       string
		hourly     bool
		start, end time.Time
		rollup     bool
	}{
		{name: "day default", start: time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC), end: time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC), rollup: true},
		{name: "hour default", hourly: true, start: time.Date(2026, 3, 9, 13, 0, 0, 0, time.UTC), end: time.Date(2026, 3, 10, 13, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := requestFor(tt.hourly)
			p, err := planUsage(req, now)
			require.NoError(t, err)
			require.Equal(t, tt.start, p.start)
			require.Equal(t, tt.end, p.end)
			require.Equal(t, tt.rollup, p.fromRollup())
		})
	}
}

func requestFor(hourly bool) *auditv1.GetUsageStatsRequest {
	if hourly {
		return &auditv1.GetUsageStatsRequest{Bucket: auditv1.UsageBucket_USAGE_BUCKET_HOUR}
	}
	return &auditv1.GetUsageStatsRequest{}
}
