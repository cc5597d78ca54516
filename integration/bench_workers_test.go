package integration_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/integration/fakeprovider"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/openai"
)

// The worker benchmarks start a constellation of their own (startOwnStack) with an
// OpenAI component pointing at the fake provider in this process. Run them without the
// race detector, e.g.
//
//	cd integration && PARLEY_E2E_RACE=0 go test -run '^$' -bench 'WorkerThroughput|NATSHop' -benchtime 3000x .
//
// Every request is a new prompt on a component without responseCacheTTL: the cache is off.
// PARLEY_BENCH_SET adds service settings, e.g. PARLEY_BENCH_SET=WORKER_CONCURRENCY=256
// (comma-separated NAME=value pairs).

// benchEnv returns env with the settings of PARLEY_BENCH_SET on top.
func benchEnv(b *testing.B, env map[string]string) map[string]string {
	b.Helper()
	set := os.Getenv("PARLEY_BENCH_SET")
	if set == "" {
		return env
	}
	for kv := range strings.SplitSeq(set, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			b.Fatalf("PARLEY_BENCH_SET: %q is not NAME=value", kv)
		}
		env[k] = v
	}
	return env
}

// workerBenchRun makes every request of every run a new prompt.
var workerBenchRun atomic.Int64

// BenchmarkWorkerThroughput measures requests per second through the router to workers
// whose provider (the fake) answers after 20 ms, the upstream delay of performance.md §1,
// so that the constellation must hold many requests in flight: Dapr ConverseAlpha2 over
// gRPC, b.N requests from 32 or 256 goroutines, with one worker and then two. The router
// runs its default configuration (audit scrubbing: two pii-scrubber calls per request;
// audit publish awaited); the workers their default WORKER_CONCURRENCY (64) and admission
// wait (100 ms), so that more requests than slots are partly shed ("worker saturated",
// counted as errors).
//
// ns/op is wall time per request (1/throughput); ok-req/s, errors, p50 and p99 are
// reported too.
func BenchmarkWorkerThroughput(b *testing.B) {
	const component = "bench-fake"
	fake := newScriptedFake(b, fakeprovider.Options{Latency: 20 * time.Millisecond}, nil)
	own := startOwnStack(b, map[string]string{component + ".yaml": fake.component(component)},
		benchEnv(b, map[string]string{"WORKER_ENDPOINT_ALLOWLIST": "127.0.0.1"}))
	client := newDaprGRPC(b, own.RouterGRPCAddr(), 8)

	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			if workers == 2 {
				startInstances(b, own, "provider-worker", nil, "provider-worker-2")
			}
			for _, c := range []int{32, 256} {
				b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
					run := workerBenchRun.Add(1)
					measureCalls(b, c, func(ctx context.Context, i int) error {
						return client.converse(ctx, component, fmt.Sprintf("throughput %d.%d", run, i))
					})
				})
			}
		})
	}
}

// BenchmarkNATSHop measures what the hops cost in front of a provider call: the OpenAI
// provider client calling the fake (no delay) in this process, against the same call made
// by a worker behind the router (Dapr ConverseAlpha2 over gRPC → router → NATS → worker →
// fake), with the router's audit scrubbing off (router: gRPC in, NATS round trip, audit
// publish awaited) and on (its default: also two pii-scrubber calls). p50 and p99 of the
// in-process rows subtracted from the router rows' is the added latency.
func BenchmarkNATSHop(b *testing.B) {
	const comp = "bench-hop"
	fake := newScriptedFake(b, fakeprovider.Options{}, nil)
	own := startOwnStack(b, map[string]string{comp + ".yaml": fake.component(comp)},
		benchEnv(b, map[string]string{"WORKER_ENDPOINT_ALLOWLIST": "127.0.0.1", "ROUTER_AUDIT_SCRUB": "false"}))
	// A second router with the default audit scrubbing: its env wins over the stack's.
	startInstances(b, own, "router", map[string]string{"ROUTER_AUDIT_SCRUB": "true"}, "router-scrub")

	direct, err := openai.New(component.Component{Name: comp, Type: "conversation.openai", Metadata: map[string]string{
		"key": "test-key", "model": "fake-model", "endpoint": fake.srv.URL + "/v1",
	}}, provider.Options{})
	if err != nil {
		b.Fatal(err)
	}
	plain := newDaprGRPC(b, own.RouterGRPCAddr(), 1)
	scrub := newDaprGRPC(b, own.GRPCAddr("router-scrub"), 1)

	paths := []struct {
		name string
		call func(ctx context.Context, text string) error
	}{
		{"in-process", func(ctx context.Context, text string) error {
			_, err := direct.Converse(ctx, &providerv1.Request{Component: comp, Messages: []*providerv1.Message{{
				Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: text}}},
			}}})
			return err
		}},
		{"router", func(ctx context.Context, text string) error { return plain.converse(ctx, comp, text) }},
		{"router-audit-scrub", func(ctx context.Context, text string) error { return scrub.converse(ctx, comp, text) }},
	}
	for _, p := range paths {
		for _, c := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/c=%d", p.name, c), func(b *testing.B) {
				run := workerBenchRun.Add(1)
				measureCalls(b, c, func(ctx context.Context, i int) error {
					return p.call(ctx, fmt.Sprintf("hop %d.%d", run, i))
				})
			})
		}
	}
}

// daprGRPC sends ConverseAlpha2 over a few persistent gRPC connections, round robin, so
// that hundreds of concurrent calls do not queue behind one connection's stream limit.
type daprGRPC struct {
	conns []*grpc.ClientConn
	next  atomic.Uint64
}

func newDaprGRPC(b *testing.B, addr string, n int) *daprGRPC {
	b.Helper()
	d := &daprGRPC{}
	for range n {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		d.conns = append(d.conns, conn)
	}
	return d
}

func (d *daprGRPC) converse(ctx context.Context, component, text string) error {
	req := &runtimev1.ConversationRequestAlpha2{
		Name: component,
		Inputs: []*runtimev1.ConversationInputAlpha2{{Messages: []*runtimev1.ConversationMessage{{
			MessageTypes: &runtimev1.ConversationMessage_OfUser{OfUser: &runtimev1.ConversationMessageOfUser{
				Content: []*runtimev1.ConversationMessageContent{{Text: text}},
			}},
		}}}},
	}
	conn := d.conns[d.next.Add(1)%uint64(len(d.conns))]
	var res runtimev1.ConversationResponseAlpha2
	if err := conn.Invoke(ctx, "/dapr.proto.runtime.v1.Dapr/ConverseAlpha2", req, &res); err != nil {
		return err
	}
	if len(res.GetOutputs()) != 1 || len(res.GetOutputs()[0].GetChoices()) != 1 {
		return fmt.Errorf("unexpected answer %v", &res)
	}
	return nil
}

// measureCalls makes b.N calls from c goroutines, after a warm-up of c calls, and reports the
// throughput of successful calls (ok-req/s), the failed calls (errors, e.g. UNAVAILABLE
// "worker saturated" when the workers shed load) and the p50 and p99 latency of the
// successful ones. It fails only when no call succeeds.
func measureCalls(b *testing.B, c int, call func(ctx context.Context, i int) error) {
	var wg sync.WaitGroup
	for i := range c {
		wg.Go(func() { _ = call(b.Context(), -1-i) })
	}
	wg.Wait()
	lat := make([]time.Duration, b.N)
	var (
		next     atomic.Int64
		failed   atomic.Int64
		firstErr atomic.Pointer[error]
	)
	b.ResetTimer()
	start := time.Now()
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if err := call(b.Context(), i); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					lat[i] = -1
					continue
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	errs := int(failed.Load())
	if errs == b.N {
		b.Fatalf("every call failed: %v", *firstErr.Load())
	}
	if errs > 0 {
		b.Logf("%d of %d calls failed, first: %v", errs, b.N, *firstErr.Load())
	}
	slices.Sort(lat)
	lat = lat[errs:] // failures sort first
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "ok-req/s")
	b.ReportMetric(float64(errs), "errors")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds()), "p99-µs")
}
