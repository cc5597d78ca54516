package store

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
)

// Bounds of a GetUsageStats time range.
const (
	MaxDayRange      = 366 * day
	MaxHourRange     = 31 * day
	defaultDayRange  = 7 * day
	defaultHourRange = day
)

// The latency histogram of usage_daily (migration 002): bucket 0 holds latencies under
// histBound(0) = 100 µs, bucket i (1 to histBuckets-1) those from histBound(i-1) to
// histBound(i), the last also everything longer.
const histBuckets = 100

// histBound returns the i-th bucket bound in microseconds: round(100·2^(i/4)), the
// integers migration 002's audit_latency_bucket compares with.
func histBound(i int) int64 {
	return int64(math.Round(100 * math.Exp2(float64(i)/4)))
}

// histBucket returns the bucket of a latency of us microseconds, as audit_latency_bucket
// does: the number of bounds not above us.
func histBucket(us int64) int {
	return sort.Search(histBuckets-1, func(i int) bool { return histBound(i) > us })
}

// usagePlan is a validated GetUsageStats request.
type usagePlan struct {
	hourly      bool
	start, end  time.Time
	byComponent bool
	byModel     bool
	byKey       bool
	component   string
	model       string
}

// fromRollup reports whether the plan can be answered from usage_daily: day buckets over
// whole UTC days, not grouped by key (the roll-up has no key).
func (p usagePlan) fromRollup() bool {
	return !p.hourly && !p.byKey && p.start.Equal(p.start.Truncate(day)) && p.end.Equal(p.end.Truncate(day))
}

// planUsage validates req and fills in its defaults, relative to now. Errors wrap
// ErrInvalidRequest.
func planUsage(req *auditv1.GetUsageStatsRequest, now time.Time) (usagePlan, error) {
	var p usagePlan
	switch req.GetBucket() {
	case auditv1.UsageBucket_USAGE_BUCKET_UNSPECIFIED, auditv1.UsageBucket_USAGE_BUCKET_DAY:
	case auditv1.UsageBucket_USAGE_BUCKET_HOUR:
		p.hourly = true
	default:
		return p, fmt.Errorf("%w: unknown bucket %v", ErrInvalidRequest, req.GetBucket())
	}
	for _, d := range req.GetGroupBy() {
		switch d {
		case auditv1.UsageDimension_USAGE_DIMENSION_COMPONENT:
			p.byComponent = true
		case auditv1.UsageDimension_USAGE_DIMENSION_MODEL:
			p.byModel = true
		case auditv1.UsageDimension_USAGE_DIMENSION_KEY:
			p.byKey = true
		default:
			return p, fmt.Errorf("%w: unknown group_by dimension %v", ErrInvalidRequest, d)
		}
	}
	for _, f := range []struct{ name, value string }{{"component", req.GetComponent()}, {"model", req.GetModel()}} {
		if err := checkText(f.name, f.value); err != nil {
			return p, err
		}
	}
	p.component, p.model = req.GetComponent(), req.GetModel()

	unit, span, maxSpan := day, defaultDayRange, MaxDayRange
	if p.hourly {
		unit, span, maxSpan = time.Hour, defaultHourRange, MaxHourRange
	}
	now = now.UTC()
	p.end = now.Truncate(unit).Add(unit)
	if req.GetEndTime() != nil {
		if err := req.GetEndTime().CheckValid(); err != nil {
			return p, fmt.Errorf("%w: end_time: %w", ErrInvalidRequest, err)
		}
		p.end = req.GetEndTime().AsTime()
	}
	p.start = p.end.Add(-span)
	if req.GetStartTime() != nil {
		if err := req.GetStartTime().CheckValid(); err != nil {
			return p, fmt.Errorf("%w: start_time: %w", ErrInvalidRequest, err)
		}
		p.start = req.GetStartTime().AsTime()
	}
	if !p.start.Before(p.end) {
		return p, fmt.Errorf("%w: start_time must be before end_time", ErrInvalidRequest)
	}
	if p.end.Sub(p.start) > maxSpan {
		return p, fmt.Errorf("%w: the range may span at most %s of %s buckets", ErrInvalidRequest, maxSpan, bucketName(p.hourly))
	}
	return p, nil
}

func bucketName(hourly bool) string {
	if hourly {
		return "hour"
	}
	return "day"
}

// checkText rejects filter text PostgreSQL cannot compare: invalid UTF-8 or NUL.
func checkText(name, s string) error {
	if cleanText(s) != s {
		return fmt.Errorf("%w: %s must be UTF-8 text without NUL", ErrInvalidRequest, name)
	}
	return nil
}

// usageRow is one group of one bucket as read from either source.
type usageRow struct {
	Bucket           time.Time `db:"bucket"`
	Component        string    `db:"component"`
	Model            string    `db:"model"`
	KeyID            string    `db:"key_id"`
	Requests         int64     `db:"requests"`
	Errors           int64     `db:"errors"`
	CacheHits        int64     `db:"cache_hits"`
	PromptTokens     int64     `db:"prompt_tokens"`
	CompletionTokens int64     `db:"completion_tokens"`
	TotalTokens      int64     `db:"total_tokens"`
	CachedTokens     int64     `db:"cached_tokens"`
	ReasoningTokens  int64     `db:"reasoning_tokens"`
	LatencySumUS     int64     `db:"latency_sum_us"`
	// Exactly one of the two is set: the roll-up's histogram, or percentiles (µs) of the
	// log's rows.
	Hist        []int64   `db:"hist"`
	Percentiles []float64 `db:"percentiles"`
}

// usageQuantiles are the reported percentiles.
var usageQuantiles = [...]float64{0.5, 0.9, 0.99}

// UsageStats returns the tenant's usage per time bucket and group. Day buckets over whole
// UTC days come from the usage_daily roll-up (percentiles estimated from its histogram),
// and so cover days whose rows the retention already dropped; hour buckets, and day
// buckets over a range that does not start and end at midnight UTC, are computed from the
// log (exact percentiles). A bad request gives ErrInvalidRequest.
func (s *Store) UsageStats(ctx context.Context, tenant string, req *auditv1.GetUsageStatsRequest) (*auditv1.GetUsageStatsResponse, error) {
	p, err := planUsage(req, s.now())
	if err != nil {
		return nil, fmt.Errorf("usage stats: %w", err)
	}
	var rs []usageRow
	if p.fromRollup() {
		rs, err = s.usageFromRollup(ctx, tenant, p)
	} else {
		rs, err = s.usageFromLog(ctx, tenant, p)
	}
	if err != nil {
		return nil, fmt.Errorf("usage stats: %w", err)
	}
	resp := &auditv1.GetUsageStatsResponse{Stats: make([]*auditv1.UsageStats, len(rs))}
	for i := range rs {
		resp.Stats[i] = rs[i].stats(tenant)
	}
	return resp, nil
}

// usageFilters adds the conditions on tenant, component and model, which both sources
// share, to q.
func usageFilters(q *query, tenant string, p usagePlan) {
	q.add("tenant = $%d", tenant)
	if p.component != "" {
		q.add("component = $%d", p.component)
	}
	if p.model != "" {
		q.add("model = $%d", p.model)
	}
}

// usageFromRollup reads the roll-up rows of the range and merges them into the requested
// groups in Go, histograms included: summing 100-element arrays in SQL costs more than
// sending them.
func (s *Store) usageFromRollup(ctx context.Context, tenant string, p usagePlan) ([]usageRow, error) {
	q := &query{}
	usageFilters(q, tenant, p)
	q.add("day >= $%d::date", p.start)
	q.add("day < $%d::date", p.end)
	rows, err := s.pool.Query(ctx, `SELECT day::timestamp AT TIME ZONE 'UTC' AS bucket, component, model, ''::text AS key_id,
		requests, errors, cache_hits, prompt_tokens, completion_tokens, total_tokens, cached_tokens,
		reasoning_tokens, latency_sum_us, latency_hist AS hist, NULL::float8[] AS percentiles
		FROM usage_daily WHERE `+strings.Join(q.where, " AND "), q.args...)
	if err != nil {
		return nil, err
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[usageRow])
	if err != nil {
		return nil, err
	}
	groups := map[usageGroup]*usageRow{}
	for i := range rs {
		r := &rs[i]
		if !p.byComponent {
			r.Component = ""
		}
		if !p.byModel {
			r.Model = ""
		}
		k := usageGroup{bucket: r.Bucket.Unix(), component: r.Component, model: r.Model}
		if g, ok := groups[k]; ok {
			g.merge(r)
			continue
		}
		groups[k] = r
	}
	out := make([]usageRow, 0, len(groups))
	for _, g := range groups {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b usageRow) int {
		if c := a.Bucket.Compare(b.Bucket); c != 0 {
			return c
		}
		if c := strings.Compare(a.Component, b.Component); c != 0 {
			return c
		}
		return strings.Compare(a.Model, b.Model)
	})
	return out, nil
}

// usageGroup identifies one bucket and group of the answer.
type usageGroup struct {
	bucket           int64
	component, model string
}

func (r *usageRow) merge(o *usageRow) {
	r.Requests += o.Requests
	r.Errors += o.Errors
	r.CacheHits += o.CacheHits
	r.PromptTokens += o.PromptTokens
	r.CompletionTokens += o.CompletionTokens
	r.TotalTokens += o.TotalTokens
	r.CachedTokens += o.CachedTokens
	r.ReasoningTokens += o.ReasoningTokens
	r.LatencySumUS += o.LatencySumUS
	for i := range min(len(r.Hist), len(o.Hist)) {
		r.Hist[i] += o.Hist[i]
	}
}

// usageFromLog aggregates the log's rows of the range in SQL, exact percentiles included.
func (s *Store) usageFromLog(ctx context.Context, tenant string, p usagePlan) ([]usageRow, error) {
	q := &query{}
	usageFilters(q, tenant, p)
	q.add("created_at >= $%d", p.start)
	q.add("created_at < $%d", p.end)
	group := func(on bool, column string) string {
		if on {
			return column
		}
		return "''::text"
	}
	sql := fmt.Sprintf(`SELECT date_trunc('%s', created_at, 'UTC') AS bucket, %s AS component, %s AS model, %s AS key_id,
		count(*) AS requests, count(*) FILTER (WHERE status = 'error') AS errors,
		count(*) FILTER (WHERE cache_hit) AS cache_hits, sum(prompt_tokens)::bigint AS prompt_tokens,
		sum(completion_tokens)::bigint AS completion_tokens, sum(total_tokens)::bigint AS total_tokens,
		sum(cached_tokens)::bigint AS cached_tokens, sum(reasoning_tokens)::bigint AS reasoning_tokens,
		sum(latency_us)::bigint AS latency_sum_us, NULL::bigint[] AS hist,
		percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY latency_us) AS percentiles
		FROM conversations WHERE %s GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`,
		bucketName(p.hourly), group(p.byComponent, "component"), group(p.byModel, "model"), group(p.byKey, "key_id"), strings.Join(q.where, " AND "))
	// A custom plan, so that the range prunes partitions when the query is planned.
	rows, err := s.pool.Query(ctx, sql, append([]any{pgx.QueryExecModeDescribeExec}, q.args...)...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[usageRow])
}

func (r *usageRow) stats(tenant string) *auditv1.UsageStats {
	st := &auditv1.UsageStats{
		BucketStart: timestamppb.New(r.Bucket),
		Tenant:      tenant,
		Component:   r.Component,
		Model:       r.Model,
		KeyId:       r.KeyID,
		Requests:    r.Requests,
		Errors:      r.Errors,
		CacheHits:   r.CacheHits,
		Usage: &auditv1.TokenUsage{
			PromptTokens:     unsigned(r.PromptTokens),
			CompletionTokens: unsigned(r.CompletionTokens),
			TotalTokens:      unsigned(r.TotalTokens),
			CachedTokens:     unsigned(r.CachedTokens),
			ReasoningTokens:  unsigned(r.ReasoningTokens),
		},
	}
	if r.Requests > 0 {
		st.CacheHitRate = float64(r.CacheHits) / float64(r.Requests)
		st.LatencyMean = durationpb.New(micros(r.LatencySumUS / r.Requests))
	}
	var ps [len(usageQuantiles)]time.Duration
	if r.Hist != nil {
		st.LatencyEstimated = true
		for i, q := range usageQuantiles {
			ps[i] = histQuantile(r.Hist, q)
		}
	} else {
		for i := range ps {
			if i < len(r.Percentiles) {
				ps[i] = time.Duration(math.Round(r.Percentiles[i] * float64(time.Microsecond)))
			}
		}
	}
	st.LatencyP50, st.LatencyP90, st.LatencyP99 = durationpb.New(ps[0]), durationpb.New(ps[1]), durationpb.New(ps[2])
	return st
}

// histBounds returns the latencies that bucket b of the roll-up histogram starts at and
// ends before; the last bucket has no end (zero).
func histBounds(b int) (lo, hi time.Duration) {
	switch {
	case b <= 0:
		return 0, micros(histBound(0))
	case b >= histBuckets-1:
		return micros(histBound(histBuckets - 2)), 0
	default:
		return micros(histBound(b - 1)), micros(histBound(b))
	}
}

// histQuantile estimates the q-quantile (0 < q ≤ 1) of the latencies counted in hist: the
// geometric middle of the bucket that holds the value of rank ⌈q·n⌉, which is within a
// factor 2^(1/8) (about 9%) of that value; under 100 µs it is 50 µs, and past the last
// bucket's start, that start.
func histQuantile(hist []int64, q float64) time.Duration {
	var n int64
	for _, c := range hist {
		n += max(c, 0)
	}
	if n == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(n))), 1)
	var seen int64
	b := len(hist) - 1
	for i, c := range hist {
		seen += max(c, 0)
		if seen >= rank {
			b = i
			break
		}
	}
	lo, hi := histBounds(b)
	switch {
	case b == 0:
		return hi / 2
	case hi == 0:
		return lo
	default:
		return time.Duration(math.Round(math.Sqrt(float64(lo) * float64(hi))))
	}
}
