package store_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// envBenchRows overrides the size of BenchmarkQuery's log.
const envBenchRows = "PARLEY_AUDIT_BENCH_ROWS"

// logDays is how many days the benchmark's log spans.
const logDays = 30

// logStart is the first day of the benchmark's log.
var logStart = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)

// bigLog is a database filled with a realistic audit log: 90% of the rows belong to one
// tenant (acme, the worst case for its queries), the rest to nine others; five components,
// ten models, 2% errors under three codes, 20% cache hits, a context id shared by about
// ten conversations, log-normal latencies (median 800 ms), and about 600 bytes of prose
// per request, with a rare word in one request in 10,000.
type bigLog struct {
	store *store.Store
	pool  *pgxpool.Pool
	rows  int
	ids   []string // a sample of acme's request ids
}

// logEvent returns the i-th event of the benchmark's log.
func logEvent(i, rows int, rng *rand.Rand) *auditv1.ConversationEvent {
	at := logStart.Add(time.Duration(float64(logDays*24*time.Hour) * float64(i) / float64(rows)))
	id, _ := uuid.NewV7()
	tenant := "acme"
	if i%10 == 9 {
		tenant = "tenant-" + strconv.Itoa(i/10%9)
	}
	ev := &auditv1.ConversationEvent{
		RequestId: id.String(), Tenant: tenant, Api: auditv1.Api_API_ALPHA2,
		Component: "component-" + strconv.Itoa(rng.IntN(5)), Provider: "conversation.openai",
		Model: "model-" + strconv.Itoa(rng.IntN(10)), ContextId: "ctx-" + strconv.Itoa(i/10),
		FinishReason: "stop", Status: auditv1.Status_STATUS_OK, CacheHit: rng.IntN(5) == 0,
		Usage:    &auditv1.TokenUsage{PromptTokens: 120, CompletionTokens: 60, TotalTokens: 180},
		Attempts: 1, WorkerId: "worker-1", CreatedAt: timestamppb.New(at),
		Latency: durationpb.New(time.Duration(math.Exp(math.Log(8e8) + rng.NormFloat64()*0.8))),
	}
	var words strings.Builder
	for words.Len() < 600 {
		n := int(math.Exp(rng.Float64() * math.Log(20000))) // Zipf-like: common words recur
		fmt.Fprintf(&words, "w%d ", n)
	}
	if i%10000 == 0 {
		words.WriteString("zebracorn")
	}
	ev.RequestJson = fmt.Appendf(nil, `{"inputs":[{"content":%q,"role":"user"}]}`, words.String())
	ev.ResponseJson = []byte(`{"outputs":[{"result":"Sure: the summary is ready."}]}`)
	if rng.IntN(50) == 0 {
		ev.Status = auditv1.Status_STATUS_ERROR
		ev.ErrorCode = []string{"ERR_CONVERSATION_INVOKE", "DeadlineExceeded", "ResourceExhausted"}[rng.IntN(3)]
		ev.ResponseJson = nil
	}
	return ev
}

// fillLog writes rows events, two writers in batches of 2,000, as the ingest path does,
// then builds the search indexes of the (then sealed) days and analyzes the tables.
func fillLog(b *testing.B, rows int) *bigLog {
	b.Helper()
	s, pool := newStore(b)
	l := &bigLog{store: s, pool: pool, rows: rows}
	const batch = 2000
	start := time.Now()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for w := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for from := w * batch; from < rows; from += 2 * batch {
				events := make([]*auditv1.ConversationEvent, 0, batch)
				for i := from; i < min(from+batch, rows); i++ {
					events = append(events, logEvent(i, rows, rng))
				}
				if _, err := s.InsertBatch(b.Context(), events); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				if from/(2*batch)%50 == 0 {
					mu.Lock()
					for _, ev := range events[:10] {
						if ev.GetTenant() == "acme" {
							l.ids = append(l.ids, ev.GetRequestId())
						}
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	require.Empty(b, errs)
	loaded := time.Since(start)
	_, err := s.Maintain(b.Context(), store.MaintainOptions{Now: logStart.Add((logDays + 1) * 24 * time.Hour), Ahead: 1, LockTimeout: time.Minute})
	require.NoError(b, err)
	_, err = pool.Exec(b.Context(), "VACUUM ANALYZE conversations")
	require.NoError(b, err)
	_, err = pool.Exec(b.Context(), "VACUUM ANALYZE usage_daily")
	require.NoError(b, err)
	b.Logf("loaded %d rows in %s (%.0f rows/s), search indexes and statistics in %s more",
		rows, loaded.Round(time.Millisecond), float64(rows)/loaded.Seconds(), (time.Since(start) - loaded).Round(time.Millisecond))
	return l
}

func benchRows(b *testing.B) int {
	b.Helper()
	if s := os.Getenv(envBenchRows); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(b, err, envBenchRows)
		return n
	}
	return 1_000_000
}

// BenchmarkQuery measures AuditService queries over a log of 1,000,000 rows (or
// PARLEY_AUDIT_BENCH_ROWS), filling it first (about a minute). Each sub-benchmark reports
// the p50 and p99 of one call; every list call asks for a page of 50.
//
//	PG_TEST_DSN=... go test -run '^$' -bench BenchmarkQuery -benchtime 200x ./services/audit/internal/store/
func BenchmarkQuery(b *testing.B) {
	l := fillLog(b, benchRows(b))
	day := func(rng *rand.Rand) time.Time { return logStart.Add(time.Duration(rng.IntN(logDays)) * 24 * time.Hour) }
	at := func(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
	lists := []struct {
		name string
		req  func(rng *rand.Rand) *auditv1.ListConversationsRequest
	}{
		{"list/newest", func(*rand.Rand) *auditv1.ListConversationsRequest { return &auditv1.ListConversationsRequest{} }},
		{"list/one day", func(rng *rand.Rand) *auditv1.ListConversationsRequest {
			d := day(rng)
			return &auditv1.ListConversationsRequest{StartTime: at(d), EndTime: at(d.Add(24 * time.Hour))}
		}},
		{"list/component", func(rng *rand.Rand) *auditv1.ListConversationsRequest {
			return &auditv1.ListConversationsRequest{Component: "component-" + strconv.Itoa(rng.IntN(5))}
		}},
		{"list/model and day", func(rng *rand.Rand) *auditv1.ListConversationsRequest {
			d := day(rng)
			return &auditv1.ListConversationsRequest{Model: "model-" + strconv.Itoa(rng.IntN(10)), StartTime: at(d), EndTime: at(d.Add(24 * time.Hour))}
		}},
		{"list/errors", func(*rand.Rand) *auditv1.ListConversationsRequest {
			return &auditv1.ListConversationsRequest{Status: auditv1.Status_STATUS_ERROR}
		}},
		{"list/error code", func(rng *rand.Rand) *auditv1.ListConversationsRequest {
			return &auditv1.ListConversationsRequest{ErrorCode: []string{"ERR_CONVERSATION_INVOKE", "DeadlineExceeded", "ResourceExhausted"}[rng.IntN(3)]}
		}},
		{"list/context id", func(rng *rand.Rand) *auditv1.ListConversationsRequest {
			return &auditv1.ListConversationsRequest{ContextId: "ctx-" + strconv.Itoa(rng.IntN(l.rows/10))}
		}},
		{"list/cache hits", func(*rand.Rand) *auditv1.ListConversationsRequest {
			return &auditv1.ListConversationsRequest{CacheHit: proto.Bool(true)}
		}},
		{"list/slowest (min latency 5s)", func(*rand.Rand) *auditv1.ListConversationsRequest {
			return &auditv1.ListConversationsRequest{MinLatency: durationpb.New(5 * time.Second)}
		}},
		{"list/text, rare word", func(*rand.Rand) *auditv1.ListConversationsRequest {
			return &auditv1.ListConversationsRequest{TextQuery: "zebracorn"}
		}},
		{"list/text, two common words", func(rng *rand.Rand) *auditv1.ListConversationsRequest {
			return &auditv1.ListConversationsRequest{TextQuery: fmt.Sprintf("w%d w%d", 1+rng.IntN(5), 1+rng.IntN(5))}
		}},
		{"list/page 20 days back", func(rng *rand.Rand) *auditv1.ListConversationsRequest {
			return &auditv1.ListConversationsRequest{EndTime: at(logStart.Add(time.Duration(8+rng.IntN(4)) * 24 * time.Hour))}
		}},
	}
	for _, tt := range lists {
		b.Run(tt.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 1))
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				req := tt.req(rng)
				req.PageSize = 50
				start := time.Now()
				_, err := l.store.List(b.Context(), "acme", req)
				lat = append(lat, time.Since(start))
				require.NoError(b, err)
			}
			reportLatency(b, lat)
		})
	}
	b.Run("get", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(2, 2))
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			_, err := l.store.Get(b.Context(), "acme", l.ids[rng.IntN(len(l.ids))])
			lat = append(lat, time.Since(start))
			require.NoError(b, err)
		}
		reportLatency(b, lat)
	})
	stats := []struct {
		name string
		req  *auditv1.GetUsageStatsRequest
	}{
		{"stats/30 days by component and model (roll-up)", &auditv1.GetUsageStatsRequest{
			StartTime: at(logStart), EndTime: at(logStart.Add(logDays * 24 * time.Hour)),
			GroupBy: []auditv1.UsageDimension{auditv1.UsageDimension_USAGE_DIMENSION_COMPONENT, auditv1.UsageDimension_USAGE_DIMENSION_MODEL},
		}},
		{"stats/one day by hour and component (log)", &auditv1.GetUsageStatsRequest{
			StartTime: at(logStart.Add(10 * 24 * time.Hour)), EndTime: at(logStart.Add(11 * 24 * time.Hour)),
			Bucket: auditv1.UsageBucket_USAGE_BUCKET_HOUR, GroupBy: []auditv1.UsageDimension{auditv1.UsageDimension_USAGE_DIMENSION_COMPONENT},
		}},
	}
	for _, tt := range stats {
		b.Run(tt.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				_, err := l.store.UsageStats(b.Context(), "acme", tt.req)
				lat = append(lat, time.Since(start))
				require.NoError(b, err)
			}
			reportLatency(b, lat)
		})
	}
}

// reportLatency adds the p50 and p99 of lat, in milliseconds, to b's metrics.
func reportLatency(b *testing.B, lat []time.Duration) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
}
