package store_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/cachepurge"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/cache/internal/store"
)

func TestLookup(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("lookup")
	a, regA, _ := open(t, srv, cfg)
	b, _, _ := open(t, srv, cfg)
	k := key("lookup")

	first, err := a.Lookup(t.Context(), k, 30*time.Second)
	require.NoError(t, err)
	require.Equal(t, store.OutcomeLeased, first.Outcome)
	require.NotZero(t, first.Lease)
	require.Equal(t, 30*time.Second, first.LeaseRemaining)

	// Other callers, in this replica or another, find the lease taken.
	for _, s := range []*store.Store{a, b} {
		busy, err := s.Lookup(t.Context(), k, 30*time.Second)
		require.NoError(t, err)
		require.Equal(t, store.OutcomeBusy, busy.Outcome)
		require.Zero(t, busy.Lease)
		require.Positive(t, busy.LeaseRemaining)
		require.LessOrEqual(t, busy.LeaseRemaining, 30*time.Second)
	}

	require.NoError(t, a.Put(t.Context(), k, []byte("answer"), time.Hour, first.Lease))
	tests := []struct {
		name      string
		s         *store.Store
		wantLayer store.Layer
	}{
		{"the putting replica has it in memory", a, store.LayerL1},
		{"another replica reads the bucket", b, store.LayerL2},
		{"and then has it in memory", b, store.LayerL1},
	}
	for _, tt := range tests {
		hit, err := tt.s.Lookup(t.Context(), k, time.Second)
		require.NoError(t, err, tt.name)
		require.Equal(t, store.OutcomeHit, hit.Outcome, tt.name)
		require.Equal(t, "answer", string(hit.Value), tt.name)
		require.Equal(t, tt.wantLayer, hit.Layer, tt.name)
	}
	require.InDelta(t, 1, metric(t, regA, "parley_cache_leases_total", "result", "granted"), 0)
	require.InDelta(t, 1, metric(t, regA, "parley_cache_leases_total", "result", "busy"), 0)
}

func TestPutEndsTheLease(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, _, _ := open(t, srv, testConfig("put_ends"))
	k := key("put ends")

	res, err := s.Lookup(t.Context(), k, time.Minute)
	require.NoError(t, err)
	require.Equal(t, store.OutcomeLeased, res.Outcome)
	// A short entry: once it has expired, the next Lookup must find the lease free,
	// which it only is if Put ended it (the lease itself runs a minute).
	require.NoError(t, s.Put(t.Context(), k, []byte("v"), 300*time.Millisecond, res.Lease))
	require.Eventually(t, func() bool {
		res, err := s.Lookup(t.Context(), k, time.Minute)
		return err == nil && res.Outcome == store.OutcomeLeased
	}, 30*time.Second, 50*time.Millisecond)
}

// TestSingleFlight: 100 concurrent callers of one key, spread over two replicas, each
// doing what the router does (Lookup; the lease holder asks the provider and Puts;
// busy callers Wait, and ask the provider themselves if the wait brings nothing): the
// provider is asked once and every caller gets its answer.
func TestSingleFlight(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("single_flight")
	replicas := []*store.Store{}
	for range 2 {
		s, _, _ := open(t, srv, cfg)
		replicas = append(replicas, s)
	}
	k := key("single flight")
	var calls atomic.Int32
	provider := func() []byte {
		calls.Add(1)
		slowModel(100 * time.Millisecond) // everyone else arrives meanwhile
		return []byte("the answer")
	}

	const n = 100
	answers := make([][]byte, n)
	var start, wg sync.WaitGroup
	start.Add(1)
	for i := range n {
		s := replicas[i%len(replicas)]
		wg.Go(func() {
			start.Wait()
			res, err := s.Lookup(t.Context(), k, 30*time.Second)
			if err != nil {
				t.Errorf("lookup: %v", err)
				return
			}
			switch res.Outcome {
			case store.OutcomeHit:
				answers[i] = res.Value
			case store.OutcomeLeased:
				answers[i] = provider()
				if err := s.Put(t.Context(), k, answers[i], time.Hour, res.Lease); err != nil {
					t.Errorf("put: %v", err)
				}
			case store.OutcomeBusy:
				v, found, err := s.Wait(t.Context(), k, 30*time.Second)
				if err != nil || !found {
					t.Errorf("wait: found=%v err=%v", found, err)
					answers[i] = provider()
					return
				}
				answers[i] = v
			default:
				t.Errorf("outcome %v", res.Outcome)
			}
		})
	}
	start.Done()
	wg.Wait()
	require.EqualValues(t, 1, calls.Load(), "identical concurrent misses must reach the provider once")
	for i, a := range answers {
		require.Equal(t, "the answer", string(a), "caller %d", i)
	}
}

func TestWaitEnds(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("wait_ends")

	tests := []struct {
		name string
		// end ends the holder's lease (or does not) once the waiter waits.
		end        func(t *testing.T, holder *store.Store, k store.Key, lease uint64)
		leaseTTL   time.Duration
		maxWait    time.Duration
		wantFound  bool
		wantResult string // parley_cache_waits_total{result}
	}{
		{
			name: "holder stores the value", leaseTTL: time.Minute, maxWait: time.Minute, wantFound: true, wantResult: "value",
			end: func(t *testing.T, holder *store.Store, k store.Key, lease uint64) {
				require.NoError(t, holder.Put(t.Context(), k, []byte("v"), time.Hour, lease))
			},
		},
		{
			name: "holder releases", leaseTTL: time.Minute, maxWait: time.Minute, wantResult: "ended",
			end: func(t *testing.T, holder *store.Store, k store.Key, lease uint64) {
				require.NoError(t, holder.Release(t.Context(), k, lease))
			},
		},
		{
			name: "holder vanishes and the lease expires", leaseTTL: time.Second, maxWait: time.Minute, wantResult: "ended",
			end: func(*testing.T, *store.Store, store.Key, uint64) {},
		},
		{
			name: "the wait is shorter than the lease", leaseTTL: time.Minute, maxWait: 200 * time.Millisecond, wantResult: "timeout",
			end: func(*testing.T, *store.Store, store.Key, uint64) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			holder, _, _ := open(t, srv, cfg)
			waiter, reg, _ := open(t, srv, cfg)
			k := key(tt.name)
			res, err := holder.Lookup(t.Context(), k, tt.leaseTTL)
			require.NoError(t, err)
			require.Equal(t, store.OutcomeLeased, res.Outcome)

			type result struct {
				v     []byte
				found bool
				err   error
			}
			done := make(chan result, 1)
			go func() {
				v, found, err := waiter.Wait(t.Context(), k, tt.maxWait)
				done <- result{v, found, err}
			}()
			require.Eventually(t, func() bool { return metric(t, reg, "parley_cache_waiting_keys") == 1 },
				10*time.Second, 5*time.Millisecond, "the waiter never started watching")
			tt.end(t, holder, k, res.Lease)
			r := <-done
			require.NoError(t, r.err)
			require.Equal(t, tt.wantFound, r.found)
			require.InDelta(t, 1, metric(t, reg, "parley_cache_waits_total", "result", tt.wantResult), 0)
			if !tt.wantFound {
				return
			}
			require.Equal(t, "v", string(r.v))
			require.InDelta(t, 1, metric(t, reg, "parley_cache_hits_total", "layer", "wait"), 0)
		})
	}
}

func TestStaleLeaseIsLeftAlone(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, _, _ := open(t, srv, testConfig("stale_lease"))
	k := key("stale")

	old, err := s.Lookup(t.Context(), k, time.Second)
	require.NoError(t, err)
	require.Equal(t, store.OutcomeLeased, old.Outcome)
	// The old holder overran its lease; a new caller has taken a new one.
	var current store.Lookup
	require.Eventually(t, func() bool {
		current, err = s.Lookup(t.Context(), k, time.Minute)
		return err == nil && current.Outcome == store.OutcomeLeased
	}, 30*time.Second, 50*time.Millisecond)
	require.NotEqual(t, old.Lease, current.Lease)

	// The old holder's Release must not end the new lease.
	require.NoError(t, s.Release(t.Context(), k, old.Lease))
	res, err := s.Lookup(t.Context(), k, time.Minute)
	require.NoError(t, err)
	require.Equal(t, store.OutcomeBusy, res.Outcome)
}

func TestEndWaits(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("end_waits")
	holder, _, _ := open(t, srv, cfg)
	waiter, reg, _ := open(t, srv, cfg)
	k := key("end waits")
	res, err := holder.Lookup(t.Context(), k, time.Minute)
	require.NoError(t, err)
	require.Equal(t, store.OutcomeLeased, res.Outcome)

	done := make(chan bool, 1)
	go func() {
		_, found, err := waiter.Wait(t.Context(), k, time.Minute)
		done <- found || err != nil
	}()
	require.Eventually(t, func() bool { return metric(t, reg, "parley_cache_waiting_keys") == 1 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, waiter.EndWaits(t.Context()))
	require.False(t, <-done, "a shutting-down replica sends its waiters to the provider")
	_, found, err := waiter.Wait(t.Context(), k, time.Minute)
	require.NoError(t, err)
	require.False(t, found, "and takes no new waits")
}

func TestPurge(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	entries := []store.Key{
		{Tenant: "t1", Component: "c1", Hash: hash("1")},
		{Tenant: "t1", Component: "c2", Hash: hash("2")},
		{Tenant: "t2", Component: "c1", Hash: hash("3")},
		{Tenant: "t2", Component: "c2", Hash: hash("4")},
	}
	tests := []struct {
		name              string
		tenant, component string
		wantGone          []int // indexes into entries
	}{
		{name: "tenant", tenant: "t1", wantGone: []int{0, 1}},
		{name: "component", component: "c1", wantGone: []int{0, 2}},
		{name: "component of a tenant", tenant: "t2", component: "c2", wantGone: []int{3}},
		{name: "unknown tenant", tenant: "t3"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(fmt.Sprintf("purge_%d", i))
			a, regA, _ := open(t, srv, cfg)
			b, regB, _ := open(t, srv, cfg)
			for _, k := range entries {
				require.NoError(t, a.Put(t.Context(), k, []byte("v"), time.Hour, 0))
				_, found, err := b.Get(t.Context(), k) // now in both replicas' memory
				require.NoError(t, err)
				require.True(t, found)
			}
			// A lease in scope goes too.
			leased := store.Key{Tenant: "t1", Component: "c1", Hash: hash("leased")}
			res, err := a.Lookup(t.Context(), leased, time.Minute)
			require.NoError(t, err)
			require.Equal(t, store.OutcomeLeased, res.Outcome)

			// Routers hear of it on cachepurge.Subject (other subtests purge too).
			listener := natstest.Connect(t, srv)
			notices, err := listener.SubscribeSync(cachepurge.Subject)
			require.NoError(t, err)
			require.NoError(t, listener.Flush())
			p, err := a.Purge(t.Context(), tt.tenant, tt.component)
			require.NoError(t, err)
			for {
				m, err := notices.NextMsg(10 * time.Second)
				require.NoError(t, err, "the routers' notice")
				n, err := cachepurge.Decode(m.Data)
				require.NoError(t, err)
				if n == (cachepurge.Notice{Tenant: tt.tenant, Component: tt.component}) {
					break
				}
			}
			leaseGone := tt.tenant != "t2" && tt.tenant != "t3" && tt.component != "c2"
			wantBucket := len(tt.wantGone)
			if leaseGone {
				wantBucket++
			}
			require.EqualValues(t, wantBucket, p.Bucket)
			require.EqualValues(t, len(tt.wantGone), p.Local)

			gone := map[int]bool{}
			for _, i := range tt.wantGone {
				gone[i] = true
			}
			for i, k := range entries {
				// The purging replica drops its memory at once; the other one when the
				// notice reaches it.
				_, found, err := a.Get(t.Context(), k)
				require.NoError(t, err)
				require.Equal(t, !gone[i], found, "entry %d on the purging replica", i)
				require.Eventually(t, func() bool {
					_, found, err := b.Get(t.Context(), k)
					return err == nil && found == !gone[i]
				}, 10*time.Second, 10*time.Millisecond, "entry %d on the other replica", i)
			}
			again, err := b.Lookup(t.Context(), leased, time.Minute)
			require.NoError(t, err)
			wantOutcome := store.OutcomeBusy
			if leaseGone {
				wantOutcome = store.OutcomeLeased
			}
			require.Equal(t, wantOutcome, again.Outcome, "lease in scope")
			require.InDelta(t, 1, metric(t, regA, "parley_cache_purges_total"), 0)
			require.InDelta(t, len(tt.wantGone), metric(t, regB, "parley_cache_purged_total", "layer", "l1"), 0)
		})
	}
}
