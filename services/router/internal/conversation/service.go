package conversation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// Options tune the Service.
type Options struct {
	// AuditRequired fails a call whose audit event cannot be stored.
	AuditRequired bool
	// AuditScrub stores scrubbed text in the audit log even where the caller did not ask
	// for scrubbing.
	AuditScrub bool
}

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
}

type serviceMetrics struct {
	conversations  *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	cacheFallbacks *prometheus.CounterVec
	auditFailures  prometheus.Counter
	auditRedacted  prometheus.Counter
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
			Help: "Cache calls that failed; the conversation went on without the cache.",
		}, []string{"op"}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_router_audit_publish_failures_total",
			Help: "Audit events that could not be stored in the audit stream.",
		}),
		auditRedacted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_router_audit_redacted_total",
			Help: "Audit records whose texts were fully redacted because the scrubber was unavailable.",
		}),
	}
	for _, c := range []prometheus.Collector{m.conversations, m.duration, m.cacheFallbacks, m.auditFailures, m.auditRedacted} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metric: %w", err)
		}
	}
	return &Service{
		components: components, scrubber: scrubber, cache: cache, dispatcher: dispatcher, audit: audit,
		opts: opts, logger: logger, m: m,
	}, nil
}

// Lookup resolves a component by name.
func (s *Service) Lookup(name string) (Component, bool) { return s.components.Lookup(name) }

// Converse runs req. Errors are the domain errors of this package, or ctx's error.
func (s *Service) Converse(ctx context.Context, req Request) (*Result, error) {
	p := req.Provider
	comp, ok := s.components.Lookup(p.GetComponent())
	if !ok {
		return nil, ErrComponentNotFound
	}
	start := time.Now()
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("request id: %w", err)
	}
	p.RequestId = id.String()
	p.Tenant = DefaultTenant
	if dl, ok := ctx.Deadline(); ok {
		p.Deadline = timestamppb.New(dl)
	}
	rec := &record{
		ev: &auditv1.ConversationEvent{
			RequestId: p.RequestId, Tenant: p.Tenant, Api: req.API, Component: comp.Name,
			Provider: comp.Type, Model: comp.Model, ContextId: req.ContextID, CreatedAt: timestamppb.New(start),
		},
		findings: map[string]int64{},
	}

	res, err := s.run(ctx, req, comp, rec)
	rec.ev.Latency = durationpb.New(time.Since(start))
	if err != nil {
		rec.ev.Status = auditv1.Status_STATUS_ERROR
		rec.ev.ErrorCode = ErrorCode(req.API, err)
		rec.ev.ErrorMessage = err.Error()
	} else {
		rec.ev.Status = auditv1.Status_STATUS_OK
	}
	if len(rec.findings) > 0 {
		rec.ev.PiiFindings = rec.findings
	}
	if aerr := s.record(ctx, rec); aerr != nil && err == nil {
		err = aerr
		res = nil
	}
	s.observe(req.API, comp.Name, start, res, err, comp.CacheTTL > 0 && !req.BypassCache)
	return res, err
}

// record carries what the audit event needs while a conversation runs.
type record struct {
	ev        *auditv1.ConversationEvent
	findings  map[string]int64
	auditReq  *providerv1.Request
	auditResp *providerv1.Response
}

func (s *Service) run(ctx context.Context, req Request, comp Component, rec *record) (*Result, error) {
	p := req.Provider
	if err := s.scrubInputs(ctx, req, rec); err != nil {
		return nil, err
	}

	var key string
	if comp.CacheTTL > 0 && !req.BypassCache {
		key = CacheKey(comp, p)
	}
	var resp *providerv1.Response
	hit := false
	if key != "" {
		b, found, err := s.cache.Get(ctx, key)
		switch {
		case err != nil:
			s.m.cacheFallbacks.WithLabelValues("get").Inc()
			s.logger.WarnContext(ctx, "cache get failed, calling the provider", "component", comp.Name, "err", err)
		case found:
			cached := &providerv1.Response{}
			if uerr := proto.Unmarshal(b, cached); uerr != nil {
				s.m.cacheFallbacks.WithLabelValues("decode").Inc()
				s.logger.WarnContext(ctx, "cache entry undecodable, calling the provider", "component", comp.Name, "err", uerr)
			} else {
				resp, hit = cached, true
			}
		}
	}
	if resp == nil {
		d, err := s.dispatcher.Dispatch(ctx, p)
		if err != nil {
			return nil, err
		}
		resp = d.Response
		rec.ev.Attempts = int32(d.Attempts) //nolint:gosec // attempts are a handful
		rec.ev.WorkerId = resp.GetWorkerId()
		rec.ev.ProviderLatency = resp.GetProviderLatency()
		if key != "" && Cacheable(resp) {
			if b, err := proto.Marshal(resp); err == nil {
				if err := s.cache.Put(ctx, key, b, comp.CacheTTL); err != nil {
					s.m.cacheFallbacks.WithLabelValues("put").Inc()
					s.logger.WarnContext(ctx, "cache put failed", "component", comp.Name, "err", err)
				}
			}
		}
	}
	rec.ev.CacheHit = hit
	if err := s.scrubOutputs(ctx, req, resp, rec); err != nil {
		return nil, err
	}
	fillOutcome(rec.ev, resp)
	return &Result{RequestID: p.GetRequestId(), Response: resp, CacheHit: hit}, nil
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

// CacheKey is the hex SHA-256 over the tenant, the component, its model and every
// output-affecting field of the request; request id, deadline and tenant field are
// left out, and deterministic marshalling makes map order irrelevant.
func CacheKey(comp Component, p *providerv1.Request) string {
	keyed := &providerv1.Request{
		Messages:             p.GetMessages(),
		Tools:                p.GetTools(),
		ToolChoice:           p.GetToolChoice(),
		Temperature:          p.GetTemperature(),
		MaxTokens:            p.MaxTokens,
		Stop:                 p.GetStop(),
		ResponseFormat:       p.GetResponseFormat(),
		PromptCacheRetention: p.GetPromptCacheRetention(),
		Metadata:             p.GetMetadata(),
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(keyed) // in-memory messages always marshal
	h := sha256.New()
	for _, part := range []string{"parley-cache-v1", p.GetTenant(), comp.Name, comp.Type, comp.Model} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Service) record(ctx context.Context, rec *record) error {
	ev := rec.ev
	var err error
	if rec.auditReq != nil {
		ev.RequestJson, err = protojson.Marshal(rec.auditReq)
	}
	if err == nil && rec.auditResp != nil {
		ev.ResponseJson, err = protojson.Marshal(rec.auditResp)
	}
	if err == nil {
		err = s.audit.Record(ctx, ev)
	}
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

func (s *Service) observe(api auditv1.Api, component string, start time.Time, res *Result, err error, cacheOn bool) {
	status, cache := "ok", "off"
	if err != nil {
		status = "error"
	}
	if cacheOn {
		cache = "miss"
		if res != nil && res.CacheHit {
			cache = "hit"
		}
	}
	apiName := strings.ToLower(strings.TrimPrefix(api.String(), "API_"))
	s.m.conversations.WithLabelValues(apiName, component, status, cache).Inc()
	s.m.duration.WithLabelValues(apiName, component).Observe(time.Since(start).Seconds())
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

// ErrorCode is the code recorded in the audit log for err: Dapr's error codes for the
// Dapr APIs, Connect code names for the native API.
func ErrorCode(api auditv1.Api, err error) string {
	dapr := api == auditv1.Api_API_ALPHA1 || api == auditv1.Api_API_ALPHA2
	var pe *ProviderError
	switch {
	case errors.Is(err, ErrComponentNotFound):
		if dapr {
			return "ERR_CONVERSATION_NOT_FOUND"
		}
		return "not_found"
	case dapr:
		return "ERR_CONVERSATION_INVOKE"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &pe) && pe.Code == providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
		return "invalid_argument"
	case errors.Is(err, ErrNoWorker), errors.Is(err, ErrWorkerLost), errors.As(err, &pe):
		return "unavailable"
	default:
		return "internal"
	}
}
