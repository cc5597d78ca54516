package conversation

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/seal/sealtest"
)

// maxHitAllocs bounds the allocations of one cache hit with the router's default options,
// the request's own construction included (45 when it was set; 144 when the audit copy
// was encoded as JSON on this path, before issue 12's cuts). Lower it when a change
// earns it.
const maxHitAllocs = 50

// TestHitPathAllocations: a cache hit (audit required, audit copy scrubbed from the memo
// or sealed to the audit service, the event encoded as the publisher does) allocates at most maxHitAllocs times: no JSON
// encoding, no copy of a request or answer the scrubber left unchanged, no metric series
// looked up by label. (make test-allocations runs it without -race.)
func TestHitPathAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are exact only without -race; make test-allocations runs it")
	}
	sealer, _ := sealtest.Pair(t)
	for _, tt := range []struct {
		name   string
		sealer AuditSealer
	}{
		{name: "scrubbed from the memo"},
		{name: "sealed to the audit service", sealer: sealer},
	} {
		t.Run(tt.name, func(t *testing.T) {
			svc, err := New(components{"echo": {Name: "echo", Type: "conversation.echo", CacheTTL: time.Minute}},
				upperScrubber{}, newMemCache(nil), &echoDispatcher{}, encodingAudit{},
				Options{AuditRequired: true, AuditScrub: true, AuditScrubMemoBytes: 16 << 20, AuditSealer: tt.sealer},
				slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			require.NoError(t, err)
			ctx := t.Context()
			_, err = svc.Converse(ctx, cacheRequest())
			require.NoError(t, err)
			svc.bg.Wait()
			hits := 0
			allocs := testing.AllocsPerRun(100, func() {
				res, err := svc.Converse(ctx, cacheRequest())
				if err == nil && res.CacheHit {
					hits++
				}
			})
			require.Equal(t, 101, hits, "every call hits (AllocsPerRun runs once more to warm up)")
			require.LessOrEqual(t, allocs, float64(maxHitAllocs), "allocations per hit")
			t.Logf("%.0f allocations per hit", allocs)
		})
	}
}
