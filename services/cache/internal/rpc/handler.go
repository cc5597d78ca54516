// Package rpc serves parley.cache.v1.CacheService. It is the only place that turns the
// store's domain errors into Connect codes.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	cachev1 "github.com/parleyhq/parley/gen/pb/parley/cache/v1"
	"github.com/parleyhq/parley/gen/pb/parley/cache/v1/cachev1connect"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/libs/warm"
	"github.com/parleyhq/parley/services/cache/internal/store"
)

// Cache is what the handler needs from the store.
type Cache interface {
	Get(ctx context.Context, k store.Key) ([]byte, bool, error)
	Put(ctx context.Context, k store.Key, value []byte, ttl time.Duration) error
	Lookup(ctx context.Context, k store.Key, leaseTTL time.Duration) (store.Lookup, error)
	Wait(ctx context.Context, k store.Key, maxWait time.Duration) ([]byte, bool, error)
	Release(ctx context.Context, k store.Key, lease uint64) error
	Purge(ctx context.Context, tenant, component string) (store.Purged, error)
}

// Policy names who may call each RPC: routers read and fill the cache and hold its
// leases; only an operator (the admin identity) purges it.
var Policy = identity.Policy{
	cachev1connect.CacheServiceGetProcedure:         {identity.Router},
	cachev1connect.CacheServicePutProcedure:         {identity.Router},
	cachev1connect.CacheServicePutBatchProcedure:    {identity.Router},
	cachev1connect.CacheServiceLookupProcedure:      {identity.Router},
	cachev1connect.CacheServiceLookupBatchProcedure: {identity.Router},
	cachev1connect.CacheServiceWaitProcedure:        {identity.Router},
	cachev1connect.CacheServiceReleaseProcedure:     {identity.Router},
	cachev1connect.CacheServicePurgeProcedure:       {identity.Admin},
}

// maxIdleWorkers bounds the goroutines kept between batches for their calls: a CPU
// profile of this service at a miss's c=16 put 8.6 % of its CPU in growing the stacks of
// goroutines started for a batch's calls (libs/warm).
const maxIdleWorkers = 64

// Handler implements CacheService over a Cache.
type Handler struct {
	cache   Cache
	logger  *slog.Logger
	workers *warm.Pool // a batch's calls after its first
}

var _ cachev1connect.CacheServiceHandler = (*Handler)(nil)

// NewHandler returns a handler serving c; logger gets the unmapped errors and panics of
// a batch's calls, as the shared middleware logs a single call's.
func NewHandler(c Cache, logger *slog.Logger) *Handler {
	return &Handler{cache: c, logger: logger, workers: warm.New(maxIdleWorkers)}
}

// Get returns the entry under the request's key, if it is live.
func (h *Handler) Get(ctx context.Context, req *cachev1.GetRequest) (*cachev1.GetResponse, error) {
	k := store.Key{Tenant: req.GetTenant(), Component: req.GetComponent(), Hash: req.GetKey()}
	value, found, err := h.cache.Get(ctx, k)
	if err != nil {
		return nil, toConnect(err)
	}
	return &cachev1.GetResponse{Found: found, Value: value}, nil
}

// Put stores the request's value under its key for its TTL and ends its lease.
func (h *Handler) Put(ctx context.Context, req *cachev1.PutRequest) (*cachev1.PutResponse, error) {
	ttl, err := positive("ttl", req.GetTtl())
	if err != nil {
		return nil, err
	}
	k := store.Key{Tenant: req.GetTenant(), Component: req.GetComponent(), Hash: req.GetKey()}
	if err := h.cache.Put(ctx, k, req.GetValue(), ttl); err != nil {
		return nil, toConnect(err)
	}
	return &cachev1.PutResponse{}, nil
}

// Lookup returns the entry, a lease, or word that another caller holds the lease.
func (h *Handler) Lookup(ctx context.Context, req *cachev1.LookupRequest) (*cachev1.LookupResponse, error) {
	var leaseTTL time.Duration
	if d := req.GetLeaseTtl(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("lease_ttl: %w", err))
		}
		leaseTTL = d.AsDuration()
	}
	k := store.Key{Tenant: req.GetTenant(), Component: req.GetComponent(), Hash: req.GetKey()}
	res, err := h.cache.Lookup(ctx, k, leaseTTL)
	if err != nil {
		return nil, toConnect(err)
	}
	out := &cachev1.LookupResponse{}
	switch res.Outcome {
	case store.OutcomeHit:
		out.Outcome, out.Value = cachev1.LookupOutcome_LOOKUP_OUTCOME_HIT, res.Value
		out.Layer = cachev1.Layer_LAYER_L2
		if res.Layer == store.LayerL1 {
			out.Layer = cachev1.Layer_LAYER_L1
		}
	case store.OutcomeLeased:
		out.Outcome, out.Lease = cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, res.Lease
		out.LeaseRemaining = durationpb.New(res.LeaseRemaining)
	case store.OutcomeBusy:
		out.Outcome = cachev1.LookupOutcome_LOOKUP_OUTCOME_BUSY
		out.LeaseRemaining = durationpb.New(res.LeaseRemaining)
	case store.OutcomeMiss:
		out.Outcome = cachev1.LookupOutcome_LOOKUP_OUTCOME_MISS
	}
	return out, nil
}

// MaxBatch is the most calls a LookupBatch or PutBatch may carry; the router's batches
// are no larger (upstream.maxBatch).
const MaxBatch = 64

// MaxBatchValueBytes bounds the values of a LookupBatch's hits together: the router's
// answer is then at most this plus a few bytes per lookup. A hit past it is answered
// HIT_NOT_SENT, and the router Gets it.
const MaxBatchValueBytes = 4 << 20

// LookupBatch does each lookup as Lookup would, concurrently: each waits on its own NATS
// round trips, so the batch takes about as long as its slowest lookup. One lookup's
// error is its own result; the others go on.
func (h *Handler) LookupBatch(ctx context.Context, req *cachev1.LookupBatchRequest) (*cachev1.LookupBatchResponse, error) {
	lookups := req.GetLookups()
	if err := batchSize("lookups", len(lookups)); err != nil {
		return nil, err
	}
	outs := make([]*cachev1.LookupResponse, len(lookups))
	errs := h.each(ctx, cachev1connect.CacheServiceLookupBatchProcedure, len(lookups), func(i int) (err error) {
		outs[i], err = h.Lookup(ctx, lookups[i])
		return err
	})
	results := make([]*cachev1.LookupResult, len(lookups))
	for i := range results {
		results[i] = &cachev1.LookupResult{Response: outs[i], Error: errs[i]}
	}
	budget := MaxBatchValueBytes
	for _, r := range results {
		res := r.GetResponse()
		if res.GetOutcome() != cachev1.LookupOutcome_LOOKUP_OUTCOME_HIT {
			continue
		}
		if len(res.GetValue()) > budget {
			res.Outcome, res.Value = cachev1.LookupOutcome_LOOKUP_OUTCOME_HIT_NOT_SENT, nil
			continue
		}
		budget -= len(res.GetValue())
	}
	return &cachev1.LookupBatchResponse{Results: results}, nil
}

// PutBatch does each Put as Put would, concurrently. One Put's error is its own result;
// the others go on. The request's size is bounded as any call's (RPC_MAX_MESSAGE_BYTES).
func (h *Handler) PutBatch(ctx context.Context, req *cachev1.PutBatchRequest) (*cachev1.PutBatchResponse, error) {
	puts := req.GetPuts()
	if err := batchSize("puts", len(puts)); err != nil {
		return nil, err
	}
	errs := h.each(ctx, cachev1connect.CacheServicePutBatchProcedure, len(puts), func(i int) error {
		_, err := h.Put(ctx, puts[i])
		return err
	})
	results := make([]*cachev1.PutResult, len(puts))
	for i, e := range errs {
		results[i] = &cachev1.PutResult{Error: e}
	}
	return &cachev1.PutBatchResponse{Results: results}, nil
}

func batchSize(field string, n int) error {
	switch {
	case n == 0:
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s: at least one is required", field))
	case n > MaxBatch:
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s: %d, at most %d", field, n, MaxBatch))
	}
	return nil
}

// each runs call(0) … call(n-1) concurrently, call(0) on the calling goroutine, and
// returns their errors as the batch answers them. A call that panics fails alone, as a
// single call's panic would (the shared middleware's recovery): logged with its stack,
// answered Internal with the log line's id.
func (h *Handler) each(ctx context.Context, procedure string, n int, call func(i int) error) []*cachev1.BatchError {
	errs := make([]*cachev1.BatchError, n)
	if n == 0 {
		return errs
	}
	run := func(i int) {
		defer func() {
			if v := recover(); v != nil {
				errs[i] = batchError(rpcserver.Panicked(ctx, h.logger, procedure, v))
			}
		}()
		if err := call(i); err != nil {
			ce := new(connect.Error)
			if !errors.As(err, &ce) {
				ce = rpcserver.Unmapped(ctx, h.logger, procedure, err)
			}
			errs[i] = batchError(ce)
		}
	}
	var wg sync.WaitGroup
	wg.Add(n - 1)
	for i := 1; i < n; i++ {
		h.workers.Go(warm.Func{F: func() { run(i) }, Finish: wg.Done})
	}
	run(0)
	wg.Wait()
	return errs
}

// batchError is how a batch answers one call's error.
func batchError(ce *connect.Error) *cachev1.BatchError {
	return &cachev1.BatchError{Code: uint32(ce.Code()), Message: ce.Message()}
}

// Wait waits for the lease holder's value.
func (h *Handler) Wait(ctx context.Context, req *cachev1.WaitRequest) (*cachev1.WaitResponse, error) {
	maxWait, err := positive("max_wait", req.GetMaxWait())
	if err != nil {
		return nil, err
	}
	k := store.Key{Tenant: req.GetTenant(), Component: req.GetComponent(), Hash: req.GetKey()}
	value, found, err := h.cache.Wait(ctx, k, maxWait)
	if err != nil {
		return nil, toConnect(err)
	}
	return &cachev1.WaitResponse{Found: found, Value: value}, nil
}

// Release ends the caller's lease without a value.
func (h *Handler) Release(ctx context.Context, req *cachev1.ReleaseRequest) (*cachev1.ReleaseResponse, error) {
	k := store.Key{Tenant: req.GetTenant(), Component: req.GetComponent(), Hash: req.GetKey()}
	if err := h.cache.Release(ctx, k, req.GetLease()); err != nil {
		return nil, toConnect(err)
	}
	return &cachev1.ReleaseResponse{}, nil
}

// Purge drops the entries of a tenant, a component, or a component of a tenant.
func (h *Handler) Purge(ctx context.Context, req *cachev1.PurgeRequest) (*cachev1.PurgeResponse, error) {
	p, err := h.cache.Purge(ctx, req.GetTenant(), req.GetComponent())
	if err != nil {
		return nil, toConnect(err)
	}
	return &cachev1.PurgeResponse{Purged: p.Bucket, PurgedLocal: p.Local}, nil
}

// positive reads a required, positive duration field.
func positive(field string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s is required", field))
	}
	if err := d.CheckValid(); err != nil {
		return 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s: %w", field, err))
	}
	if d.AsDuration() <= 0 {
		return 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s must be positive", field))
	}
	return d.AsDuration(), nil
}

// toConnect maps the store's errors to codes. Anything unmapped is returned as is, and
// the shared middleware masks it as Internal.
func toConnect(err error) error {
	switch {
	case errors.Is(err, store.ErrInvalidKey), errors.Is(err, store.ErrInvalidScope), errors.Is(err, store.ErrInvalidPurge),
		errors.Is(err, store.ErrInvalidTTL), errors.Is(err, store.ErrInvalidWait), errors.Is(err, store.ErrInvalidLease),
		errors.Is(err, store.ErrTooLarge):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, store.ErrFull):
		return connect.NewError(connect.CodeResourceExhausted, store.ErrFull)
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrNotStarted):
		// Checked before the context errors: a JetStream API timeout is Unavailable even
		// though it carries context.DeadlineExceeded.
		return connect.NewError(connect.CodeUnavailable, store.ErrUnavailable)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, context.Canceled)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, context.DeadlineExceeded)
	}
	return err
}
