package ingest_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/seal"
	"github.com/parleyhq/parley/libs/seal/sealtest"
	"github.com/parleyhq/parley/services/audit/internal/ingest"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// BenchmarkIngest measures sustained ingest from the stream into PostgreSQL: b.N events
// (about 1 KiB of prose in the request, some 150 distinct words, as a real prompt) wait in
// the stream, then the loop starts and the clock runs until every row is committed and
// acknowledged. It reports rows/s, and the CPU time per row of this process (ingester and
// embedded NATS server) and of the database's backends. Run it with a fixed count, e.g.
// -benchtime=20000x, since each run needs a fresh stream and database.
//
// The live case indexes every row for text search as it is written
// (AUDIT_SEARCH_INDEX=live), to show what that costs. The sealed case carries each
// conversation as a router with ROUTER_AUDIT_SEAL_KEY_FILE sends it: the same prose in a
// sealed AuditCopy (request and answer to scrub) that the ingester opens and has scrubbed by
// a stand-in scrubber (e-mail addresses, in process: the scrubber's own CPU is not
// counted); it reports the Scrub calls per 1,000 rows.
func BenchmarkIngest(b *testing.B) {
	for _, tt := range []struct {
		rows   int
		live   bool
		sealed bool
	}{{rows: 100}, {rows: 500}, {rows: 2000}, {rows: 500, live: true}, {rows: 500, sealed: true}} {
		name := fmt.Sprintf("rows=%d", tt.rows)
		if tt.live {
			name += ",live-search-index"
		}
		if tt.sealed {
			name += ",sealed"
		}
		rows := tt.rows
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			events := make([]*auditv1.ConversationEvent, b.N)
			var opener *seal.Opener
			var sealer *seal.Sealer
			if tt.sealed {
				sealer, opener = sealtest.Pair(b)
			}
			for i := range events {
				if tt.sealed {
					c := rawCopy(fmt.Sprintf("p%d@example.org", i))
					c.Request.Messages[0].Parts[0].Kind = &providerv1.Part_Text{Text: prose(i, 1024)}
					events[i] = sealedEvent(b, sealer, i, c)
					events[i].Tenant = fmt.Sprintf("tenant-%d", i%10)
					continue
				}
				events[i] = event(b, fmt.Sprintf("tenant-%d", i%10), i, 0)
				events[i].RequestJson = fmt.Appendf(nil, `{"inputs":[{"content":%q,"role":"user"}],"temperature":0.5}`, prose(i, 1024))
			}
			e.publishAll(b, events)
			cfg := testConfig()
			scrubber := &fakeScrubber{}
			if tt.sealed {
				cfg.Openers, cfg.Scrubber = []ingest.Opener{opener}, scrubber
			}
			cfg.MaxRows = rows
			in, err := ingest.New(e.js, store.New(e.pool, store.WithLiveSearchIndex(tt.live)), cfg, testLogger(b), e.reg)
			require.NoError(b, err)

			cpu := startCPU(b, e.pool)
			b.ResetTimer()
			start := time.Now()
			require.NoError(b, in.Start(b.Context()))
			require.Eventually(b, func() bool {
				return metric(b, e.reg, "parley_audit_rows_written_total") >= float64(b.N)
			}, 10*time.Minute, 5*time.Millisecond)
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
			if tt.sealed {
				b.ReportMetric(float64(scrubber.callCount())*1000/float64(b.N), "scrubs/1000rows")
			}
			cpu.report(b, e.pool, b.N)
		})
	}
}

// prose returns about size bytes of text drawn from a vocabulary of 4096 words, different
// for every i, as the text of real prompts is.
func prose(i, size int) string {
	var b strings.Builder
	x := uint64(i)*0x9E3779B97F4A7C15 + 1
	for b.Len() < size {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		n := x % 4096
		fmt.Fprintf(&b, "%s%d ", syllables[n%16]+syllables[(n/16)%16], n/256)
	}
	return b.String()
}

var syllables = [16]string{"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ba", "de", "fi", "go", "hu", "ja", "pe", "zu"}

// BenchmarkPublish measures what recording a conversation adds to the router's request
// path: publishing its event to the stream with Nats-Msg-Id and waiting for the stream's
// ack, as upstream.AuditPublisher.Record does (AUDIT_MODE=required), with a typical event
// of about 1.5 KiB. It reports the p50 and p99 of one publish, with the stream idle and
// while an ingester drains it into PostgreSQL, one publisher at a time and 16 at once.
func BenchmarkPublish(b *testing.B) {
	for _, tt := range []struct {
		name     string
		drain    bool
		parallel int
	}{
		{name: "idle/serial", parallel: 1},
		{name: "idle/parallel=16", parallel: 16},
		{name: "draining/serial", drain: true, parallel: 1},
		{name: "draining/parallel=16", drain: true, parallel: 16},
	} {
		b.Run(tt.name, func(b *testing.B) {
			e := newEnv(b)
			if tt.drain {
				e.start(b, testConfig())
			}
			data := make([][]byte, b.N)
			ids := make([]string, b.N)
			for i := range data {
				ev := event(b, "tenant-1", i, 0)
				ev.RequestJson = fmt.Appendf(nil, `{"inputs":[{"content":%q,"role":"user"}]}`, prose(i, 1024))
				data[i], ids[i] = encode(b, ev), ev.GetRequestId()
			}
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for range tt.parallel {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						start := time.Now()
						_, err := e.js.PublishMsg(b.Context(), &nats.Msg{
							Subject: auditevent.Subject, Data: data[i], Header: nats.Header{},
						}, jetstream.WithMsgID(ids[i]))
						lat[i] = time.Since(start)
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
