package store_test

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
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

	require.NoError(t, a.Put(t.Context(), k, []byte("answer"), time.Hour))
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
	require.NoError(t, s.Put(t.Context(), k, []byte("v"), 300*time.Millisecond))
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
				if err := s.Put(t.Context(), k, answers[i], time.Hour); err != nil {
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
				require.NoError(t, holder.Put(t.Context(), k, []byte("v"), time.Hour))
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
			// maxWait is long enough for the test to see the waiter watching before it
			// gives up, however late the test's goroutine runs.
			name: "the wait is shorter than the lease", leaseTTL: time.Minute, maxWait: 2 * time.Second, wantResult: "timeout",
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
				require.NoError(t, a.Put(t.Context(), k, []byte("v"), time.Hour))
				_, found, err := b.Get(t.Context(), k) // now in both replicas' memory
				require.NoError(t, err)
				require.True(t, found)
			}
			// A lease in scope goes too, and so does an earlier version's lease, which
			// lived under a key of its own one token deeper.
			leased := store.Key{Tenant: "t1", Component: "c1", Hash: hash("leased")}
			res, err := a.Lookup(t.Context(), leased, time.Minute)
			require.NoError(t, err)
			require.Equal(t, store.OutcomeLeased, res.Outcome)
			oldLease := tokenKey(store.Key{Tenant: "t1", Component: "c1", Hash: hash("old lease")}) + ".lease"
			kv := rawBucket(t, srv, cfg.Bucket)
			_, err = kv.Create(t.Context(), oldLease, binary.BigEndian.AppendUint64(nil, uint64(time.Now().Add(time.Hour).UnixNano())))
			require.NoError(t, err)

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
				wantBucket += 2 // the lease and the earlier version's lease
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
			_, err = kv.Get(t.Context(), oldLease)
			if leaseGone {
				require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "earlier version's lease in scope")
			} else {
				require.NoError(t, err, "earlier version's lease out of scope")
			}
			require.InDelta(t, 1, metric(t, regA, "parley_cache_purges_total"), 0)
			require.InDelta(t, len(tt.wantGone), metric(t, regB, "parley_cache_purged_total", "layer", "l1"), 0)
		})
	}
}

// roundTrips reads parley_cache_bucket_round_trips_total of reg by op.
func roundTrips(t *testing.T, reg *prometheus.Registry) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, op := range []string{"get", "create", "put", "purge", "watch"} {
		got[op] = int(metric(t, reg, "parley_cache_bucket_round_trips_total", "op", op))
	}
	return got
}

// rawBucket is the bucket as a plain key-value handle on its own connection, to
// write what the store would not: records of earlier versions, expired records.
func rawBucket(t *testing.T, srv *server.Server, bucket string) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, srv))
	require.NoError(t, err)
	kv, err := js.KeyValue(t.Context(), bucket)
	require.NoError(t, err)
	return kv
}

// record encodes a bucket record as docs/cache.md describes it: a format byte (1 an
// entry, 2 a lease), the expiry, the value.
func record(format byte, expires time.Time, value string) []byte {
	b := binary.BigEndian.AppendUint64([]byte{format}, uint64(expires.UnixNano()))
	return append(b, value...)
}

// TestRoundTripsPerOperation counts the bucket requests each operation makes: they are
// the crossings inside a cache call (docs/architecture.md, Crossing budget).
func TestRoundTripsPerOperation(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("round_trips")
	other, _, _ := open(t, srv, cfg)
	kv := rawBucket(t, srv, cfg.Bucket)

	tests := []struct {
		name string
		// setup prepares k through other replicas or by hand; op is what is counted,
		// on a replica of its own whose memory is empty.
		setup func(t *testing.T, other *store.Store, k store.Key)
		op    func(t *testing.T, s *store.Store, k store.Key)
		want  map[string]int
	}{
		{
			name: "lookup, true miss: the lease is the only request",
			op:   lookupWants(store.OutcomeLeased),
			want: map[string]int{"create": 1},
		},
		{
			name: "lookup of a value stored by another replica",
			setup: func(t *testing.T, other *store.Store, k store.Key) {
				require.NoError(t, other.Put(t.Context(), k, []byte("v"), time.Hour))
			},
			op:   lookupWants(store.OutcomeHit),
			want: map[string]int{"create": 1, "get": 1},
		},
		{
			name: "lookup of a value in memory",
			op: func(t *testing.T, s *store.Store, k store.Key) {
				require.NoError(t, s.Put(t.Context(), k, []byte("v"), time.Hour))
				lookupWants(store.OutcomeHit)(t, s, k)
			},
			want: map[string]int{"put": 1},
		},
		{
			name:  "lookup while another replica holds the lease",
			setup: func(t *testing.T, other *store.Store, k store.Key) { lookupWants(store.OutcomeLeased)(t, other, k) },
			op:    lookupWants(store.OutcomeBusy),
			want:  map[string]int{"create": 1, "get": 1},
		},
		{
			name: "lookup after a release: the lease is written over the marker",
			setup: func(t *testing.T, other *store.Store, k store.Key) {
				res, err := other.Lookup(t.Context(), k, time.Minute)
				require.NoError(t, err)
				require.NoError(t, other.Release(t.Context(), k, res.Lease))
			},
			op:   lookupWants(store.OutcomeLeased),
			want: map[string]int{"create": 2, "get": 1},
		},
		{
			name: "lookup over an expired value JetStream has not removed yet",
			setup: func(t *testing.T, _ *store.Store, k store.Key) {
				_, err := kv.Put(t.Context(), tokenKey(k), record(1, time.Now().Add(-time.Second), "old"))
				require.NoError(t, err)
			},
			op:   lookupWants(store.OutcomeLeased),
			want: map[string]int{"create": 2, "get": 1},
		},
		{
			name:  "put of the lease holder: the value replaces the lease",
			setup: func(t *testing.T, other *store.Store, k store.Key) { lookupWants(store.OutcomeLeased)(t, other, k) },
			op: func(t *testing.T, s *store.Store, k store.Key) {
				require.NoError(t, s.Put(t.Context(), k, []byte("v"), time.Hour))
			},
			want: map[string]int{"put": 1},
		},
		{
			name: "release",
			op: func(t *testing.T, s *store.Store, k store.Key) {
				res, err := s.Lookup(t.Context(), k, time.Minute)
				require.NoError(t, err)
				require.Equal(t, store.OutcomeLeased, res.Outcome)
				require.NoError(t, s.Release(t.Context(), k, res.Lease))
			},
			want: map[string]int{"create": 1, "purge": 1},
		},
		{
			name: "get of a value stored by another replica",
			setup: func(t *testing.T, other *store.Store, k store.Key) {
				require.NoError(t, other.Put(t.Context(), k, []byte("v"), time.Hour))
			},
			op: func(t *testing.T, s *store.Store, k store.Key) {
				_, found, err := s.Get(t.Context(), k)
				require.NoError(t, err)
				require.True(t, found)
			},
			want: map[string]int{"get": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, reg, _ := open(t, srv, cfg)
			k := key(tt.name)
			if tt.setup != nil {
				tt.setup(t, other, k)
			}
			before := roundTrips(t, reg)
			tt.op(t, s, k)
			after := roundTrips(t, reg)
			got := map[string]int{}
			for op, n := range after {
				if d := n - before[op]; d != 0 {
					got[op] = d
				}
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func lookupWants(want store.Outcome) func(t *testing.T, s *store.Store, k store.Key) {
	return func(t *testing.T, s *store.Store, k store.Key) {
		t.Helper()
		res, err := s.Lookup(t.Context(), k, time.Minute)
		require.NoError(t, err)
		require.Equal(t, want, res.Outcome)
	}
}

// TestLeaseOverLeftovers: whatever a key holds that is neither a live value nor a live
// lease, a Lookup takes the lease over it, and a second Lookup finds that lease.
func TestLeaseOverLeftovers(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("leftovers")
	open(t, srv, cfg) // creates the bucket
	kv := rawBucket(t, srv, cfg.Bucket)
	past := time.Now().Add(-time.Second)

	tests := []struct {
		name  string
		leave func(t *testing.T, ek string)
	}{
		{"an expired value", func(t *testing.T, ek string) {
			_, err := kv.Put(t.Context(), ek, record(1, past, "old"))
			require.NoError(t, err)
		}},
		{"an expired lease", func(t *testing.T, ek string) {
			_, err := kv.Put(t.Context(), ek, record(2, past, ""))
			require.NoError(t, err)
		}},
		{"a delete marker", func(t *testing.T, ek string) {
			_, err := kv.Put(t.Context(), ek, record(1, time.Now().Add(time.Hour), "deleted"))
			require.NoError(t, err)
			require.NoError(t, kv.Delete(t.Context(), ek))
		}},
		{"a purge marker", func(t *testing.T, ek string) {
			_, err := kv.Put(t.Context(), ek, record(1, time.Now().Add(time.Hour), "purged"))
			require.NoError(t, err)
			require.NoError(t, kv.Purge(t.Context(), ek, jetstream.PurgeTTL(time.Minute)))
		}},
		{"a value of an earlier format", func(t *testing.T, ek string) {
			_, err := kv.Put(t.Context(), ek, []byte("raw"))
			require.NoError(t, err)
		}},
		{"an earlier version's lease under its own key", func(t *testing.T, ek string) {
			_, err := kv.Create(t.Context(), ek+".lease", binary.BigEndian.AppendUint64(nil, uint64(time.Now().Add(time.Hour).UnixNano())))
			require.NoError(t, err)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, _, _ := open(t, srv, cfg)
			b, _, _ := open(t, srv, cfg)
			k := key(tt.name)
			tt.leave(t, tokenKey(k))
			lookupWants(store.OutcomeLeased)(t, a, k)
			busy, err := b.Lookup(t.Context(), k, time.Minute)
			require.NoError(t, err)
			require.Equal(t, store.OutcomeBusy, busy.Outcome)
			require.Positive(t, busy.LeaseRemaining, "the new lease's remaining time")
			require.LessOrEqual(t, busy.LeaseRemaining, time.Minute)
		})
	}
}

// TestLeaseRecordLayout: the lease is a record at the entry's key, format byte 2 and
// its expiry; the holder's value replaces it, and a late Release leaves the value.
func TestLeaseRecordLayout(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	cfg := testConfig("lease_layout")
	s, _, _ := open(t, srv, cfg)
	other, _, _ := open(t, srv, cfg)
	kv := rawBucket(t, srv, "lease_layout")
	k := key("lease layout")

	before := time.Now()
	res, err := s.Lookup(t.Context(), k, 30*time.Second)
	require.NoError(t, err)
	require.Equal(t, store.OutcomeLeased, res.Outcome)
	e, err := kv.Get(t.Context(), tokenKey(k))
	require.NoError(t, err)
	require.Equal(t, res.Lease, e.Revision(), "the lease is the record's revision")
	require.Len(t, e.Value(), 9)
	require.Equal(t, byte(2), e.Value()[0], "format byte")
	exp := time.Unix(0, int64(binary.BigEndian.Uint64(e.Value()[1:])))
	require.False(t, exp.Before(before.Add(30*time.Second)), "expiry")
	_, err = kv.Get(t.Context(), tokenKey(k)+".lease")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "no lease key of its own")

	require.NoError(t, s.Put(t.Context(), k, []byte("v"), time.Hour))
	e, err = kv.Get(t.Context(), tokenKey(k))
	require.NoError(t, err)
	require.Equal(t, byte(1), e.Value()[0])
	require.NoError(t, s.Release(t.Context(), k, res.Lease), "a lease replaced by a value")
	got, found, err := other.Get(t.Context(), k)
	require.NoError(t, err)
	require.True(t, found, "a Release after the Put leaves the value")
	require.Equal(t, "v", string(got))
}
