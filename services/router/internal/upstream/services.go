package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"

	cachev1 "github.com/parleyhq/parley/gen/pb/parley/cache/v1"
	"github.com/parleyhq/parley/gen/pb/parley/cache/v1/cachev1connect"
	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/crossing"
)

// Scrubber calls the pii-scrubber service.
type Scrubber struct {
	client piiv1connect.ScrubberServiceClient
}

// NewScrubber wraps a generated client.
func NewScrubber(client piiv1connect.ScrubberServiceClient) *Scrubber {
	return &Scrubber{client: client}
}

// Scrub scrubs the call's texts in one request.
func (s *Scrubber) Scrub(ctx context.Context, call conversation.ScrubCall) (conversation.ScrubOutcome, error) {
	req := &piiv1.ScrubRequest{Texts: call.Texts}
	if call.Mode == conversation.ScrubTokenize {
		req.Mode = piiv1.Mode_MODE_TOKENIZE
		for _, t := range call.Tokens {
			req.Tokens = append(req.Tokens, &piiv1.Token{Token: t.Token, Entity: t.Entity, Value: t.Value})
		}
	}
	if slices.Contains(call.Formats, conversation.FormatJSON) {
		req.Formats = make([]piiv1.Format, len(call.Formats))
		for i, f := range call.Formats {
			req.Formats[i] = piiv1.Format_FORMAT_TEXT
			if f == conversation.FormatJSON {
				req.Formats[i] = piiv1.Format_FORMAT_JSON
			}
		}
	}
	done := crossing.Track(ctx, crossing.Scrub)
	res, err := s.client.Scrub(ctx, req)
	done()
	if err != nil {
		return conversation.ScrubOutcome{}, fmt.Errorf("pii-scrubber: %w", err)
	}
	if len(res.GetResults()) != len(call.Texts) {
		return conversation.ScrubOutcome{}, fmt.Errorf("pii-scrubber: %d results for %d texts", len(res.GetResults()), len(call.Texts))
	}
	out := conversation.ScrubOutcome{Results: make([]conversation.Scrubbed, len(call.Texts))}
	for i, r := range res.GetResults() {
		out.Results[i].Text = r.GetText()
		for _, f := range r.GetFindings() {
			out.Results[i].Findings = append(out.Results[i].Findings, conversation.Finding{Entity: f.GetEntity(), Start: int(f.GetStart()), End: int(f.GetEnd())})
		}
	}
	for _, t := range res.GetTokens() {
		out.Tokens = append(out.Tokens, conversation.Token{Token: t.GetToken(), Entity: t.GetEntity(), Value: t.GetValue()})
	}
	return out, nil
}

// Cache calls the cache service. Every call but Wait is bounded by timeout, so a slow
// cache costs little: the conversation goes on without it. Wait is bounded by the
// wait the service was asked for, plus timeout. Two exceptions, both at most twice the
// timeout: the call that sends a batch stays for it, and a Put whose batch is in flight
// waits for its answer (batcher).
type Cache struct {
	client  cachev1connect.CacheServiceClient
	timeout time.Duration
	lookups *batcher[*cachev1.LookupRequest, *cachev1.LookupResponse]
	puts    *batcher[*cachev1.PutRequest, *cachev1.PutResponse]
}

var _ conversation.Cache = (*Cache)(nil)

// NewCache wraps a generated client and registers its batchers' metric with reg.
func NewCache(client cachev1connect.CacheServiceClient, timeout time.Duration, reg prometheus.Registerer) (*Cache, error) {
	sizes := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "parley_router_cache_requests_per_call",
		Help: "Requests each call to the cache service carried, by op: 1 alone, more in a batch " +
			"(requests that queued behind a call of their op in flight).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
	}, []string{"op"})
	if err := reg.Register(sizes); err != nil {
		return nil, fmt.Errorf("register cache client metrics: %w", err)
	}
	c := &Cache{client: client, timeout: timeout}
	c.lookups = newLookupBatcher(client, timeout, c.releaseAbandoned, sizes.WithLabelValues("lookup"))
	c.puts = newPutBatcher(client, timeout, sizes.WithLabelValues("put"))
	return c, nil
}

// lookupClient and putClient are what the batchers need of the cache service's client.
type lookupClient interface {
	Lookup(ctx context.Context, req *cachev1.LookupRequest) (*cachev1.LookupResponse, error)
	LookupBatch(ctx context.Context, req *cachev1.LookupBatchRequest) (*cachev1.LookupBatchResponse, error)
}

type putClient interface {
	Put(ctx context.Context, req *cachev1.PutRequest) (*cachev1.PutResponse, error)
	PutBatch(ctx context.Context, req *cachev1.PutBatchRequest) (*cachev1.PutBatchResponse, error)
}

// newLookupBatcher batches lookups into LookupBatch calls. left gives back the lease a
// batch granted to a caller that had gone, so that no one waits for it to expire.
func newLookupBatcher(client lookupClient, timeout time.Duration, release func(*cachev1.LookupRequest, uint64), sizes prometheus.Observer) *batcher[*cachev1.LookupRequest, *cachev1.LookupResponse] {
	return &batcher[*cachev1.LookupRequest, *cachev1.LookupResponse]{
		alone: client.Lookup,
		many: func(ctx context.Context, reqs []*cachev1.LookupRequest) ([]*cachev1.LookupResponse, []error, error) {
			res, err := client.LookupBatch(ctx, &cachev1.LookupBatchRequest{Lookups: reqs})
			if err != nil {
				return nil, nil, err
			}
			out, errs := make([]*cachev1.LookupResponse, len(res.GetResults())), make([]error, len(res.GetResults()))
			for i, r := range res.GetResults() {
				out[i], errs[i] = r.GetResponse(), batchError(r.GetError())
			}
			return out, errs, nil
		},
		left: func(req *cachev1.LookupRequest, res *cachev1.LookupResponse) {
			if res.GetOutcome() == cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED {
				release(req, res.GetLease())
			}
		},
		timeout: timeout,
		sizes:   sizes,
	}
}

// maxPutBatchBytes bounds the values of one PutBatch together: the default largest entry
// (CACHE_MAX_ENTRY_BYTES), well under the cache's RPC_MAX_MESSAGE_BYTES. A larger value
// goes alone.
const maxPutBatchBytes = 1 << 20

// newPutBatcher batches Puts into PutBatch calls of at most maxPutBatchBytes of values.
func newPutBatcher(client putClient, timeout time.Duration, sizes prometheus.Observer) *batcher[*cachev1.PutRequest, *cachev1.PutResponse] {
	return &batcher[*cachev1.PutRequest, *cachev1.PutResponse]{
		alone: client.Put,
		many: func(ctx context.Context, reqs []*cachev1.PutRequest) ([]*cachev1.PutResponse, []error, error) {
			res, err := client.PutBatch(ctx, &cachev1.PutBatchRequest{Puts: reqs})
			if err != nil {
				return nil, nil, err
			}
			out, errs := make([]*cachev1.PutResponse, len(res.GetResults())), make([]error, len(res.GetResults()))
			for i, r := range res.GetResults() {
				out[i], errs[i] = &cachev1.PutResponse{}, batchError(r.GetError())
			}
			return out, errs, nil
		},
		weight:       func(r *cachev1.PutRequest) int { return len(r.GetValue()) },
		maxWeight:    maxPutBatchBytes,
		timeout:      timeout,
		sizes:        sizes,
		stayWhenSent: true,
	}
}

// batchError is the error a batch answered for one of its calls; nil for none.
func batchError(e *cachev1.BatchError) error {
	if e == nil {
		return nil
	}
	return connect.NewError(connect.Code(e.GetCode()), errors.New(e.GetMessage()))
}

// releaseAbandoned ends a lease a batch granted to a lookup whose caller had gone.
func (c *Cache) releaseAbandoned(req *cachev1.LookupRequest, lease uint64) {
	id := conversation.CacheID{Tenant: req.GetTenant(), Component: req.GetComponent(), Hash: req.GetKey()}
	go func() { _ = c.Release(context.Background(), id, lease) }() // best effort: the lease expires anyway
}

// Lookup finds the entry of id, or takes its lease for leaseTTL (0: the cache's maximum).
// Lookups made while another is in flight go to the cache together (batcher); the
// timeout bounds the wait for that too.
func (c *Cache) Lookup(ctx context.Context, id conversation.CacheID, leaseTTL time.Duration) (conversation.CacheLookup, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req := &cachev1.LookupRequest{Key: id.Hash, Tenant: id.Tenant, Component: id.Component}
	if leaseTTL > 0 {
		req.LeaseTtl = durationpb.New(leaseTTL)
	}
	done := crossing.Track(ctx, crossing.CacheLookup)
	res, err := c.lookups.do(ctx, req)
	done()
	if err != nil {
		return conversation.CacheLookup{}, fmt.Errorf("cache lookup: %w", err)
	}
	switch res.GetOutcome() {
	case cachev1.LookupOutcome_LOOKUP_OUTCOME_HIT:
		return conversation.CacheLookup{Found: true, Value: res.GetValue()}, nil
	case cachev1.LookupOutcome_LOOKUP_OUTCOME_HIT_NOT_SENT:
		// A hit whose value did not fit in its batch's answer: fetch it alone. Gone since
		// (expired or purged), it is a miss without a lease.
		done := crossing.Track(ctx, crossing.CacheLookup)
		got, err := c.client.Get(ctx, &cachev1.GetRequest{Key: id.Hash, Tenant: id.Tenant, Component: id.Component})
		done()
		if err != nil {
			return conversation.CacheLookup{}, fmt.Errorf("cache get: %w", err)
		}
		return conversation.CacheLookup{Found: got.GetFound(), Value: got.GetValue()}, nil
	case cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED:
		return conversation.CacheLookup{Lease: res.GetLease(), LeaseRemaining: res.GetLeaseRemaining().AsDuration()}, nil
	case cachev1.LookupOutcome_LOOKUP_OUTCOME_BUSY:
		return conversation.CacheLookup{Busy: true, LeaseRemaining: res.GetLeaseRemaining().AsDuration()}, nil
	case cachev1.LookupOutcome_LOOKUP_OUTCOME_MISS:
		return conversation.CacheLookup{}, nil
	}
	return conversation.CacheLookup{}, fmt.Errorf("cache lookup: unknown outcome %v", res.GetOutcome())
}

// Wait waits at most maxWait for the value of the lease holder of id.
func (c *Cache) Wait(ctx context.Context, id conversation.CacheID, maxWait time.Duration) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, maxWait+c.timeout)
	defer cancel()
	done := crossing.Track(ctx, crossing.CacheWait)
	res, err := c.client.Wait(ctx, &cachev1.WaitRequest{
		Key: id.Hash, Tenant: id.Tenant, Component: id.Component, MaxWait: durationpb.New(maxWait),
	})
	done()
	if err != nil {
		return nil, false, fmt.Errorf("cache wait: %w", err)
	}
	return res.GetValue(), res.GetFound(), nil
}

// Put stores value under id for ttl and ends lease. It runs even when the caller has
// gone: the answer is paid for, and waiters of other requests want it. Puts made while
// another is in flight go to the cache together (batcher).
func (c *Cache) Put(ctx context.Context, id conversation.CacheID, value []byte, ttl time.Duration, lease uint64) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	done := crossing.Track(ctx, crossing.CachePut)
	_, err := c.puts.do(ctx, &cachev1.PutRequest{
		Key: id.Hash, Tenant: id.Tenant, Component: id.Component, Value: value, Ttl: durationpb.New(ttl), Lease: lease,
	})
	done()
	if err != nil {
		return fmt.Errorf("cache put: %w", err)
	}
	return nil
}

// Release ends lease on id without a value. Like Put, it runs even when the caller
// has gone, so that waiters need not wait for the lease to expire.
func (c *Cache) Release(ctx context.Context, id conversation.CacheID, lease uint64) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	done := crossing.Track(ctx, crossing.CacheRelease)
	_, err := c.client.Release(ctx, &cachev1.ReleaseRequest{Key: id.Hash, Tenant: id.Tenant, Component: id.Component, Lease: lease})
	done()
	if err != nil {
		return fmt.Errorf("cache release: %w", err)
	}
	return nil
}
