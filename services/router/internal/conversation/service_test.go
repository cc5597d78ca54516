package conversation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// The neighbours below are in-memory stand-ins for the unit tier; the real services are
// exercised end to end in integration/.

type components map[string]Component

func (c components) Lookup(name string) (Component, bool) { comp, ok := c[name]; return comp, ok }

// upperScrubber replaces "secret" with <SECRET>, or in tokenize mode with <SECRET_n> (one
// token per value, here always <SECRET_1>, continuing the mapping it is given; "email"
// gets <EMAIL_n> the same way), or fails when err is set. It records every call.
type upperScrubber struct {
	err   error
	mu    *sync.Mutex
	calls *[]ScrubCall
}

func (s upperScrubber) Scrub(_ context.Context, call ScrubCall) (ScrubOutcome, error) {
	if s.calls != nil {
		s.mu.Lock()
		*s.calls = append(*s.calls, call)
		s.mu.Unlock()
	}
	if s.err != nil {
		return ScrubOutcome{}, s.err
	}
	res := ScrubOutcome{Results: make([]Scrubbed, len(call.Texts))}
	tokens := slices.Clone(call.Tokens)
	tokenFor := func(entity, value string) string {
		n := 0
		for _, t := range tokens {
			if t.Value == value {
				return t.Token
			}
			if t.Entity == entity {
				n++
			}
		}
		tok := fmt.Sprintf("<%s_%d>", entity, n+1)
		tokens = append(tokens, Token{Token: tok, Entity: entity, Value: value})
		return tok
	}
	for i, t := range call.Texts {
		out := t
		for _, e := range []struct{ value, entity string }{{"secret", "SECRET"}, {"email", "EMAIL"}} {
			if e.entity == "EMAIL" && call.Mode != ScrubTokenize {
				continue
			}
			repl := "<" + e.entity + ">"
			if call.Mode == ScrubTokenize && strings.Contains(out, e.value) {
				repl = tokenFor(e.entity, e.value)
			}
			for range strings.Count(out, e.value) {
				res.Results[i].Findings = append(res.Results[i].Findings, Finding{Entity: e.entity})
			}
			out = strings.ReplaceAll(out, e.value, repl)
		}
		res.Results[i].Text = out
	}
	if call.Mode == ScrubTokenize {
		res.Tokens = tokens
	}
	return res, nil
}

// memCache is the lease protocol in memory: an entry is a hit, a key with a lease is
// busy (Wait then answers with waitValue/waitFound/waitErr), any other key gets a new
// lease. Each error field fails its call.
type memCache struct {
	mu                                     sync.Mutex
	m                                      map[string][]byte
	leases                                 map[string]uint64
	next                                   uint64
	lookupErr, waitErr, putErr, releaseErr error
	waitValue                              []byte
	waitFound                              bool
	lookups, waits                         int
	leaseTTLs, maxWaits                    []time.Duration
	puts, releases                         []uint64 // the lease each named
	ids                                    []CacheID
}

func newMemCache(err error) *memCache {
	return &memCache{m: map[string][]byte{}, leases: map[string]uint64{}, lookupErr: err, waitErr: err, putErr: err, releaseErr: err}
}

func (c *memCache) Lookup(_ context.Context, id CacheID, leaseTTL time.Duration) (CacheLookup, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lookups++
	c.ids = append(c.ids, id)
	c.leaseTTLs = append(c.leaseTTLs, leaseTTL)
	if c.lookupErr != nil {
		return CacheLookup{}, c.lookupErr
	}
	if b, ok := c.m[id.Hash]; ok {
		return CacheLookup{Found: true, Value: b}, nil
	}
	if c.leases[id.Hash] != 0 {
		return CacheLookup{Busy: true, LeaseRemaining: 2 * time.Second}, nil
	}
	c.next++
	c.leases[id.Hash] = c.next
	return CacheLookup{Lease: c.next, LeaseRemaining: leaseTTL}, nil
}

func (c *memCache) Wait(_ context.Context, _ CacheID, maxWait time.Duration) ([]byte, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits++
	c.maxWaits = append(c.maxWaits, maxWait)
	return c.waitValue, c.waitFound, c.waitErr
}

func (c *memCache) Put(_ context.Context, id CacheID, value []byte, _ time.Duration, lease uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.puts = append(c.puts, lease)
	if c.putErr != nil {
		return c.putErr
	}
	c.m[id.Hash] = value
	if lease != 0 && c.leases[id.Hash] == lease {
		delete(c.leases, id.Hash)
	}
	return nil
}

func (c *memCache) Release(_ context.Context, id CacheID, lease uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.releases = append(c.releases, lease)
	if c.releaseErr != nil {
		return c.releaseErr
	}
	if c.leases[id.Hash] == lease {
		delete(c.leases, id.Hash)
	}
	return nil
}

// echoProviderLatency is the provider latency echoDispatcher's worker reports.
const echoProviderLatency = 25 * time.Millisecond

// echoDispatcher answers with the joined texts it received.
type echoDispatcher struct {
	calls  int
	err    error
	finish string // "stop" when empty
}

func (d *echoDispatcher) Dispatch(_ context.Context, req *providerv1.Request) (*Dispatched, error) {
	d.calls++
	if d.err != nil {
		return nil, d.err
	}
	var texts []string
	for _, m := range req.GetMessages() {
		for _, p := range m.GetParts() {
			texts = append(texts, p.GetText())
		}
	}
	finish := d.finish
	if finish == "" {
		finish = "stop"
	}
	return &Dispatched{Attempts: 1, Response: &providerv1.Response{
		WorkerId:        "w1",
		ProviderLatency: durationpb.New(echoProviderLatency),
		Choices:         []*providerv1.Choice{{FinishReason: finish, Content: strings.Join(texts, "\n")}},
		Usage:           &providerv1.Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2},
	}}, nil
}

type memAudit struct {
	events []*auditv1.ConversationEvent
	err    error
	max    int
}

func (a *memAudit) MaxEventBytes() int { return a.max }

func (a *memAudit) Record(_ context.Context, ev *auditv1.ConversationEvent) error {
	if a.err != nil {
		return a.err
	}
	// As the audit service stores it: the request and response encoded as JSON; a copy,
	// as NATS carries one.
	ev, _ = proto.Clone(ev).(*auditv1.ConversationEvent)
	var err error
	if ev.Request != nil {
		if ev.RequestJson, err = protojson.Marshal(ev.Request); err != nil {
			return err
		}
	}
	if ev.Response != nil {
		if ev.ResponseJson, err = protojson.Marshal(ev.Response); err != nil {
			return err
		}
	}
	a.events = append(a.events, ev)
	return nil
}

type fixture struct {
	svc   *Service
	cache *memCache
	disp  *echoDispatcher
	audit *memAudit
	calls *[]ScrubCall
}

func newFixture(t *testing.T, scrubErr, cacheErr, auditErr error, opts Options) fixture {
	t.Helper()
	f := fixture{cache: newMemCache(cacheErr), disp: &echoDispatcher{}, audit: &memAudit{err: auditErr}}
	comps := components{"echo": {Name: "echo", Type: "conversation.echo", CacheTTL: time.Minute}, "nocache": {Name: "nocache", Type: "conversation.echo"}}
	f.calls = &[]ScrubCall{}
	svc, err := New(comps, upperScrubber{err: scrubErr, mu: &sync.Mutex{}, calls: f.calls}, f.cache, f.disp, f.audit, opts,
		slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	f.svc = svc
	return f
}

func request(component, text string, scrubIn, scrubOut bool) Request {
	return Request{
		API: auditv1.Api_API_ALPHA2,
		Provider: &providerv1.Request{Component: component, Messages: []*providerv1.Message{{
			Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: text}}},
		}}},
		ScrubInput:  []bool{scrubIn},
		ScrubOutput: scrubOut,
	}
}

func TestConverse(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name                          string
		scrubErr, cacheErr, auditErr  error
		opts                          Options
		component, text               string
		scrubIn, scrubOut             bool
		wantErr                       string
		wantContent, wantAuditRequest string
		wantHitSecond                 bool
	}{
		{name: "scrub inputs", opts: Options{AuditScrub: true}, component: "echo", text: "a secret", scrubIn: true, scrubOut: false,
			wantContent: "a <SECRET>", wantAuditRequest: "a <SECRET>", wantHitSecond: true},
		{name: "audit scrubs what the caller did not", opts: Options{AuditScrub: true}, component: "echo", text: "a secret", scrubIn: false, scrubOut: false,
			wantContent: "a secret", wantAuditRequest: "a <SECRET>", wantHitSecond: true},
		{name: "no audit scrub keeps text", component: "echo", text: "a secret", scrubIn: false, scrubOut: false,
			wantContent: "a secret", wantAuditRequest: "a secret", wantHitSecond: true},
		{name: "scrub outputs", opts: Options{AuditScrub: true}, component: "echo", text: "a secret", scrubIn: false, scrubOut: true,
			wantContent: "a <SECRET>", wantAuditRequest: "a <SECRET>", wantHitSecond: true},
		{name: "no ttl no cache", opts: Options{AuditScrub: true}, component: "nocache", text: "x", scrubIn: false, scrubOut: false,
			wantContent: "x", wantAuditRequest: "x"},
		{name: "cache down falls back to the provider", cacheErr: boom, component: "echo", text: "x", scrubIn: false, scrubOut: false,
			wantContent: "x", wantAuditRequest: "x"},
		{name: "scrubber down with scrubbing asked fails", scrubErr: boom, component: "echo", text: "a secret", scrubIn: true, scrubOut: false,
			wantErr: "scrub pii: boom", wantAuditRequest: redactedText},
		{name: "scrubber down for audit only redacts the record", scrubErr: boom, opts: Options{AuditScrub: true}, component: "echo", text: "a secret", scrubIn: false, scrubOut: false,
			wantContent: "a secret", wantAuditRequest: redactedText, wantHitSecond: true},
		{name: "audit down and required fails", auditErr: boom, opts: Options{AuditRequired: true}, component: "echo", text: "x", scrubIn: false, scrubOut: false,
			wantErr: "record audit event: boom"},
		{name: "audit down best effort answers", auditErr: boom, component: "echo", text: "x", scrubIn: false, scrubOut: false,
			wantContent: "x", wantHitSecond: true},
		{name: "unknown component", component: "nope", text: "x", scrubIn: false, scrubOut: false, wantErr: "component not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.scrubErr, tt.cacheErr, tt.auditErr, tt.opts)
			res, err := f.svc.Converse(t.Context(), request(tt.component, tt.text, tt.scrubIn, tt.scrubOut))
			f.svc.bg.Wait() // the cache write that follows the reply
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
				require.Equal(t, tt.wantContent, res.Response.GetChoices()[0].GetContent())
				require.False(t, res.CacheHit)
				require.NotEmpty(t, res.RequestID)
				require.Equal(t, echoProviderLatency, res.ProviderTime, "the worker's provider latency")
			}
			if tt.wantAuditRequest != "" {
				require.Len(t, f.audit.events, 1)
				require.Contains(t, string(f.audit.events[0].GetRequestJson()), tt.wantAuditRequest)
				if tt.wantAuditRequest != tt.text {
					require.NotContains(t, string(f.audit.events[0].GetRequestJson()), tt.text)
				}
			}
			if tt.wantErr != "" {
				return
			}
			res2, err := f.svc.Converse(t.Context(), request(tt.component, tt.text, tt.scrubIn, tt.scrubOut))
			require.NoError(t, err)
			require.Equal(t, tt.wantHitSecond, res2.CacheHit)
			require.Equal(t, tt.wantContent, res2.Response.GetChoices()[0].GetContent())
			if tt.wantHitSecond {
				require.Equal(t, 1, f.disp.calls, "a hit does not reach the provider")
				require.Zero(t, res2.ProviderTime, "a hit spends no provider time")
			} else {
				require.Equal(t, echoProviderLatency, res2.ProviderTime)
			}
		})
	}
}

func TestAuditEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil, nil, Options{AuditScrub: true})
	req := request("echo", "two secret secret", true, false)
	req.ContextID = "ctx"
	res, err := f.svc.Converse(t.Context(), req)
	require.NoError(t, err)
	require.Len(t, f.audit.events, 1)
	ev := f.audit.events[0]
	require.Equal(t, res.RequestID, ev.GetRequestId())
	require.Equal(t, DefaultTenant, ev.GetTenant())
	require.Equal(t, "echo", ev.GetComponent())
	require.Equal(t, "conversation.echo", ev.GetProvider())
	require.Equal(t, "ctx", ev.GetContextId())
	require.Equal(t, auditv1.Status_STATUS_OK, ev.GetStatus())
	require.Equal(t, "stop", ev.GetFinishReason())
	require.EqualValues(t, 2, ev.GetUsage().GetTotalTokens())
	require.EqualValues(t, 1, ev.GetAttempts())
	require.Equal(t, "w1", ev.GetWorkerId())
	// Two in the request; the provider got them scrubbed, so none come back.
	require.EqualValues(t, 2, ev.GetPiiFindings()["SECRET"])
	require.NotNil(t, ev.GetCreatedAt())
	require.Positive(t, ev.GetLatency().AsDuration())
}

func TestCacheable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		reason string
		want   bool
	}{{"stop", true}, {"tool_calls", true}, {"end_turn", true}, {"length", false}, {"max_tokens", false}, {"content_filter", false}}
	for _, tt := range tests {
		require.Equal(t, tt.want, Cacheable(&providerv1.Response{Choices: []*providerv1.Choice{{FinishReason: tt.reason}}}), tt.reason)
	}
	require.False(t, Cacheable(&providerv1.Response{}), "no choices")
}

func TestKindOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want Kind
	}{
		{ErrComponentNotFound, KindComponentNotFound},
		{fmt.Errorf("dispatch: %w", ErrNoWorker), KindNoWorker},
		{ErrWorkerLost, KindWorkerLost},
		{&ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Message: "bad"}, KindProvider},
		{&ScrubError{Err: errors.New("down")}, KindScrub},
		{&AuditError{Err: errors.New("down")}, KindAudit},
		// An audit publish whose acks did not come in time: the stream's failure, not the
		// caller's deadline.
		{&AuditError{Err: fmt.Errorf("publish audit event: %w", context.DeadlineExceeded)}, KindAudit},
		{context.DeadlineExceeded, KindDeadlineExceeded},
		{context.Canceled, KindCanceled},
		{&ScrubError{Err: context.Canceled}, KindCanceled},
		{errors.New("x"), KindInternal},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, KindOf(tt.err), tt.err.Error())
	}
	require.Equal(t, "no_worker", KindNoWorker.String())
	require.Equal(t, "kind(99)", Kind(99).String())
}

func TestAuditErrorCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		errorCode func(error) string
		want      string
	}{
		{"the adapter names the failure", func(err error) string { return "API_" + KindOf(err).String() }, "API_no_worker"},
		{"without the adapter, the kind", nil, "no_worker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil, nil, nil, Options{})
			f.disp.err = ErrNoWorker
			req := request("echo", "x", false, false)
			req.ErrorCode = tt.errorCode
			_, err := f.svc.Converse(t.Context(), req)
			require.ErrorIs(t, err, ErrNoWorker)
			require.Len(t, f.audit.events, 1)
			require.Equal(t, auditv1.Status_STATUS_ERROR, f.audit.events[0].GetStatus())
			require.Equal(t, tt.want, f.audit.events[0].GetErrorCode())
		})
	}
}
