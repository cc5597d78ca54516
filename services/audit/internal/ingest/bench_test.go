package ingest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/services/audit/internal/ingest"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// BenchmarkIngest measures sustained ingest from the stream into PostgreSQL: b.N events
// (about 1 KiB of request JSON each) wait in the stream, then the loop starts and the
// clock runs until every row is committed and acknowledged. It reports rows/s. Run it with
// a fixed count, e.g. -benchtime=20000x, since each run needs a fresh stream and database.
func BenchmarkIngest(b *testing.B) {
	for _, rows := range []int{100, 500, 2000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			e := newEnv(b)
			events := make([]*auditv1.ConversationEvent, b.N)
			for i := range events {
				events[i] = event(b, fmt.Sprintf("tenant-%d", i%10), i, 1024)
			}
			e.publishAll(b, events)
			cfg := testConfig()
			cfg.MaxRows = rows
			in, err := ingest.New(e.js, store.New(e.pool), cfg, testLogger(b), e.reg)
			require.NoError(b, err)

			b.ResetTimer()
			start := time.Now()
			require.NoError(b, in.Start(b.Context()))
			for metric(b, e.reg, "parley_audit_rows_written_total") < float64(b.N) {
				time.Sleep(time.Millisecond)
			}
			e.requireDrained(b, cfg.Consumer)
			elapsed := time.Since(start)
			b.StopTimer()

			ctx, cancel := context.WithTimeout(context.WithoutCancel(b.Context()), 10*time.Second)
			defer cancel()
			require.NoError(b, in.Stop(ctx))
			total, distinct := e.rows(b)
			require.Equal(b, b.N, total)
			require.Equal(b, b.N, distinct)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
		})
	}
}
