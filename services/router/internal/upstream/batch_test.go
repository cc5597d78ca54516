package upstream

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	cachev1 "github.com/parleyhq/parley/gen/pb/parley/cache/v1"
)

// fakeLookups answers every lookup with a lease derived from its key, so that each
// caller can check it got its own answer. With hold set, each call waits for a token
// from proceed after saying so on entered.
type fakeLookups struct {
	hold     bool
	entered  chan string
	proceed  chan struct{}
	batchErr error                          // LookupBatch fails with it
	short    bool                           // LookupBatch answers one lookup too few
	itemErrs map[string]*cachev1.BatchError // by key

	mu      sync.Mutex
	singles []string
	batches [][]string
}

func newFakeLookups(hold bool) *fakeLookups {
	return &fakeLookups{hold: hold, entered: make(chan string, 256), proceed: make(chan struct{}, 256)}
}

func leaseOf(key string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return h.Sum64() | 1
}

func (f *fakeLookups) wait(ctx context.Context, call string) error {
	if !f.hold {
		return nil
	}
	f.entered <- call
	select {
	case <-f.proceed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeLookups) Lookup(ctx context.Context, req *cachev1.LookupRequest) (*cachev1.LookupResponse, error) {
	f.mu.Lock()
	f.singles = append(f.singles, req.GetKey())
	f.mu.Unlock()
	if err := f.wait(ctx, "lookup "+req.GetKey()); err != nil {
		return nil, err
	}
	return &cachev1.LookupResponse{Outcome: cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, Lease: leaseOf(req.GetKey())}, nil
}

func (f *fakeLookups) LookupBatch(ctx context.Context, req *cachev1.LookupBatchRequest) (*cachev1.LookupBatchResponse, error) {
	keys := make([]string, len(req.GetLookups()))
	for i, l := range req.GetLookups() {
		keys[i] = l.GetKey()
	}
	f.mu.Lock()
	f.batches = append(f.batches, keys)
	f.mu.Unlock()
	if err := f.wait(ctx, fmt.Sprintf("batch of %d", len(keys))); err != nil {
		return nil, err
	}
	if f.batchErr != nil {
		return nil, f.batchErr
	}
	if f.short {
		keys = keys[1:]
	}
	res := &cachev1.LookupBatchResponse{}
	for _, k := range keys {
		if e := f.itemErrs[k]; e != nil {
			res.Results = append(res.Results, &cachev1.LookupResult{Error: e})
			continue
		}
		res.Results = append(res.Results, &cachev1.LookupResult{Response: &cachev1.LookupResponse{
			Outcome: cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, Lease: leaseOf(k),
		}})
	}
	return res, nil
}

func (f *fakeLookups) calls() (singles []string, batches [][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.singles...), append([][]string(nil), f.batches...)
}

// released records the leases the batcher gives back for callers that left.
type released struct {
	mu     sync.Mutex
	leases map[string]uint64
}

func (r *released) release(req *cachev1.LookupRequest, lease uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leases[req.GetKey()] = lease
}

func (r *released) get() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]uint64{}
	for k, v := range r.leases {
		out[k] = v
	}
	return out
}

type lookups = batcher[*cachev1.LookupRequest, *cachev1.LookupResponse]

// sizesSeen records what the batcher observes of each call.
type sizesSeen struct {
	mu  sync.Mutex
	got []float64
}

func (s *sizesSeen) Observe(v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, v)
}

// queued waits until n calls queue behind the call in flight.
func queued[Req, Res any](t *testing.T, b *batcher[Req, Res], n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.queue) == n
	}, 30*time.Second, time.Millisecond, "%d calls never queued", n)
}

type lookupOutcome struct {
	key   string
	lease uint64
	err   error
}

// lookupAll starts a lookup for each key, each once the previous one queued, so that
// the queue's order is the keys' order.
func lookupAll(t *testing.T, b *lookups, ctxs []context.Context, keys []string, queuedBefore int) <-chan lookupOutcome {
	t.Helper()
	out := make(chan lookupOutcome, len(keys))
	for i, k := range keys {
		go func() {
			res, err := b.do(ctxs[i], &cachev1.LookupRequest{Key: k})
			out <- lookupOutcome{key: k, lease: res.GetLease(), err: err}
		}()
		queued(t, b, queuedBefore+i+1)
	}
	return out
}

func keysN(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return keys
}

func contexts(t *testing.T, n int) []context.Context {
	ctxs := make([]context.Context, n)
	for i := range ctxs {
		ctxs[i] = t.Context()
	}
	return ctxs
}

func TestLookupBatcherAloneWhenIdle(t *testing.T) {
	t.Parallel()
	f := newFakeLookups(false)
	b := newLookupBatcher(f, time.Minute, nil, nil)
	for _, k := range keysN("k", 5) {
		res, err := b.do(t.Context(), &cachev1.LookupRequest{Key: k})
		require.NoError(t, err)
		require.Equal(t, leaseOf(k), res.GetLease())
	}
	singles, batches := f.calls()
	require.Equal(t, keysN("k", 5), singles, "one at a time, each lookup goes alone")
	require.Empty(t, batches)
}

func TestLookupBatcherBatchesWhatQueues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		queue       int
		wantBatches []int // sizes
	}{
		{"one behind the call in flight", 1, []int{1}},
		{"ten", 10, []int{10}},
		{"a full batch", maxBatch, []int{maxBatch}},
		{"more than a batch: the rest go next", maxBatch + 6, []int{maxBatch, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeLookups(true)
			seen := &sizesSeen{}
			b := newLookupBatcher(f, time.Minute, nil, seen)
			first := lookupAll(t, b, contexts(t, 1), []string{"first"}, -1) // goes at once: nothing queues
			require.Equal(t, "lookup first", <-f.entered)
			keys := keysN("q", tt.queue)
			out := lookupAll(t, b, contexts(t, tt.queue), keys, 0)
			for range 1 + len(tt.wantBatches) {
				f.proceed <- struct{}{}
			}
			require.Equal(t, lookupOutcome{key: "first", lease: leaseOf("first")}, <-first)
			for range keys {
				o := <-out
				require.NoError(t, o.err)
				require.Equal(t, leaseOf(o.key), o.lease, "%s got its own answer", o.key)
			}
			singles, batches := f.calls()
			require.Equal(t, []string{"first"}, singles)
			var sizes []int
			var sent []string
			for _, batch := range batches {
				sizes = append(sizes, len(batch))
				sent = append(sent, batch...)
			}
			require.Equal(t, tt.wantBatches, sizes)
			require.Equal(t, keys, sent, "in the order they queued")
			wantSeen := []float64{1}
			for _, n := range tt.wantBatches {
				wantSeen = append(wantSeen, float64(n))
			}
			require.Equal(t, wantSeen, seen.got, "each call's lookups observed")
			b.mu.Lock()
			defer b.mu.Unlock()
			require.False(t, b.busy, "idle again")
			require.Empty(t, b.queue)
		})
	}
}

func TestLookupBatcherCallersThatLeave(t *testing.T) {
	t.Parallel()
	t.Run("while queued: left out of the batch", func(t *testing.T) {
		t.Parallel()
		f := newFakeLookups(true)
		b := newLookupBatcher(f, time.Minute, nil, nil)
		first := lookupAll(t, b, contexts(t, 1), []string{"first"}, -1)
		<-f.entered
		ctxs := contexts(t, 3)
		leaving, leave := context.WithCancel(t.Context())
		ctxs[1] = leaving
		out := lookupAll(t, b, ctxs, []string{"a", "b", "c"}, 0)
		leave()
		o := <-out
		require.Equal(t, "b", o.key)
		require.ErrorIs(t, o.err, context.Canceled)
		f.proceed <- struct{}{}
		f.proceed <- struct{}{}
		<-first
		for range 2 {
			require.NoError(t, (<-out).err)
		}
		_, batches := f.calls()
		require.Equal(t, [][]string{{"a", "c"}}, batches)
	})
	t.Run("while its batch is in flight: its lease is given back", func(t *testing.T) {
		t.Parallel()
		f := newFakeLookups(true)
		rel := &released{leases: map[string]uint64{}}
		b := newLookupBatcher(f, time.Minute, rel.release, nil)
		first := lookupAll(t, b, contexts(t, 1), []string{"first"}, -1)
		<-f.entered
		ctxs := contexts(t, 3)
		leaving, leave := context.WithCancel(t.Context())
		ctxs[2] = leaving
		out := lookupAll(t, b, ctxs, []string{"a", "b", "c"}, 0)
		f.proceed <- struct{}{}
		<-first
		require.Equal(t, "batch of 3", <-f.entered)
		leave()
		o := <-out
		require.Equal(t, "c", o.key)
		require.ErrorIs(t, o.err, context.Canceled)
		f.proceed <- struct{}{}
		for range 2 {
			o := <-out
			require.NoError(t, o.err)
			require.Equal(t, leaseOf(o.key), o.lease)
		}
		require.Equal(t, map[string]uint64{"c": leaseOf("c")}, rel.get(), "only the lease of the caller that left")
	})
	t.Run("the batch's sender left: the batch still goes", func(t *testing.T) {
		t.Parallel()
		f := newFakeLookups(true)
		b := newLookupBatcher(f, time.Minute, (&released{leases: map[string]uint64{}}).release, nil)
		first := lookupAll(t, b, contexts(t, 1), []string{"first"}, -1)
		<-f.entered
		ctxs := contexts(t, 2)
		leaving, leave := context.WithCancel(t.Context())
		ctxs[0] = leaving
		out := lookupAll(t, b, ctxs, []string{"a", "b"}, 0)
		f.proceed <- struct{}{}
		<-first
		require.Equal(t, "batch of 2", <-f.entered)
		leave() // a sends the batch: its own context does not end the call
		f.proceed <- struct{}{}
		for range 2 {
			o := <-out
			require.NoError(t, o.err, o.key)
			require.Equal(t, leaseOf(o.key), o.lease)
		}
	})
}

func TestLookupBatcherErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		batchErr error
		short    bool
		itemErrs map[string]*cachev1.BatchError
		want     map[string]connect.Code // by key; absent: a lease
		// wantAlone: the lookups the batch held went alone afterwards, as did the next.
		wantAlone bool
	}{
		{
			name:     "the batch fails: every lookup in it",
			batchErr: connect.NewError(connect.CodeUnavailable, errors.New("cache down")),
			want:     map[string]connect.Code{"a": connect.CodeUnavailable, "b": connect.CodeUnavailable},
		},
		{
			name:  "an answer one lookup short: every lookup in it fails",
			short: true,
			want:  map[string]connect.Code{"a": connect.CodeUnknown, "b": connect.CodeUnknown},
		},
		{
			name:     "one lookup fails: only it",
			itemErrs: map[string]*cachev1.BatchError{"b": {Code: uint32(connect.CodeInvalidArgument), Message: "key: 64 lowercase hex"}},
			want:     map[string]connect.Code{"b": connect.CodeInvalidArgument},
		},
		{
			name:      "a cache service without LookupBatch: each goes alone",
			batchErr:  connect.NewError(connect.CodeUnimplemented, errors.New("no such procedure")),
			wantAlone: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeLookups(true)
			f.batchErr, f.short, f.itemErrs = tt.batchErr, tt.short, tt.itemErrs
			b := newLookupBatcher(f, time.Minute, nil, nil)
			first := lookupAll(t, b, contexts(t, 1), []string{"first"}, -1)
			<-f.entered
			out := lookupAll(t, b, contexts(t, 2), []string{"a", "b"}, 0)
			f.hold = false // what follows the first call answers at once
			f.proceed <- struct{}{}
			<-first
			for range 2 {
				o := <-out
				if code, ok := tt.want[o.key]; ok {
					require.Equal(t, code, connect.CodeOf(o.err), "%s: %v", o.key, o.err)
					continue
				}
				require.NoError(t, o.err, o.key)
				require.Equal(t, leaseOf(o.key), o.lease, o.key)
			}
			// The next lookup, on an idle batcher.
			res, err := b.do(t.Context(), &cachev1.LookupRequest{Key: "next"})
			require.NoError(t, err)
			require.Equal(t, leaseOf("next"), res.GetLease())
			singles, batches := f.calls()
			require.Len(t, batches, 1)
			if !tt.wantAlone {
				require.Equal(t, []string{"first", "next"}, singles)
				return
			}
			require.ElementsMatch(t, []string{"first", "a", "b", "next"}, singles)
			// Within the minute, a lookup behind one in flight goes alone too, not queued.
			f.hold = true
			held := lookupAll(t, b, contexts(t, 1), []string{"held"}, -1)
			require.Equal(t, "lookup held", <-f.entered)
			go func() { _, _ = b.do(t.Context(), &cachev1.LookupRequest{Key: "beside"}) }()
			select {
			case call := <-f.entered:
				require.Equal(t, "lookup beside", call, "sent at once, beside the one in flight")
			case <-time.After(30 * time.Second):
				t.Fatal("the lookup beside the one in flight was not sent: it queued")
			}
			f.proceed <- struct{}{}
			f.proceed <- struct{}{}
			<-held
			_, batches = f.calls()
			require.Len(t, batches, 1, "no batch tried again")
		})
	}
}

// fakePuts keeps what each call carried; with hold set, each call waits for a token from
// proceed after saying so on entered.
type fakePuts struct {
	entered chan string
	proceed chan struct{}

	mu      sync.Mutex
	singles []int   // value sizes
	batches [][]int // value sizes
}

func (f *fakePuts) Put(_ context.Context, req *cachev1.PutRequest) (*cachev1.PutResponse, error) {
	f.mu.Lock()
	f.singles = append(f.singles, len(req.GetValue()))
	f.mu.Unlock()
	f.entered <- "put"
	<-f.proceed
	return &cachev1.PutResponse{}, nil
}

func (f *fakePuts) PutBatch(_ context.Context, req *cachev1.PutBatchRequest) (*cachev1.PutBatchResponse, error) {
	var sizes []int
	res := &cachev1.PutBatchResponse{}
	for _, p := range req.GetPuts() {
		sizes = append(sizes, len(p.GetValue()))
		var e *cachev1.BatchError
		if len(p.GetValue()) == 13 { // the unlucky size
			e = &cachev1.BatchError{Code: uint32(connect.CodeInvalidArgument), Message: "refused"}
		}
		res.Results = append(res.Results, &cachev1.PutResult{Error: e})
	}
	f.mu.Lock()
	f.batches = append(f.batches, sizes)
	f.mu.Unlock()
	f.entered <- "batch"
	<-f.proceed
	return res, nil
}

// putOutcome is what a Put of a value of size bytes was answered.
type putOutcome struct {
	size int
	err  error
}

// putRig is a Put batcher over a fakePuts, and a Put of a value of size bytes that
// reports its outcome on out (room for outs of them).
func putRig(outs int) (*fakePuts, *batcher[*cachev1.PutRequest, *cachev1.PutResponse], chan putOutcome, func(context.Context, int)) {
	f := &fakePuts{entered: make(chan string, 64), proceed: make(chan struct{}, 64)}
	b := newPutBatcher(f, time.Minute, nil)
	out := make(chan putOutcome, outs)
	put := func(ctx context.Context, size int) {
		_, err := b.do(ctx, &cachev1.PutRequest{Value: make([]byte, size)})
		out <- putOutcome{size, err}
	}
	return f, b, out, put
}

// TestPutBatcherStaysForItsBatch: a Put whose context ends while its batch is in flight
// waits for the batch's answer: its caller would otherwise Release a lease the batch
// fills. A Put still queued leaves.
func TestPutBatcherStaysForItsBatch(t *testing.T) {
	t.Parallel()
	f, b, out, put := putRig(4)
	go put(t.Context(), 1)
	require.Equal(t, "put", <-f.entered)
	inFlight, endInFlight := context.WithCancel(t.Context())
	go put(t.Context(), 2) // sends the batch
	queued(t, b, 1)
	go put(inFlight, 3)
	queued(t, b, 2)
	f.proceed <- struct{}{} // the first Put's answer; the batch of 2 and 3 goes
	require.Equal(t, putOutcome{1, nil}, <-out)
	require.Equal(t, "batch", <-f.entered)

	endInFlight()
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.stayed == 1
	}, 30*time.Second, time.Millisecond, "the Put in flight stays")
	queuedLeaves, leave := context.WithCancel(t.Context())
	go put(queuedLeaves, 4)
	queued(t, b, 1)
	leave()
	require.Equal(t, putOutcome{4, context.Canceled}, <-out, "a Put still queued leaves")

	f.proceed <- struct{}{}
	got := map[int]error{}
	for range 2 {
		o := <-out
		got[o.size] = o.err
	}
	require.Equal(t, map[int]error{2: nil, 3: nil}, got, "both answered by their batch")
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Equal(t, [][]int{{2, 3}}, f.batches, "the Put that left was never sent")
}

// TestPutBatcher: Puts that queue go together up to maxPutBatchBytes of values; a larger
// value goes in a batch of its own; each Put gets its own error.
func TestPutBatcher(t *testing.T) {
	t.Parallel()
	const kib = 1 << 10
	tests := []struct {
		name        string
		queue       []int // value sizes
		wantBatches [][]int
	}{
		{"small values share a batch", []int{10, 20, 13, 30}, [][]int{{10, 20, 13, 30}}},
		{"values past the bound go next", []int{600 * kib, 600 * kib, 10}, [][]int{{600 * kib}, {600 * kib, 10}}},
		{"a value past the bound alone goes alone", []int{10, 2 << 20, 10}, [][]int{{10}, {2 << 20}, {10}}},
		{"exactly the bound", []int{maxPutBatchBytes / 2, maxPutBatchBytes / 2, 1}, [][]int{{maxPutBatchBytes / 2, maxPutBatchBytes / 2}, {1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, b, out, put := putRig(len(tt.queue) + 1)
			go put(t.Context(), 1)
			require.Equal(t, "put", <-f.entered)
			for i, size := range tt.queue {
				go put(t.Context(), size)
				queued(t, b, i+1)
			}
			for range 1 + len(tt.wantBatches) {
				f.proceed <- struct{}{}
			}
			for range 1 + len(tt.queue) {
				o := <-out
				if o.size == 13 {
					require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(o.err))
					continue
				}
				require.NoError(t, o.err, "size %d", o.size)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			require.Equal(t, []int{1}, f.singles)
			require.Equal(t, tt.wantBatches, f.batches)
		})
	}
}
