package resiliency_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/parleyhq/parley/libs/resiliency"
)

// FuzzLoad feeds arbitrary bytes through the YAML parsing and validation of Load. It must
// never panic; an error comes without a Set, and a loaded Set yields working policies.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(llmResiliency))
	f.Add([]byte(echoComponent + "---\n" + llmResiliency))
	f.Add([]byte(doc("d", "  policies:\n    retries:\n      DefaultRetryPolicy: {policy: exponential, initialInterval: 1, maxInterval: 2}\n"+
		"    circuitBreakers:\n      DefaultCircuitBreakerPolicy: {trip: \"!(requests < 3) && totalFailures >= 2 || consecutiveFailures == 1\"}\n")))
	f.Add([]byte(doc("m", "  policies:\n    retries:\n      r: {matching: {httpStatusCodes: \"429,500-599\", gRPCStatusCodes: \"1-4\"}}\n")))
	f.Add([]byte("kind: Resiliency\nspec: &a {policies: *a}\n"))
	f.Add([]byte("kind: Resiliency\na: &a [*a, *a]\n"))
	f.Add([]byte("---\n---\n- [\n"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "fuzz.yaml"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		set, err := resiliency.Load(dir)
		if err != nil {
			if set != nil {
				t.Fatalf("set returned with error %v", err)
			}
			return
		}
		for _, name := range []string{"openai", "llm", "fuzz"} {
			p := set.ForComponent(name)
			if p.Timeout() < 0 {
				t.Fatalf("negative timeout %s", p.Timeout())
			}
			// A fresh policy lets a successful call through once, without waiting.
			attempts, err := p.Run(t.Context(), func(context.Context) error { return nil })
			if err != nil || attempts != 1 {
				t.Fatalf("Run = %d, %v", attempts, err)
			}
		}
	})
}

// FuzzTrip checks that ParseTrip never panics, and that a compiled expression keeps its text
// and evaluates deterministically.
func FuzzTrip(f *testing.F) {
	for _, s := range []string{
		resiliency.DefaultTrip,
		"requests > 5 && totalFailures > 2 || !(consecutiveSuccesses >= 1)",
		"(requests > 5) == (totalFailures != 0)",
		"consecutiveFailures > 5u", "requests * 2", "((((", "!!!!requests", "", "é",
	} {
		f.Add(s, uint32(10), uint32(3), uint32(7))
	}
	f.Fuzz(func(t *testing.T, src string, requests, successes, failures uint32) {
		trip, err := resiliency.ParseTrip(src)
		if err != nil {
			if trip != nil {
				t.Fatalf("trip returned with error %v", err)
			}
			return
		}
		if trip.String() != src {
			t.Fatalf("String() = %q, want %q", trip.String(), src)
		}
		c := resiliency.Counts{
			Requests: requests, TotalSuccesses: successes, TotalFailures: failures,
			ConsecutiveSuccesses: successes / 2, ConsecutiveFailures: failures / 2,
		}
		again, err := resiliency.ParseTrip(trip.String())
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if trip.Eval(c) != again.Eval(c) {
			t.Fatalf("%q evaluates differently on reparse", src)
		}
	})
}
