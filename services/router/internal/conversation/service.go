package conversation

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/seal"
	"github.com/parleyhq/parley/libs/warm"
	"github.com/parleyhq/parley/services/router/internal/crossing"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

// Options tune the Service.
type Options struct {
	// AuditRequired fails a call whose audit event cannot be stored.
	AuditRequired bool
	// AuditScrub stores scrubbed text in the audit log even where the caller did not ask
	// for scrubbing.
	AuditScrub bool
	// MaxTexts refuses a request with more texts (the scrubber's limit per call); 0: no limit.
	MaxTexts int
	// Background bounds the cache writes (Put, Release) running after replies; when
	// that many run, the next one runs before its reply instead. 0: DefaultBackground.
	Background int
	// AuditScrubMemoBytes bounds the memo of the scrubber's answers for audit copies
	// (scrubMemo); 0 turns it off. Unused with AuditSealer (no scrub for audit copies).
	AuditScrubMemoBytes int64
	// AuditSealer, with AuditScrub, seals the texts that only the audit copy needs
	// scrubbed to the audit service, which scrubs them (docs/security.md, "The sealed
	// audit copy"), instead of calling the scrubber for them; nil: the router scrubs
	// them itself.
	AuditSealer AuditSealer
	// Tracer records a span per conversation; nil (tracing off) records none.
	Tracer trace.Tracer
	// AppID and Namespace label daprd's conversation metrics (app_id, namespace).
	AppID, Namespace string
}

// auditScrubMemoTTL is how long the scrubber's answer for an audit copy's text is
// reused.
const auditScrubMemoTTL = 10 * time.Minute

// DefaultBackground is Options.Background's default.
const DefaultBackground = 256

// Service runs conversations.
type Service struct {
	components Components
	scrubber   Scrubber
	cache      Cache
	dispatcher Dispatcher
	audit      AuditLog
	opts       Options
	logger     *slog.Logger
	m          serviceMetrics
	// slots bounds the background cache writes; bg counts those in flight; writers runs
	// them.
	slots   chan struct{}
	writers *warm.Pool
	bg      sync.WaitGroup
	memo    *scrubMemo
}

type serviceMetrics struct {
	conversations  *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	cacheFallbacks *prometheus.CounterVec
	auditFailures  prometheus.Counter
	fallbacks      *prometheus.CounterVec
	auditRedacted  prometheus.Counter
	auditSealed    prometheus.Counter
	crossings      *prometheus.CounterVec
	sequential     *prometheus.HistogramVec
	background     *prometheus.CounterVec
	memo           *prometheus.CounterVec
	// The series of background and memo the hot path counts, resolved once.
	writeBackground, writeInline, memoHit, memoMiss prometheus.Counter
	genAI                                           *genAIMetrics
	// sequentialBy and crossingsBy are sequential's and crossings' series, resolved once;
	// series, those of each API and component.
	sequentialBy map[string]prometheus.Observer
	crossingsBy  map[crossing.Kind]prometheus.Counter
	series       *seriesCache
}

// New builds a Service and registers its metrics.
func New(components Components, scrubber Scrubber, cache Cache, dispatcher Dispatcher, audit AuditLog,
	opts Options, logger *slog.Logger, reg prometheus.Registerer,
) (*Service, error) {
	m := serviceMetrics{
		conversations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_conversations_total",
			Help: "Conversations handled, by API, component, status (ok, error) and cache (hit, miss, off).",
		}, []string{"api", "component", "status", "cache"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_router_conversation_duration_seconds",
			Help:    "Time from request to answer inside the router, by API and component.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"api", "component"}),
		cacheFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_cache_errors_total",
			Help: "Cache calls that failed, by op (lookup, wait, decode, put, release); the conversation went on without the cache.",
		}, []string{"op"}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_router_audit_publish_failures_total",
			Help: "Audit events that could not be stored in the audit stream.",
		}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_fallbacks_total",
			Help: "Requests sent to a fallback component, by primary and fallback.",
		}, []string{"component", "fallback"}),
		auditRedacted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_router_audit_redacted_total",
			Help: "Audit records whose texts were fully redacted because the scrubber was unavailable (or the copy could not be sealed).",
		}),
		auditSealed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_router_audit_sealed_total",
			Help: "Audit events whose copy was sealed to the audit service for it to scrub, instead of a scrubber call by the router.",
		}),
		crossings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_crossings_total",
			Help: "Calls to other processes made before answering a conversation, by kind (scrub, cache_lookup, cache_wait, cache_put, cache_release, dispatch, audit_publish).",
		}, []string{"kind"}),
		sequential: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_router_sequential_crossings",
			Help:    "Calls to other processes a conversation waited for one after another, by path (hit, miss, off: cache off or bypassed, error); docs/architecture.md has the budget.",
			Buckets: prometheus.LinearBuckets(0, 1, 13),
		}, []string{"path"}),
		background: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_cache_writes_total",
			Help: "Cache writes (Put, Release) after a dispatch, by how they ran: background (after the reply, not waited for) or inline (every background slot was busy).",
		}, []string{"mode"}),
		memo: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_router_audit_scrub_memo_total",
			Help: "Scrubber calls for audit copies alone, by result: hit (every text's answer remembered, no call) or miss (called).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.conversations, m.duration, m.cacheFallbacks, m.auditFailures, m.auditRedacted, m.auditSealed, m.fallbacks, m.crossings, m.sequential, m.background, m.memo} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metric: %w", err)
		}
	}
	for _, op := range []string{"lookup", "wait", "decode", "put", "release"} {
		m.cacheFallbacks.WithLabelValues(op)
	}
	m.crossingsBy = make(map[crossing.Kind]prometheus.Counter, len(crossing.Kinds))
	for _, k := range crossing.Kinds {
		m.crossingsBy[k] = m.crossings.WithLabelValues(string(k))
	}
	m.sequentialBy = make(map[string]prometheus.Observer, 4)
	for _, p := range []string{"hit", "miss", "off", "error"} {
		m.sequentialBy[p] = m.sequential.WithLabelValues(p)
	}
	m.series = &seriesCache{}
	m.memoHit, m.memoMiss = m.memo.WithLabelValues("hit"), m.memo.WithLabelValues("miss")
	var err error
	if m.genAI, err = newGenAIMetrics(reg, opts.AppID, opts.Namespace); err != nil {
		return nil, err
	}
	m.writeBackground, m.writeInline = m.background.WithLabelValues("background"), m.background.WithLabelValues("inline")
	if opts.Background <= 0 {
		opts.Background = DefaultBackground
	}
	if opts.AuditSealer != nil && opts.AuditScrub {
		opts.AuditScrubMemoBytes = 0 // no scrubber call is made for an audit copy alone
	}
	return &Service{
		components: components, scrubber: scrubber, cache: cache, dispatcher: dispatcher, audit: audit,
		opts: opts, logger: logger, m: m, slots: make(chan struct{}, opts.Background),
		writers: warm.New(opts.Background),
		memo:    newScrubMemo(opts.AuditScrubMemoBytes, auditScrubMemoTTL),
	}, nil
}

// Close waits for the cache writes still running after their replies, until ctx ends.
func (s *Service) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.bg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cache writes still running: %w", ctx.Err())
	}
}

// later runs a cache write (Put or Release) that changes no answer for this request
// without making the reply wait for it: it starts at once, so requests waiting on the
// lease get the value as promptly as before, on a context that keeps the request's
// values but neither its cancellation nor its crossing trace (the adapters bound each
// call with their own timeout; failures are counted by cacheFailed). When every slot
// is busy it runs inline: never lost, and the backlog stays bounded.
func (s *Service) later(ctx context.Context, write func(ctx context.Context)) {
	ctx = crossing.Detach(context.WithoutCancel(ctx))
	select {
	case s.slots <- struct{}{}:
	default:
		s.m.writeInline.Inc()
		write(ctx)
		return
	}
	s.m.writeBackground.Inc()
	s.bg.Add(1)
	// On a kept goroutine: one started per write spent 5 % of the router's CPU at a miss's
	// c=16 in growing its stack through the Put's batcher and RPC client (libs/warm).
	s.writers.Go(warm.Func{F: func() { write(ctx) }, Finish: func() {
		<-s.slots
		s.bg.Done()
	}})
}

// Lookup resolves a component by name.
func (s *Service) Lookup(name string) (Component, bool) { return s.components.Lookup(name) }

// Converse runs req. Errors are the domain errors of this package, or ctx's error.
func (s *Service) Converse(ctx context.Context, req Request) (*Result, error) {
	return s.converse(ctx, req, s.run)
}

// runner runs a validated conversation between its start and its audit record.
type runner func(ctx context.Context, req Request, comp Component, rec *record) (*Result, error)

// converse validates req, runs it with run and records it.
func (s *Service) converse(ctx context.Context, req Request, run runner) (*Result, error) {
	p := req.Provider
	comp, ok := s.components.Lookup(p.GetComponent())
	if !ok {
		return nil, ErrComponentNotFound
	}
	if err := s.validate(req); err != nil {
		return nil, err
	}
	start := time.Now()
	ctx, span := s.startSpan(ctx, comp)
	ctx, crossed := crossing.Start(ctx)
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("request id: %w", err)
	}
	p.RequestId = id.String()
	caller := tenant.From(ctx)
	p.Tenant = caller.Tenant
	if dl, ok := ctx.Deadline(); ok {
		p.Deadline = timestamppb.New(dl)
	}
	rec := &record{
		start: start,
		ev: &auditv1.ConversationEvent{
			RequestId: p.RequestId, Tenant: p.Tenant, KeyId: caller.KeyID, Api: req.API, Component: comp.Name,
			Provider: comp.Type, Model: comp.Model, ContextId: req.ContextID, CreatedAt: timestamppb.New(start),
			TraceId: traceID(ctx),
		},
		findings: map[string]int64{},
		tokenize: req.Tokenize,
	}

	res, err := run(ctx, req, comp, rec)
	caller.Settle(usedTokens(res, err))
	rec.ev.Latency = durationpb.New(time.Since(start))
	if err != nil {
		rec.ev.Status = auditv1.Status_STATUS_ERROR
		rec.ev.ErrorCode = errorCode(req, err)
		rec.ev.ErrorMessage = err.Error()
	} else {
		rec.ev.Status = auditv1.Status_STATUS_OK
	}
	// A request that failed before its output scrub still owes its audit copy's.
	s.scrubPendingInputs(ctx, req, rec)
	if len(rec.findings) > 0 {
		rec.ev.PiiFindings = rec.findings
	}
	if aerr := s.record(ctx, rec); aerr != nil && err == nil {
		err = aerr
		res = nil
	}
	endSpan(span, rec.ev, res, err)
	s.observe(req.API, comp, start, res, err, comp.CacheTTL > 0 && !req.BypassCache, crossed.End())
	return res, err
}

// usedTokens is what a request cost its caller in provider tokens: none for a cache hit
// or a failure (its estimate is returned to the caller's limits).
func usedTokens(res *Result, err error) int64 {
	if err != nil || res == nil || res.CacheHit {
		return 0
	}
	return int64(res.Response.GetUsage().GetTotalTokens()) //nolint:gosec // token counts are far below 2^63
}

// record carries what the audit event needs while a conversation runs.
type record struct {
	start    time.Time // the conversation's start, as its metrics measure it
	ev       *auditv1.ConversationEvent
	findings map[string]int64
	auditReq *providerv1.Request
	// inputPending: auditReq is the raw request, whose audit scrub is still to be made
	// (scrubInputs), in the request's scrubMode; with a sealer, by the audit service.
	inputPending bool
	auditResp    *providerv1.Response
	// outputPending (with a sealer only): auditResp holds output texts that the audit
	// service is to scrub.
	outputPending bool
	// tokenize: the request's scrubMode is ScrubTokenize.
	tokenize bool
}

// lookedUp is a conversation after its input scrub and its cache lookup (begin).
type lookedUp struct {
	tokens *tokenMap
	// cacheOn: the cache is read and written for this request, under id.
	cacheOn bool
	id      CacheID
	// cached is the cache's answer; nil on a miss, when lease (if not 0) is this
	// request's to Put or Release.
	cached *providerv1.Response
	lease  uint64
}

// begin scrubs req's inputs, checks its audit copy's size and looks it up in the cache:
// the steps every conversation, streamed or not, takes before a provider is asked.
func (s *Service) begin(ctx context.Context, req Request, comp Component, rec *record) (lookedUp, error) {
	p := req.Provider
	tokens, err := s.scrubInputs(ctx, req, rec)
	if err != nil {
		return lookedUp{}, err
	}
	if err := s.fitAudit(ctx, req, rec); err != nil {
		return lookedUp{}, err
	}
	l := lookedUp{tokens: tokens, cacheOn: comp.CacheTTL > 0 && !req.BypassCache}
	if l.cacheOn {
		l.id = CacheID{Tenant: p.GetTenant(), Component: comp.Name, Hash: CacheKey(comp, p)}
		l.cached, l.lease = s.cacheLookup(ctx, l.id)
	}
	rec.ev.CacheHit = l.cached != nil
	return l, nil
}

// dispatched records a dispatched answer in the audit record, writes it to the cache
// (storeAnswer) and returns it with the provider's time; on err, it ends the lease.
func (s *Service) dispatched(ctx context.Context, comp Component, rec *record, l lookedUp, d *Dispatched, used string, err error) (*providerv1.Response, time.Duration, error) {
	if err != nil {
		s.releaseLater(ctx, l.id, l.lease)
		return nil, 0, err
	}
	resp := d.Response
	rec.ev.WorkerId = resp.GetWorkerId()
	rec.ev.ProviderLatency = resp.GetProviderLatency()
	if l.cacheOn {
		s.storeAnswer(ctx, comp, l.id, l.lease, used, resp)
	}
	return resp, resp.GetProviderLatency().AsDuration(), nil
}

func (s *Service) run(ctx context.Context, req Request, comp Component, rec *record) (*Result, error) {
	p := req.Provider
	l, err := s.begin(ctx, req, comp, rec)
	if err != nil {
		return nil, err
	}
	tokens, resp, hit := l.tokens, l.cached, l.cached != nil
	var providerTime time.Duration
	if !hit {
		d, used, err := s.dispatch(ctx, p, comp, rec, s.dispatcher.Dispatch, nil)
		if resp, providerTime, err = s.dispatched(ctx, comp, rec, l, d, used, err); err != nil {
			return nil, err
		}
	}
	if err := s.scrubOutputs(ctx, req, resp, rec, tokens); err != nil {
		return nil, err
	}
	if tokens != nil && tokens.text != nil {
		// The audit record keeps the tokenized answer; the caller gets its values back.
		if rec.auditResp == resp {
			rec.auditResp, _ = proto.Clone(resp).(*providerv1.Response)
		}
		tokens.restoreResponse(resp)
	}
	fillOutcome(rec.ev, resp)
	return &Result{RequestID: p.GetRequestId(), Response: resp, CacheHit: hit, ProviderTime: providerTime}, nil
}

// storeAnswer writes a dispatched answer to the cache after the reply and ends the lease:
// only a cacheable answer of the primary component is stored (a fallback's answer comes
// from another model).
func (s *Service) storeAnswer(ctx context.Context, comp Component, id CacheID, lease uint64, used string, resp *providerv1.Response) {
	if used == comp.Name && Cacheable(resp) {
		// Encoded now: the answer is changed afterwards (output scrubbing, restored
		// tokens) while the write runs.
		b, err := proto.Marshal(resp)
		if err == nil {
			s.later(ctx, func(ctx context.Context) { s.cacheStore(ctx, id, comp.CacheTTL, b, lease) })
			return
		}
		s.cacheFailed(ctx, "put", id, err)
	}
	s.releaseLater(ctx, id, lease)
}

// leaseGrace is added to another caller's remaining lease when bounding a wait for
// it: JetStream expires leases on whole seconds.
const leaseGrace = time.Second

// cacheLookup returns the cached answer for id, waiting for it when another request
// (in any router) is computing it; or the lease this request must Put or Release; or
// neither, when the cache failed (counted) or the lease holder gave up.
func (s *Service) cacheLookup(ctx context.Context, id CacheID) (*providerv1.Response, uint64) {
	var leaseTTL time.Duration // 0: the cache's maximum
	if dl, ok := ctx.Deadline(); ok {
		leaseTTL = time.Until(dl)
	}
	lk, err := s.cache.Lookup(ctx, id, leaseTTL)
	if err != nil {
		s.cacheFailed(ctx, "lookup", id, err)
		return nil, 0
	}
	value := lk.Value
	switch {
	case lk.Found:
	case lk.Busy:
		wait := lk.LeaseRemaining + leaseGrace
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait <= 0 {
			return nil, 0
		}
		var found bool
		if value, found, err = s.cache.Wait(ctx, id, wait); err != nil {
			s.cacheFailed(ctx, "wait", id, err)
			return nil, 0
		}
		if !found {
			return nil, 0
		}
	default:
		return nil, lk.Lease
	}
	cached := &providerv1.Response{}
	if err := proto.Unmarshal(value, cached); err != nil {
		s.cacheFailed(ctx, "decode", id, err)
		return nil, lk.Lease
	}
	return cached, 0
}

// cacheStore stores an encoded cacheable answer and ends the lease. (An answer that
// may not be cached ends the lease without a value, so requests waiting for it go to
// the provider: cacheRelease.)
func (s *Service) cacheStore(ctx context.Context, id CacheID, ttl time.Duration, b []byte, lease uint64) {
	if err := s.cache.Put(ctx, id, b, ttl, lease); err != nil {
		s.cacheFailed(ctx, "put", id, err)
		s.cacheRelease(ctx, id, lease)
	}
}

// releaseLater ends a lease this request holds after the reply (later); nothing to do for
// lease 0.
func (s *Service) releaseLater(ctx context.Context, id CacheID, lease uint64) {
	if lease != 0 {
		s.later(ctx, func(ctx context.Context) { s.cacheRelease(ctx, id, lease) })
	}
}

// cacheRelease ends a lease this request holds (a no-op for lease 0).
func (s *Service) cacheRelease(ctx context.Context, id CacheID, lease uint64) {
	if lease == 0 {
		return
	}
	if err := s.cache.Release(ctx, id, lease); err != nil {
		s.cacheFailed(ctx, "release", id, err)
	}
}

// cacheFailed counts and logs a cache failure; the conversation goes on without the
// cache. The caller's own cancellation is not the cache's failure.
func (s *Service) cacheFailed(ctx context.Context, op string, id CacheID, err error) {
	if ctx.Err() != nil && op != "put" && op != "release" {
		return
	}
	s.m.cacheFallbacks.WithLabelValues(op).Inc()
	s.logger.WarnContext(ctx, "cache call failed, going on without the cache", "op", op, "component", id.Component, "err", err)
}

// dispatch sends p to comp's workers through call and, when they cannot answer, to comp's
// fallbacks in order, while fallbackAllowed (nil: always) says another try may still be
// made. It returns the answer and the component that gave it; the audit record gets the
// provider calls of every try and the fallbacks used.
func (s *Service) dispatch(ctx context.Context, p *providerv1.Request, comp Component, rec *record,
	call func(context.Context, *providerv1.Request) (*Dispatched, error), fallbackAllowed func() bool,
) (*Dispatched, string, error) {
	primary := p.GetComponent()
	defer func() { p.Component = primary }()
	attempts := 0
	try := func(name string) (*Dispatched, error) {
		p.Component = name
		d, err := call(ctx, p)
		if d != nil {
			attempts += d.Attempts
		} else {
			attempts++
		}
		rec.ev.Attempts = int32(attempts) //nolint:gosec // attempts are a handful
		return d, err
	}
	d, err := try(comp.Name)
	if err == nil || !fallbackWorthy(err) || (fallbackAllowed != nil && !fallbackAllowed()) {
		return d, comp.Name, err
	}
	for _, fb := range comp.Fallbacks {
		if ctx.Err() != nil {
			break
		}
		if _, ok := s.components.Lookup(fb); !ok {
			continue
		}
		rec.ev.Fallbacks = append(rec.ev.Fallbacks, fb)
		s.m.fallbacks.WithLabelValues(comp.Name, fb).Inc()
		fd, ferr := try(fb)
		if ferr == nil {
			return fd, fb, nil
		}
		if !fallbackWorthy(ferr) || (fallbackAllowed != nil && !fallbackAllowed()) {
			return nil, fb, ferr
		}
	}
	return nil, comp.Name, err
}

// fallbackWorthy reports whether another component might answer where this one failed:
// not for a request the provider rejected as invalid, nor when the caller has gone.
func fallbackWorthy(err error) bool {
	var pe *ProviderError
	switch {
	case errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, ErrNoWorker), errors.Is(err, ErrWorkerLost):
		return true
	case errors.As(err, &pe):
		return pe.Code == providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE ||
			pe.Code == providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED ||
			pe.Code == providerv1.ErrorCode_ERROR_CODE_INTERNAL
	}
	return false
}

// Cacheable reports whether a response may be cached: complete answers only.
func Cacheable(resp *providerv1.Response) bool {
	if len(resp.GetChoices()) == 0 {
		return false
	}
	for _, c := range resp.GetChoices() {
		if r := c.GetFinishReason(); r == "length" || r == "max_tokens" || r == "content_filter" {
			return false
		}
	}
	return true
}

// cacheKeyVersion starts every key's hash input. Bump it whenever the encoding below
// changes (TestCacheKeyGolden fails when it does), so old entries are never read with
// a new meaning.
const cacheKeyVersion = "parley-cache-v1"

// CacheKey is the hex SHA-256 of everything that shapes the answer (docs/cache.md):
// the tenant, the component's name, type and model, and every output-affecting field
// of the request after input scrubbing, encoded by deterministic protobuf marshalling
// (map entries, including the keys of JSON objects in tool parameters and the response
// format, in sorted order, so neither field order nor map order changes the key). The
// request id, the deadline and the component field (the component's name is hashed
// instead) are left out. TestCacheKeyCoversEveryField fails when a field is added to
// providerv1.Request without a decision here.
func CacheKey(comp Component, p *providerv1.Request) string {
	temperature := p.GetTemperature()
	if temperature == 0 { // -0 from a client is 0: both mean "provider default"
		temperature = 0
	}
	keyed := &providerv1.Request{
		Messages:             p.GetMessages(),
		Tools:                p.GetTools(),
		ToolChoice:           p.GetToolChoice(),
		Temperature:          temperature,
		MaxTokens:            p.MaxTokens,
		Stop:                 p.GetStop(),
		ResponseFormat:       p.GetResponseFormat(),
		PromptCacheRetention: p.GetPromptCacheRetention(),
		Metadata:             p.GetMetadata(),
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(keyed) // in-memory messages always marshal
	h := sha256.New()
	for _, part := range []string{cacheKeyVersion, p.GetTenant(), comp.Name, comp.Type, comp.Model} {
		// Length-prefixed, so no two different tuples share an encoding.
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(part)))])
		h.Write([]byte(part))
	}
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// fitAudit checks, before the provider is called, that the audit copy of the request
// takes at most half of the largest event the audit log accepts, leaving the other half
// for the answer: a request inside the limits is recorded, one outside them is refused
// with a clear error instead of failing on the audit publish after the provider call.
// The refused call is still recorded, without its request.
//
// A request whose audit scrub is pending is measured raw; when it takes more than half
// of its allowance, placeholders (which can be longer than what they replace) could
// push it over after the provider call, so its audit scrub is made now and the scrubbed
// copy measured, as for every request before. With a sealer the raw copy is what the
// event carries, sealed: its sealed size is measured (the scrubbed copy is stored by the
// audit service in PostgreSQL, not carried by NATS).
func (s *Service) fitAudit(ctx context.Context, req Request, rec *record) error {
	if rec.auditReq == nil {
		return nil
	}
	// The event carries the request as protobuf (the audit service encodes it as JSON),
	// so its protobuf size is what it takes of the NATS message.
	n := proto.Size(rec.auditReq)
	limit := s.audit.MaxEventBytes() / 2
	switch {
	case s.sealing():
		n += sealOverhead
	case rec.inputPending:
		if limit <= 0 || n <= limit/2 {
			return nil
		}
		s.scrubPendingInputs(ctx, req, rec)
		n = proto.Size(rec.auditReq)
	}
	if limit > 0 && n > limit {
		rec.auditReq, rec.inputPending = nil, false
		return invalid("the request takes %d bytes in the audit log, more than the %d bytes it may take (half of the NATS max_payload)", n, limit)
	}
	return nil
}

// sealOverhead bounds what sealing adds to an event beyond its request and response
// fields: the SealedCopy's enc (32 bytes) and nonce (12), the AES-GCM tag (16), the
// AuditCopy's flags and every field's tag and length (TestSealOverhead).
const sealOverhead = 96

func (s *Service) record(ctx context.Context, rec *record) error {
	ev := rec.ev
	// Sent as protobuf, encoded as JSON by the audit service off the reply's path;
	// Record encodes the event before it returns, so nothing changes them meanwhile.
	ev.Request, ev.Response = rec.auditReq, rec.auditResp
	if s.sealing() && (rec.inputPending || rec.outputPending) {
		s.seal(ctx, rec)
	}
	err := s.audit.Record(ctx, ev)
	if err == nil {
		return nil
	}
	s.m.auditFailures.Inc()
	if s.opts.AuditRequired {
		return &AuditError{Err: err}
	}
	s.logger.ErrorContext(ctx, "audit event lost (AUDIT_MODE=best-effort)", "request_id", ev.GetRequestId(), "err", err)
	return nil
}

// sealing reports whether texts only the audit copy needs scrubbed are sealed to the
// audit service instead of scrubbed here.
func (s *Service) sealing() bool { return s.opts.AuditScrub && s.opts.AuditSealer != nil }

// seal puts the audit copy, with texts the audit service is to scrub, in the event
// sealed to the audit service (additional data: the request id), leaving the event's
// request and response unset. When sealing fails, the texts left to scrub are redacted:
// raw text never leaves unsealed.
func (s *Service) seal(ctx context.Context, rec *record) {
	ev := rec.ev
	cp := &auditv1.AuditCopy{
		Request: rec.auditReq, Response: rec.auditResp,
		ScrubRequest: rec.inputPending, ScrubResponse: rec.outputPending, Tokenize: rec.tokenize,
	}
	msg, err := proto.Marshal(cp)
	var box seal.Box
	if err == nil {
		box, err = s.opts.AuditSealer.Seal(msg, []byte(ev.GetRequestId()))
	}
	if err != nil {
		if rec.inputPending && ev.Request != nil {
			ev.Request = redactRequest(ev.Request)
		}
		if rec.outputPending && ev.Response != nil {
			ev.Response = redactResponse(ev.Response)
		}
		s.m.auditRedacted.Inc()
		s.logger.ErrorContext(ctx, "audit copy not sealed, its texts redacted", "request_id", ev.GetRequestId(), "err", err)
		return
	}
	ev.Sealed = &auditv1.SealedCopy{Enc: box.Enc, Nonce: box.Nonce, Ciphertext: box.Ciphertext}
	ev.Request, ev.Response = nil, nil
	s.m.auditSealed.Inc()
}

func (s *Service) observe(api auditv1.Api, comp Component, start time.Time, res *Result, err error, cacheOn bool, crossed crossing.Summary) {
	elapsed := time.Since(start)
	series := s.m.series.get(&s.m, api, comp)
	status, cache, path := 0, cacheOff, "off"
	if err != nil {
		status = 1
	}
	if cacheOn {
		cache, path = cacheMiss, "miss"
		if res != nil && res.CacheHit {
			cache, path = cacheHitIdx, "hit"
		}
	}
	series.conversations[status][cache].Inc()
	series.duration.Observe(elapsed.Seconds())
	var providerTime time.Duration
	if res != nil {
		providerTime = res.ProviderTime
	}
	s.m.genAI.observe(series, err == nil, elapsed, providerTime, crossed)
	if err == nil && res != nil && res.TimeToFirstToken > 0 {
		s.m.genAI.observeStream(comp, elapsed, res.TimeToFirstToken, res.CacheHit, res.Response.GetUsage().GetCompletionTokens())
	}
	if err != nil {
		path = "error"
	}
	s.m.sequentialBy[path].Observe(float64(crossed.Sequential))
	for k, n := range crossed.Kinds {
		if c := s.m.crossingsBy[k]; c != nil {
			c.Add(float64(n))
		} else {
			s.m.crossings.WithLabelValues(string(k)).Add(float64(n))
		}
	}
}

func fillOutcome(ev *auditv1.ConversationEvent, resp *providerv1.Response) {
	if m := resp.GetModel(); m != "" {
		ev.Model = m
	}
	if cs := resp.GetChoices(); len(cs) > 0 {
		ev.FinishReason = cs[0].GetFinishReason()
	}
	if u := resp.GetUsage(); u != nil {
		ev.Usage = &auditv1.TokenUsage{
			PromptTokens: u.GetPromptTokens(), CompletionTokens: u.GetCompletionTokens(), TotalTokens: u.GetTotalTokens(),
			CachedTokens: u.GetPromptCachedTokens(), ReasoningTokens: u.GetCompletionReasoningTokens(),
		}
	}
}

// errorCode is the code recorded in the audit log for err: the adapter's name for it, or
// else its Kind.
func errorCode(req Request, err error) string {
	if req.ErrorCode != nil {
		return req.ErrorCode(err)
	}
	return KindOf(err).String()
}
