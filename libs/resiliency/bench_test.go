package resiliency_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/parleyhq/parley/libs/resiliency"
)

// BenchmarkRun measures what a policy adds to every provider call that succeeds at once: the
// hot path of the worker.
func BenchmarkRun(b *testing.B) {
	dir := b.TempDir()
	set := loadBench(b, dir)
	ok := func(context.Context) error { return nil }
	for _, bc := range []struct {
		name      string
		component string
	}{
		{"none", "none"},
		{"timeout+retry+breaker", "llm"},
	} {
		p := set.ForComponent(bc.component)
		b.Run(bc.name, func(b *testing.B) {
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Run(ctx, ok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			ctx := b.Context()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := p.Run(ctx, ok); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkTripEval measures the trip expression, evaluated after every failure while closed.
func BenchmarkTripEval(b *testing.B) {
	trip, err := resiliency.ParseTrip("requests > 20 && totalFailures > 10 || consecutiveFailures > 5")
	if err != nil {
		b.Fatal(err)
	}
	c := resiliency.Counts{Requests: 30, TotalFailures: 4, ConsecutiveFailures: 2}
	b.ReportAllocs()
	for b.Loop() {
		if trip.Eval(c) {
			b.Fatal("tripped")
		}
	}
}

func loadBench(b *testing.B, dir string) *resiliency.Set {
	b.Helper()
	writeBench(b, dir)
	set, err := resiliency.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	return set
}

func writeBench(b *testing.B, dir string) {
	b.Helper()
	const body = `  policies:
    timeouts: {t: 30s}
    retries: {r: {maxRetries: 3}}
    circuitBreakers: {cb: {}}
  targets:
    components:
      llm: {outbound: {timeout: t, retry: r, circuitBreaker: cb}}
`
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(doc("bench", body)), 0o600); err != nil {
		b.Fatal(err)
	}
}
