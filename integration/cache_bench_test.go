package integration_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
)

// benchRun makes every miss of every benchmark run a new prompt.
var benchRun atomic.Int64

// BenchmarkCacheThroughRouter measures what the cache costs and saves through a router
// process: Dapr ConverseAlpha2 over gRPC on one persistent connection to router-2, for
// component cache-bench (served by provider-worker-2), at concurrency 1 and 32.
//
//   - hit: the same prompt every time, answered by cache-2 from memory;
//   - miss: a new prompt every time: Lookup (lease), worker, Put (ends the lease);
//   - bypass: `parley.cache: bypass`, the path without any cache call.
//
// Besides ns/op (wall time per request: 1/throughput) it reports p50 and p99 latency.
// Run it without the race detector: PARLEY_E2E_RACE=0 go test -run '^$' -bench
// CacheThroughRouter -benchtime 3000x ./integration/
func BenchmarkCacheThroughRouter(b *testing.B) {
	needExtras(b)
	conn, err := grpc.NewClient(st.GRPCAddr(router2), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })

	request := func(text string, md map[string]string) *runtimev1.ConversationRequestAlpha2 {
		return &runtimev1.ConversationRequestAlpha2{
			Name:     "cache-bench",
			Metadata: md,
			Inputs: []*runtimev1.ConversationInputAlpha2{{Messages: []*runtimev1.ConversationMessage{{
				MessageTypes: &runtimev1.ConversationMessage_OfUser{OfUser: &runtimev1.ConversationMessageOfUser{
					Content: []*runtimev1.ConversationMessageContent{{Text: text}},
				}},
			}}}},
		}
	}
	converse := func(ctx context.Context, req *runtimev1.ConversationRequestAlpha2, want string) error {
		var header metadata.MD
		err := conn.Invoke(ctx, "/dapr.proto.runtime.v1.Dapr/ConverseAlpha2", req, &runtimev1.ConversationResponseAlpha2{}, grpc.Header(&header))
		if err != nil {
			return err
		}
		if got := header.Get("parley-cache"); len(got) != 1 || got[0] != want {
			return fmt.Errorf("parley-cache %v, want %s", got, want)
		}
		return nil
	}
	hit := request("What is the capital of France? Answer in one word, please.", nil)
	if err := converse(b.Context(), hit, "miss"); err != nil {
		if err := converse(b.Context(), hit, "hit"); err != nil { // a previous run cached it
			b.Fatal(err)
		}
	}
	bypass := request("What is the capital of France? Answer in one word, please.", map[string]string{"parley.cache": "bypass"})

	scenarios := []struct {
		name string
		call func(ctx context.Context, run int64, i int) error
	}{
		{"hit", func(ctx context.Context, _ int64, _ int) error { return converse(ctx, hit, "hit") }},
		{"miss", func(ctx context.Context, run int64, i int) error {
			return converse(ctx, request(fmt.Sprintf("What is the capital of France? (%d.%d)", run, i), nil), "miss")
		}},
		{"bypass", func(ctx context.Context, _ int64, _ int) error { return converse(ctx, bypass, "miss") }},
	}
	for _, sc := range scenarios {
		for _, c := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/c%d", sc.name, c), func(b *testing.B) {
				run := benchRun.Add(1)
				latency(b, c, func(ctx context.Context, i int) error { return sc.call(ctx, run, i) })
			})
		}
	}
}

// latency makes b.N calls from c goroutines and reports the p50 and p99 latency.
func latency(b *testing.B, c int, call func(ctx context.Context, i int) error) {
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				start := time.Now()
				if err := call(b.Context(), i); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(start)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds()), "p99-µs")
}
