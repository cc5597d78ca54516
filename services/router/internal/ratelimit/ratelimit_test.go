package ratelimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/router/internal/ratelimit"
)

// fixed is a clock that tests move by hand.
type fixed struct{ ns atomic.Int64 }

func (f *fixed) now() time.Time   { return time.Unix(0, f.ns.Load()).UTC() }
func (f *fixed) set(t time.Time)  { f.ns.Store(t.UnixNano()) }
func newClock(t time.Time) *fixed { f := &fixed{}; f.set(t); return f }

var start = time.Date(2026, 12, 6, 9, 0, 10, 0, time.UTC)

// routers starts n limiters, each on its own NATS connection to one server, as n routers.
func routers(t *testing.T, n int, clock *fixed, maxLease int64) []*ratelimit.Limiter {
	t.Helper()
	srv := natstest.RunServer(t)
	var out []*ratelimit.Limiter
	for range n {
		nc, err := nats.Connect(srv.ClientURL())
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		l, err := ratelimit.New(js, ratelimit.Options{Now: clock.now, MaxLease: maxLease}, prometheus.NewRegistry())
		require.NoError(t, err)
		require.NoError(t, l.Start(t.Context()))
		out = append(out, l)
	}
	return out
}

// TestTwoRoutersShareOneLimit: N requests are admitted across two routers, whichever
// gets each, and request N+1 is refused on either; the next minute admits again.
func TestTwoRoutersShareOneLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		limit int64
		order func(i int) int // which router gets request i
	}{
		{"alternating", 5, func(i int) int { return i % 2 }},
		{"all on one then the other", 5, func(i int) int { return 0 }},
		{"larger limit, leases of several units", 40, func(i int) int { return (i / 3) % 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock(start)
			rs := routers(t, 2, clock, 64)
			lim := ratelimit.Limits{Key: "k1", RequestsPerMinute: tc.limit}
			admitted := int64(0)
			for i := range int(tc.limit) * 2 {
				settle, err := rs[tc.order(i)].Admit(t.Context(), lim, 0)
				if err != nil {
					e, ok := ratelimit.AsExceeded(err)
					require.True(t, ok, "%v", err)
					require.Equal(t, "requests per minute", e.Limit)
					require.EqualValues(t, 50, e.RetryAfterSeconds())
					continue
				}
				settle(0)
				admitted++
			}
			// Never above the limit; at most an eighth of it stranded in the other
			// router's allowance, none with a limit of 8 or less.
			require.LessOrEqual(t, admitted, tc.limit)
			require.GreaterOrEqual(t, admitted, tc.limit-tc.limit/8)
			if tc.limit <= 8 {
				require.Equal(t, tc.limit, admitted)
				for _, r := range rs {
					_, err := r.Admit(t.Context(), lim, 0)
					_, ok := ratelimit.AsExceeded(err)
					require.True(t, ok, "request N+1 on either router is refused")
				}
			}
			clock.set(start.Add(time.Minute))
			_, err := rs[1].Admit(t.Context(), lim, 0)
			require.NoError(t, err, "the next minute admits again")
		})
	}
}

// TestConcurrentRoutersNeverExceed: many concurrent requests on two routers admit exactly
// the limit when it is small enough for single-unit leases.
func TestConcurrentRoutersNeverExceed(t *testing.T) {
	t.Parallel()
	clock := newClock(start)
	rs := routers(t, 2, clock, 64)
	lim := ratelimit.Limits{Key: "k2", RequestsPerMinute: 8}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			if _, err := rs[i%2].Admit(context.Background(), lim, 0); err == nil {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 8, admitted.Load())
}

// TestTokensAndBudget: a token estimate over what is left is refused before the call;
// real usage above the estimate is owed; the budget holds until the period resets.
func TestTokensAndBudget(t *testing.T) {
	t.Parallel()
	clock := newClock(start)
	rs := routers(t, 2, clock, 4)
	lim := ratelimit.Limits{Key: "k3", TokensPerMinute: 1000, TokenBudget: 1500}

	settle, err := rs[0].Admit(t.Context(), lim, 100)
	require.NoError(t, err)
	settle(900) // 800 more than estimated: owed
	_, err = rs[1].Admit(t.Context(), lim, 200)
	e, ok := ratelimit.AsExceeded(err)
	require.True(t, ok, "900 of 1000 used: an estimate of 200 is refused on the other router")
	require.Equal(t, "tokens per minute", e.Limit)
	settle, err = rs[1].Admit(t.Context(), lim, 100)
	require.NoError(t, err)
	settle(50)

	// Next minute: the per-minute limit resets, the daily budget (950 used) does not.
	clock.set(start.Add(time.Minute))
	settle, err = rs[1].Admit(t.Context(), lim, 500)
	require.NoError(t, err)
	settle(500)
	_, err = rs[0].Admit(t.Context(), lim, 100)
	e, ok = ratelimit.AsExceeded(err)
	require.True(t, ok)
	require.Equal(t, "token budget per day", e.Limit)
	require.Equal(t, time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC).Sub(clock.now()), e.RetryAfter)

	clock.set(time.Date(2026, 12, 7, 0, 0, 1, 0, time.UTC))
	_, err = rs[0].Admit(t.Context(), lim, 100)
	require.NoError(t, err, "the budget resets with the day")
}

// TestRefusedRequestGivesBackItsUnits: a request refused by its token limit does not use
// up a request of its requests-per-minute limit.
func TestRefusedRequestGivesBackItsUnits(t *testing.T) {
	t.Parallel()
	clock := newClock(start)
	rs := routers(t, 1, clock, 64)
	lim := ratelimit.Limits{Key: "k4", RequestsPerMinute: 2, TokensPerMinute: 10}
	for range 5 {
		_, err := rs[0].Admit(t.Context(), lim, 50)
		require.Error(t, err)
	}
	for range 2 {
		_, err := rs[0].Admit(t.Context(), lim, 1)
		require.NoError(t, err)
	}
	_, err := rs[0].Admit(t.Context(), lim, 1)
	e, ok := ratelimit.AsExceeded(err)
	require.True(t, ok)
	require.Equal(t, "requests per minute", e.Limit)
}
