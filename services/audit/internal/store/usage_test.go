package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// usageEvents returns a known data set: on 2026-03-01 and 03-02, 100 conversations per
// day of tenant acme, latencies 1 to 100 ms, split over two components and two models,
// every tenth an error, every fifth a cache hit, 10 prompt and 5 completion tokens each;
// and a few of tenant globex, which acme must never see.
func usageEvents(t *testing.T) []*auditv1.ConversationEvent {
	t.Helper()
	var events []*auditv1.ConversationEvent
	for d, day := range []string{"2026-03-01", "2026-03-02"} {
		for i := range 100 {
			ev := eventAt(t, date(day+"T00:00:00Z").Add(time.Duration(i)*7*time.Minute)) // 00:00 to 11:33
			ev.Component = []string{"openai", "anthropic"}[i%2]
			ev.Model = []string{"m-a", "m-b"}[(i/2)%2]
			ev.Status = auditv1.Status_STATUS_OK
			if i%10 == 0 {
				ev.Status = auditv1.Status_STATUS_ERROR
				ev.ErrorCode = "ERR_CONVERSATION_INVOKE"
			}
			ev.CacheHit = i%5 == 0
			ev.Usage = &auditv1.TokenUsage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15, CachedTokens: uint64(d), ReasoningTokens: 1}
			ev.Latency = durationpb.New(time.Duration(i+1) * time.Millisecond)
			events = append(events, ev)
		}
	}
	for i := range 5 {
		ev := event(t, "globex", i)
		ev.CreatedAt = timestamppb.New(date("2026-03-01T10:00:00Z"))
		events = append(events, ev)
	}
	return events
}

func stats(t *testing.T, s *store.Store, tenant string, req *auditv1.GetUsageStatsRequest) []*auditv1.UsageStats {
	t.Helper()
	resp, err := s.UsageStats(t.Context(), tenant, req)
	require.NoError(t, err)
	return resp.GetStats()
}

func ms(d *durationpb.Duration) float64 { return float64(d.AsDuration()) / float64(time.Millisecond) }

func TestUsageStats(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	events := usageEvents(t)
	insert(t, s, events[:150]...)
	// Redeliveries and an overlapping batch must not count twice.
	_, err := s.InsertBatch(t.Context(), events[100:])
	require.NoError(t, err)
	_, err = s.InsertBatch(t.Context(), events)
	require.NoError(t, err)

	wholeDays := func(b auditv1.UsageBucket, g ...auditv1.UsageDimension) *auditv1.GetUsageStatsRequest {
		return &auditv1.GetUsageStatsRequest{
			StartTime: timestamppb.New(date("2026-03-01T00:00:00Z")), EndTime: timestamppb.New(date("2026-03-03T00:00:00Z")),
			Bucket: b, GroupBy: g,
		}
	}

	t.Run("day totals from the roll-up", func(t *testing.T) {
		t.Parallel()
		got := stats(t, s, "acme", wholeDays(auditv1.UsageBucket_USAGE_BUCKET_DAY))
		require.Len(t, got, 2)
		for i, st := range got {
			require.Equal(t, date([]string{"2026-03-01", "2026-03-02"}[i]+"T00:00:00Z"), st.GetBucketStart().AsTime())
			require.Equal(t, "acme", st.GetTenant())
			require.Empty(t, st.GetComponent())
			require.Empty(t, st.GetModel())
			require.EqualValues(t, 100, st.GetRequests())
			require.EqualValues(t, 10, st.GetErrors())
			require.EqualValues(t, 20, st.GetCacheHits())
			require.InDelta(t, 0.2, st.GetCacheHitRate(), 1e-9)
			require.EqualValues(t, 1000, st.GetUsage().GetPromptTokens())
			require.EqualValues(t, 500, st.GetUsage().GetCompletionTokens())
			require.EqualValues(t, 1500, st.GetUsage().GetTotalTokens())
			require.EqualValues(t, 100*i, st.GetUsage().GetCachedTokens())
			require.EqualValues(t, 100, st.GetUsage().GetReasoningTokens())
			require.InDelta(t, 50.5, ms(st.GetLatencyMean()), 0.001)
			require.True(t, st.GetLatencyEstimated())
			// Exact values 50, 90 and 99 ms (nearest rank); the histogram is within 10%.
			require.InEpsilon(t, 50, ms(st.GetLatencyP50()), 0.1)
			require.InEpsilon(t, 90, ms(st.GetLatencyP90()), 0.1)
			require.InEpsilon(t, 99, ms(st.GetLatencyP99()), 0.1)
		}
	})

	t.Run("day totals from the log when the range is not whole days", func(t *testing.T) {
		t.Parallel()
		req := wholeDays(auditv1.UsageBucket_USAGE_BUCKET_DAY)
		req.EndTime = timestamppb.New(date("2026-03-02T23:59:59Z"))
		got := stats(t, s, "acme", req)
		require.Len(t, got, 2)
		for _, st := range got {
			require.EqualValues(t, 100, st.GetRequests())
			require.EqualValues(t, 10, st.GetErrors())
			require.False(t, st.GetLatencyEstimated())
			// percentile_cont interpolates: 50.5, 90.1 and 99.01 ms.
			require.InDelta(t, 50.5, ms(st.GetLatencyP50()), 0.001)
			require.InDelta(t, 90.1, ms(st.GetLatencyP90()), 0.001)
			require.InDelta(t, 99.01, ms(st.GetLatencyP99()), 0.001)
		}
	})

	t.Run("grouped by component and model", func(t *testing.T) {
		t.Parallel()
		got := stats(t, s, "acme", wholeDays(auditv1.UsageBucket_USAGE_BUCKET_DAY,
			auditv1.UsageDimension_USAGE_DIMENSION_MODEL, auditv1.UsageDimension_USAGE_DIMENSION_COMPONENT))
		require.Len(t, got, 8)
		var keys []string
		var total int64
		for _, st := range got {
			keys = append(keys, st.GetBucketStart().AsTime().Format("01-02")+" "+st.GetComponent()+" "+st.GetModel())
			require.EqualValues(t, 25, st.GetRequests())
			total += st.GetRequests()
		}
		require.Equal(t, []string{
			"03-01 anthropic m-a", "03-01 anthropic m-b", "03-01 openai m-a", "03-01 openai m-b",
			"03-02 anthropic m-a", "03-02 anthropic m-b", "03-02 openai m-a", "03-02 openai m-b",
		}, keys)
		require.EqualValues(t, 200, total)
	})

	t.Run("filtered by component", func(t *testing.T) {
		t.Parallel()
		req := wholeDays(auditv1.UsageBucket_USAGE_BUCKET_DAY, auditv1.UsageDimension_USAGE_DIMENSION_MODEL)
		req.Component = "openai"
		got := stats(t, s, "acme", req)
		require.Len(t, got, 4)
		for _, st := range got {
			require.Empty(t, st.GetComponent())
			require.EqualValues(t, 25, st.GetRequests())
			require.EqualValues(t, 5, st.GetErrors(), "every tenth of 0..99 is even: all errors are openai's")
		}
	})

	t.Run("hour buckets", func(t *testing.T) {
		t.Parallel()
		req := wholeDays(auditv1.UsageBucket_USAGE_BUCKET_HOUR)
		req.EndTime = timestamppb.New(date("2026-03-02T00:00:00Z"))
		got := stats(t, s, "acme", req)
		require.Len(t, got, 12) // 00:00 to 11:33
		var total int64
		for i, st := range got {
			require.Equal(t, date("2026-03-01T00:00:00Z").Add(time.Duration(i)*time.Hour), st.GetBucketStart().AsTime())
			total += st.GetRequests()
		}
		require.EqualValues(t, 100, total)
		require.EqualValues(t, 9, got[0].GetRequests()) // minutes 0, 7, ..., 56
	})

	t.Run("other tenant", func(t *testing.T) {
		t.Parallel()
		for _, b := range []auditv1.UsageBucket{auditv1.UsageBucket_USAGE_BUCKET_DAY, auditv1.UsageBucket_USAGE_BUCKET_HOUR} {
			got := stats(t, s, "globex", wholeDays(b))
			var total int64
			for _, st := range got {
				require.Equal(t, "globex", st.GetTenant())
				total += st.GetRequests()
			}
			require.EqualValues(t, 5, total)
		}
		require.Empty(t, stats(t, s, "initech", wholeDays(auditv1.UsageBucket_USAGE_BUCKET_DAY)))
	})
}

func TestUsageStatsDefaultRange(t *testing.T) {
	t.Parallel()
	now := date("2026-03-10T12:30:00Z")
	_, pool := newStore(t)
	s := store.New(pool, store.WithClock(func() time.Time { return now }))
	for _, at := range []time.Time{now.Add(-time.Hour), now.Add(-23 * time.Hour), now.Add(-25 * time.Hour), now.Add(-6 * 24 * time.Hour), now.Add(-8 * 24 * time.Hour)} {
		insert(t, s, eventAt(t, at))
	}
	total := func(b auditv1.UsageBucket) int64 {
		var n int64
		for _, st := range stats(t, s, "acme", &auditv1.GetUsageStatsRequest{Bucket: b}) {
			n += st.GetRequests()
		}
		return n
	}
	require.EqualValues(t, 4, total(auditv1.UsageBucket_USAGE_BUCKET_UNSPECIFIED), "the 7 days up to the end of today")
	require.EqualValues(t, 2, total(auditv1.UsageBucket_USAGE_BUCKET_HOUR), "the 24 hours up to the end of this hour")
}

func TestUsageStatsInvalid(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	at := func(s string) *timestamppb.Timestamp { return timestamppb.New(date(s)) }
	tests := []struct {
		name string
		give *auditv1.GetUsageStatsRequest
	}{
		{name: "unknown bucket", give: &auditv1.GetUsageStatsRequest{Bucket: 9}},
		{name: "unknown dimension", give: &auditv1.GetUsageStatsRequest{GroupBy: []auditv1.UsageDimension{auditv1.UsageDimension_USAGE_DIMENSION_UNSPECIFIED}}},
		{name: "start after end", give: &auditv1.GetUsageStatsRequest{StartTime: at("2026-03-02T00:00:00Z"), EndTime: at("2026-03-01T00:00:00Z")}},
		{name: "empty range", give: &auditv1.GetUsageStatsRequest{StartTime: at("2026-03-01T00:00:00Z"), EndTime: at("2026-03-01T00:00:00Z")}},
		{name: "too many days", give: &auditv1.GetUsageStatsRequest{StartTime: at("2025-01-01T00:00:00Z"), EndTime: at("2026-03-01T00:00:00Z")}},
		{name: "too many hours", give: &auditv1.GetUsageStatsRequest{Bucket: auditv1.UsageBucket_USAGE_BUCKET_HOUR,
			StartTime: at("2026-01-01T00:00:00Z"), EndTime: at("2026-03-01T00:00:00Z")}},
		{name: "invalid start", give: &auditv1.GetUsageStatsRequest{StartTime: &timestamppb.Timestamp{Nanos: -1}}},
		{name: "invalid end", give: &auditv1.GetUsageStatsRequest{EndTime: &timestamppb.Timestamp{Seconds: 1 << 60}}},
		{name: "model not utf8", give: &auditv1.GetUsageStatsRequest{Model: "\xff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := s.UsageStats(t.Context(), "acme", tt.give)
			require.ErrorIs(t, err, store.ErrInvalidRequest)
			require.Nil(t, resp)
		})
	}
}

// TestUsageRollupMatchesLog recomputes the roll-up from the log after ingest with
// redeliveries, and compares every counter and histogram.
func TestUsageRollupMatchesLog(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	events := usageEvents(t)
	for i := 0; i < len(events); i += 30 {
		insert(t, s, events[i:min(i+30, len(events))]...)
	}
	_, err := s.InsertBatch(t.Context(), events[20:120])
	require.NoError(t, err)

	var mismatches int
	require.NoError(t, pool.QueryRow(t.Context(), `
		WITH g AS (
			SELECT tenant, (created_at AT TIME ZONE 'UTC')::date AS day, component, model,
				audit_latency_bucket(latency_us) AS b, count(*) AS n,
				count(*) FILTER (WHERE status = 'error') AS errors, count(*) FILTER (WHERE cache_hit) AS cache_hits,
				sum(total_tokens) AS total_tokens, sum(latency_us) AS latency_us
			FROM conversations GROUP BY 1, 2, 3, 4, 5
		), r AS (
			SELECT tenant, day, component, model, sum(n) AS requests, sum(errors) AS errors,
				sum(cache_hits) AS cache_hits, sum(total_tokens) AS total_tokens,
				sum(latency_us) AS latency_sum_us, audit_hist_of(array_agg(b), array_agg(n)) AS latency_hist
			FROM g GROUP BY 1, 2, 3, 4
		)
		SELECT count(*) FROM r FULL JOIN usage_daily u USING (tenant, day, component, model)
		WHERE r.requests IS DISTINCT FROM u.requests OR r.errors IS DISTINCT FROM u.errors
			OR r.cache_hits IS DISTINCT FROM u.cache_hits OR r.total_tokens IS DISTINCT FROM u.total_tokens
			OR r.latency_sum_us IS DISTINCT FROM u.latency_sum_us OR r.latency_hist IS DISTINCT FROM u.latency_hist`).Scan(&mismatches))
	require.Zero(t, mismatches)
}

// TestUsageStatsByKey: grouped by API key, day buckets over whole days come from the log
// (the roll-up has no key) and split the tenant's usage by key; the key id is stored and
// read back with the conversation.
func TestUsageStatsByKey(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	var events []*auditv1.ConversationEvent
	for i := range 6 {
		ev := eventAt(t, date("2026-03-01T01:00:00Z").Add(time.Duration(i)*time.Minute))
		ev.KeyId = []string{"ci", "ops", ""}[i%3]
		ev.Usage = &auditv1.TokenUsage{TotalTokens: uint64(10 * (i + 1))}
		events = append(events, ev)
	}
	insert(t, s, events...)
	got := stats(t, s, events[0].GetTenant(), &auditv1.GetUsageStatsRequest{
		StartTime: timestamppb.New(date("2026-03-01T00:00:00Z")), EndTime: timestamppb.New(date("2026-03-02T00:00:00Z")),
		GroupBy: []auditv1.UsageDimension{auditv1.UsageDimension_USAGE_DIMENSION_KEY},
	})
	require.Len(t, got, 3)
	byKey := map[string][2]int64{}
	for _, st := range got {
		byKey[st.GetKeyId()] = [2]int64{st.GetRequests(), int64(st.GetUsage().GetTotalTokens())}
		require.False(t, st.GetLatencyEstimated(), "computed from the log")
	}
	require.Equal(t, map[string][2]int64{"": {2, 30 + 60}, "ci": {2, 10 + 40}, "ops": {2, 20 + 50}}, byKey)

	c, err := s.Get(t.Context(), events[1].GetTenant(), events[1].GetRequestId())
	require.NoError(t, err)
	require.Equal(t, "ops", c.GetKeyId())
}
