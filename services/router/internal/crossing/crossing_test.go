package crossing

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSequential: crossings that follow one another add up; crossings in flight at the
// same time count once; crossings after End, or without a trace, are not counted.
func TestSequential(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		run   func(ctx context.Context, tr *Trace)
		want  int
		chain []Kind
		kinds map[Kind]int
	}{
		{
			name: "one after another",
			run: func(ctx context.Context, _ *Trace) {
				for _, k := range []Kind{Scrub, CacheLookup, Dispatch, CachePut, Scrub, AuditPublish} {
					Track(ctx, k)()
				}
			},
			want:  6,
			chain: []Kind{Scrub, CacheLookup, Dispatch, CachePut, Scrub, AuditPublish},
			kinds: map[Kind]int{Scrub: 2, CacheLookup: 1, Dispatch: 1, CachePut: 1, AuditPublish: 1},
		},
		{
			name: "two at once, then one",
			run: func(ctx context.Context, _ *Trace) {
				a, b := Track(ctx, Scrub), Track(ctx, CacheLookup)
				a()
				b()
				Track(ctx, Dispatch)()
			},
			want:  2,
			kinds: map[Kind]int{Scrub: 1, CacheLookup: 1, Dispatch: 1},
		},
		{
			name: "concurrent goroutines",
			run: func(ctx context.Context, _ *Trace) {
				var started, wg sync.WaitGroup
				started.Add(3)
				release := make(chan struct{})
				for _, k := range []Kind{Scrub, CacheLookup, Dispatch} {
					wg.Go(func() {
						done := Track(ctx, k)
						started.Done()
						<-release
						done()
					})
				}
				started.Wait()
				close(release)
				wg.Wait()
			},
			want:  1,
			kinds: map[Kind]int{Scrub: 1, CacheLookup: 1, Dispatch: 1},
		},
		{
			name: "still in flight at the end",
			run: func(ctx context.Context, _ *Trace) {
				Track(ctx, Scrub)()
				_ = Track(ctx, AuditPublish)
			},
			want:  2,
			chain: []Kind{Scrub, AuditPublish},
			kinds: map[Kind]int{Scrub: 1, AuditPublish: 1},
		},
		{
			name: "detached",
			run: func(ctx context.Context, _ *Trace) {
				Track(ctx, Dispatch)()
				Track(Detach(ctx), CachePut)()
				Track(ctx, AuditPublish)()
			},
			want:  2,
			chain: []Kind{Dispatch, AuditPublish},
			kinds: map[Kind]int{Dispatch: 1, AuditPublish: 1},
		},
		{
			name: "after the end",
			run: func(ctx context.Context, tr *Trace) {
				Track(ctx, Dispatch)()
				tr.End()
				Track(ctx, CachePut)()
			},
			want:  1,
			chain: []Kind{Dispatch},
			kinds: map[Kind]int{Dispatch: 1},
		},
		{
			name:  "none",
			run:   func(context.Context, *Trace) {},
			want:  0,
			kinds: map[Kind]int{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, tr := Start(t.Context())
			tt.run(ctx, tr)
			got := tr.End()
			require.Equal(t, tt.want, got.Sequential)
			require.Len(t, got.Chain, tt.want)
			if tt.chain != nil {
				require.Equal(t, tt.chain, got.Chain)
			}
			require.Equal(t, tt.kinds, got.Kinds)
			// Time has a (non-negative) duration for every kind counted, and no other.
			require.Len(t, got.Time, len(tt.kinds))
			for k := range tt.kinds {
				d, ok := got.Time[k]
				require.True(t, ok, "time of %s", k)
				require.GreaterOrEqual(t, d, time.Duration(0))
			}
		})
	}
}
