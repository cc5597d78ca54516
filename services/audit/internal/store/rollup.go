package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
)

// usageKey is a usage_daily row's key.
type usageKey struct {
	tenant    string
	day       int64 // days since the Unix epoch
	component string
	model     string
}

func (k usageKey) compare(o usageKey) int {
	if c := strings.Compare(k.tenant, o.tenant); c != 0 {
		return c
	}
	if k.day != o.day {
		if k.day < o.day {
			return -1
		}
		return 1
	}
	if c := strings.Compare(k.component, o.component); c != 0 {
		return c
	}
	return strings.Compare(k.model, o.model)
}

// usageCounts are the counters of usage_daily.
type usageCounts struct {
	requests, errors, cacheHits                                int64
	prompt, completion, total, cached, reasoning, latencySumUS int64
	hist                                                       [histBuckets]int64
}

// add counts ev.
func (c *usageCounts) add(ev *auditv1.ConversationEvent) {
	c.requests++
	if ev.GetStatus() == auditv1.Status_STATUS_ERROR {
		c.errors++
	}
	if ev.GetCacheHit() {
		c.cacheHits++
	}
	// PrepareRow has checked that every count fits an int64.
	u := ev.GetUsage()
	c.prompt += int64(u.GetPromptTokens())         //nolint:gosec // checked
	c.completion += int64(u.GetCompletionTokens()) //nolint:gosec // checked
	c.total += int64(u.GetTotalTokens())           //nolint:gosec // checked
	c.cached += int64(u.GetCachedTokens())         //nolint:gosec // checked
	c.reasoning += int64(u.GetReasoningTokens())   //nolint:gosec // checked
	us := ev.GetLatency().AsDuration().Microseconds()
	c.latencySumUS += us
	c.hist[histBucket(us)]++
}

func (c *usageCounts) merge(o *usageCounts) {
	c.requests += o.requests
	c.errors += o.errors
	c.cacheHits += o.cacheHits
	c.prompt += o.prompt
	c.completion += o.completion
	c.total += o.total
	c.cached += o.cached
	c.reasoning += o.reasoning
	c.latencySumUS += o.latencySumUS
	for i := range c.hist {
		c.hist[i] += o.hist[i]
	}
}

// histLen is histBuckets in SQL.
const histLen = "100"

// upsertUsageSQL adds one delta per key to usage_daily. The histograms come flattened in
// one array, histBuckets values per key, in key order.
const upsertUsageSQL = `INSERT INTO usage_daily AS u (tenant, day, component, model, requests, errors,
	cache_hits, prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
	latency_sum_us, latency_hist)
SELECT d.tenant, d.day, d.component, d.model, d.requests, d.errors, d.cache_hits, d.prompt,
	d.completion, d.total, d.cached, d.reasoning, d.latency,
	($14::bigint[])[(d.i - 1) * ` + histLen + ` + 1 : d.i * ` + histLen + `]
FROM unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[],
	$8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[])
	WITH ORDINALITY AS d (tenant, day, component, model, requests, errors, cache_hits, prompt,
		completion, total, cached, reasoning, latency, i)
ORDER BY d.i
ON CONFLICT (tenant, day, component, model) DO UPDATE SET
	requests = u.requests + EXCLUDED.requests,
	errors = u.errors + EXCLUDED.errors,
	cache_hits = u.cache_hits + EXCLUDED.cache_hits,
	prompt_tokens = u.prompt_tokens + EXCLUDED.prompt_tokens,
	completion_tokens = u.completion_tokens + EXCLUDED.completion_tokens,
	total_tokens = u.total_tokens + EXCLUDED.total_tokens,
	cached_tokens = u.cached_tokens + EXCLUDED.cached_tokens,
	reasoning_tokens = u.reasoning_tokens + EXCLUDED.reasoning_tokens,
	latency_sum_us = u.latency_sum_us + EXCLUDED.latency_sum_us,
	latency_hist = audit_hist_merge(u.latency_hist, EXCLUDED.latency_hist)`

// upsertUsage adds rows to the usage roll-up, within tx. Keys are written in sorted order,
// so that concurrent writers (replicas) lock them in the same order and cannot deadlock.
func upsertUsage(ctx context.Context, tx pgx.Tx, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	deltas := map[usageKey]*usageCounts{}
	for i := range rows {
		r := &rows[i]
		if d, ok := deltas[r.usage]; ok {
			d.merge(&r.counts)
			continue
		}
		c := r.counts
		deltas[r.usage] = &c
	}
	keys := make([]usageKey, 0, len(deltas))
	for k := range deltas {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, usageKey.compare)

	n := len(keys)
	var (
		tenants, components, models = make([]string, n), make([]string, n), make([]string, n)
		days                        = make([]time.Time, n)
		cols                        [9][]int64
		hist                        = make([]int64, 0, n*histBuckets)
	)
	for c := range cols {
		cols[c] = make([]int64, n)
	}
	for i, k := range keys {
		d := deltas[k]
		tenants[i], components[i], models[i] = k.tenant, k.component, k.model
		days[i] = dayTime(k.day)
		for c, v := range [9]int64{d.requests, d.errors, d.cacheHits, d.prompt, d.completion, d.total, d.cached, d.reasoning, d.latencySumUS} {
			cols[c][i] = v
		}
		hist = append(hist, d.hist[:]...)
	}
	args := []any{tenants, days, components, models}
	for _, c := range cols {
		args = append(args, c)
	}
	args = append(args, hist)
	if _, err := tx.Exec(ctx, upsertUsageSQL, args...); err != nil {
		return fmt.Errorf("usage roll-up: %w", err)
	}
	return nil
}
