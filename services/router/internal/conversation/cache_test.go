package conversation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

var keyComp = Component{Name: "echo", Type: "conversation.echo", Model: "m"}

// keyRequest is a request with every output-affecting field set.
func keyRequest(tb testing.TB) *providerv1.Request {
	tb.Helper()
	params, err := structpb.NewStruct(map[string]any{
		"type": "object", "properties": map[string]any{"a": map[string]any{"type": "string"}, "b": map[string]any{}},
	})
	require.NoError(tb, err)
	format, err := structpb.NewStruct(map[string]any{"type": "json_schema", "schema": map[string]any{"x": 1.0, "y": "z"}})
	require.NoError(tb, err)
	maxTokens := int64(10)
	return &providerv1.Request{
		RequestId: "id", Tenant: "default", Component: "echo",
		Messages: []*providerv1.Message{
			{Role: providerv1.Role_ROLE_SYSTEM, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "be brief"}}}},
			{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "hi"}}}},
			{Role: providerv1.Role_ROLE_ASSISTANT, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{Id: "1", Type: "function", Name: "f", Arguments: `{"a":1}`}}}}},
			{Role: providerv1.Role_ROLE_TOOL, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolResult{ToolResult: &providerv1.ToolResult{ToolCallId: "1", Name: "f", Content: "42"}}}}},
		},
		Tools:      []*providerv1.Tool{{Type: "function", Name: "f", Description: "d", Parameters: params}},
		ToolChoice: "auto", Temperature: 0.5, MaxTokens: &maxTokens, Stop: []string{"x"},
		ResponseFormat: format, PromptCacheRetention: durationpb.New(time.Hour),
		Metadata: map[string]string{"a": "1", "b": "2"},
	}
}

// keyedFields change the answer; each mutation changes one of them (or a part of one).
var keyedFields = map[string][]func(r *providerv1.Request){
	"messages": {
		func(r *providerv1.Request) { r.Messages[1].Parts[0].Kind = &providerv1.Part_Text{Text: "ho"} },
		func(r *providerv1.Request) { r.Messages[1].Role = providerv1.Role_ROLE_DEVELOPER },
		func(r *providerv1.Request) { r.Messages = r.Messages[1:] },
		func(r *providerv1.Request) { r.Messages[0], r.Messages[1] = r.Messages[1], r.Messages[0] },
		func(r *providerv1.Request) { r.Messages[2].Parts[0].GetToolCall().Arguments = `{"a":2}` },
		func(r *providerv1.Request) { r.Messages[2].Parts[0].GetToolCall().Name = "g" },
		func(r *providerv1.Request) { r.Messages[3].Parts[0].GetToolResult().Content = "43" },
		func(r *providerv1.Request) { r.Messages[3].Parts[0].GetToolResult().ToolCallId = "2" },
	},
	"tools": {
		func(r *providerv1.Request) { r.Tools[0].Name = "g" },
		func(r *providerv1.Request) { r.Tools[0].Description = "e" },
		func(r *providerv1.Request) { r.Tools[0].Type = "other" },
		func(r *providerv1.Request) { r.Tools[0].Parameters.Fields["type"] = structpb.NewStringValue("array") },
		func(r *providerv1.Request) {
			delete(r.Tools[0].Parameters.Fields["properties"].GetStructValue().Fields, "b")
		},
		func(r *providerv1.Request) { r.Tools = nil },
	},
	"tool_choice": {func(r *providerv1.Request) { r.ToolChoice = "none" }},
	"temperature": {func(r *providerv1.Request) { r.Temperature = 0.6 }, func(r *providerv1.Request) { r.Temperature = 0 }},
	"max_tokens":  {func(r *providerv1.Request) { v := int64(11); r.MaxTokens = &v }, func(r *providerv1.Request) { r.MaxTokens = nil }},
	"stop":        {func(r *providerv1.Request) { r.Stop = nil }, func(r *providerv1.Request) { r.Stop = []string{"y"} }},
	"response_format": {func(r *providerv1.Request) { r.ResponseFormat = nil }, func(r *providerv1.Request) {
		r.ResponseFormat.Fields["schema"].GetStructValue().Fields["x"] = structpb.NewNumberValue(2)
	}},
	"prompt_cache_retention": {func(r *providerv1.Request) { r.PromptCacheRetention = durationpb.New(time.Minute) }},
	"metadata":               {func(r *providerv1.Request) { r.Metadata["a"] = "3" }, func(r *providerv1.Request) { r.Metadata["c"] = "" }},
	"tenant":                 {func(r *providerv1.Request) { r.Tenant = "t2" }},
}

// unkeyedFields do not change the answer, or are keyed another way.
var unkeyedFields = map[string]func(r *providerv1.Request){
	"request_id": func(r *providerv1.Request) { r.RequestId = "other" },
	"deadline":   func(r *providerv1.Request) { r.Deadline = nil },
	// The component's name (with its type and model) is hashed from Component.
	"component": func(r *providerv1.Request) { r.Component = "ignored" },
	// Streamed or not, the answer is the same: a stream fills the cache a unary call reads.
	"stream":        func(r *providerv1.Request) { r.Stream = true },
	"stream_window": func(r *providerv1.Request) { r.StreamWindow = 7 },
}

// TestCacheKeyCoversEveryField fails when providerv1.Request gains a field nobody
// decided about: add it to CacheKey and keyedFields, or to unkeyedFields with a reason.
func TestCacheKeyCoversEveryField(t *testing.T) {
	t.Parallel()
	fields := (&providerv1.Request{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		name := string(fields.Get(i).Name())
		_, keyed := keyedFields[name]
		_, unkeyed := unkeyedFields[name]
		require.True(t, keyed != unkeyed, "providerv1.Request.%s: decide whether it shapes the answer", name)
	}
}

func TestCacheKeySensitivity(t *testing.T) {
	t.Parallel()
	key := CacheKey(keyComp, keyRequest(t))
	require.Len(t, key, 64)
	for name, mutations := range keyedFields {
		for i, mutate := range mutations {
			t.Run(fmt.Sprintf("%s/%d", name, i), func(t *testing.T) {
				t.Parallel()
				r := keyRequest(t)
				mutate(r)
				require.NotEqual(t, key, CacheKey(keyComp, r))
			})
		}
	}
	for name, mutate := range unkeyedFields {
		t.Run(name+" is not keyed", func(t *testing.T) {
			t.Parallel()
			r := keyRequest(t)
			mutate(r)
			require.Equal(t, key, CacheKey(keyComp, r))
		})
	}
	components := []Component{
		{Name: "echo2", Type: "conversation.echo", Model: "m"},
		{Name: "echo", Type: "conversation.openai", Model: "m"},
		{Name: "echo", Type: "conversation.echo", Model: "m2"},
		// Length-prefixed parts: moving bytes from one part to the next is another key.
		{Name: "ech", Type: "oconversation.echo", Model: "m"},
	}
	for _, comp := range components {
		require.NotEqual(t, key, CacheKey(comp, keyRequest(t)), "%+v", comp)
	}
}

// TestCacheKeyIgnoresOrder: neither the order of JSON object keys (in the request, the
// tool parameters or the response format) nor the order in which a map was filled
// changes the key.
func TestCacheKeyIgnoresOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b string // providerv1.Request in protojson
	}{
		{
			name: "tool parameters",
			a:    `{"tools":[{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string","enum":["x","y"]},"b":{"type":"integer"}},"required":["a"]}}]}`,
			b:    `{"tools":[{"parameters":{"required":["a"],"properties":{"b":{"type":"integer"},"a":{"enum":["x","y"],"type":"string"}},"type":"object"},"name":"f"}]}`,
		},
		{
			name: "response format",
			a:    `{"responseFormat":{"type":"json_schema","json_schema":{"name":"n","strict":true,"schema":{"p":{"q":1,"r":[1,2]}}}}}`,
			b:    `{"responseFormat":{"json_schema":{"schema":{"p":{"r":[1,2],"q":1}},"strict":true,"name":"n"},"type":"json_schema"}}`,
		},
		{
			name: "request fields and metadata",
			a:    `{"temperature":0.2,"metadata":{"k1":"v1","k2":"v2","k3":"v3","k4":"v4"},"toolChoice":"auto","messages":[{"role":"ROLE_USER","parts":[{"text":"hi"}]}]}`,
			b:    `{"messages":[{"parts":[{"text":"hi"}],"role":"ROLE_USER"}],"toolChoice":"auto","metadata":{"k4":"v4","k3":"v3","k2":"v2","k1":"v1"},"temperature":0.2}`,
		},
		{
			name: "negative zero temperature",
			a:    `{"temperature":0}`,
			b:    `{"temperature":-0}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var a, b providerv1.Request
			require.NoError(t, protojson.Unmarshal([]byte(tt.a), &a))
			require.NoError(t, protojson.Unmarshal([]byte(tt.b), &b))
			want := CacheKey(keyComp, &a)
			// Go randomises map iteration: repeat to give a non-deterministic encoding
			// every chance to show.
			for range 50 {
				require.Equal(t, want, CacheKey(keyComp, &b))
				require.Equal(t, want, CacheKey(keyComp, proto.CloneOf(&a)))
			}
		})
	}
}

// TestCacheKeyGolden pins the key of one request: it changes only when the encoding
// does, and then cacheKeyVersion must change with it so that entries written by older
// routers are never read with a new meaning.
func TestCacheKeyGolden(t *testing.T) {
	t.Parallel()
	require.Equal(t, "df44ec43b23d6ca25707df72a7b94937322efdd01f4b45f7bcdc5f10a2c7d70f", CacheKey(keyComp, keyRequest(t)),
		"the cache key encoding changed: bump cacheKeyVersion and update this value")
}

// cacheFixture is a Service over memCache with the cache-related metrics readable.
func cacheFixture(t *testing.T) (*Service, *memCache, *echoDispatcher) {
	t.Helper()
	f := newFixture(t, nil, nil, nil, Options{})
	return f.svc, f.cache, f.disp
}

func marshalled(t *testing.T, content string) []byte {
	t.Helper()
	b, err := proto.Marshal(&providerv1.Response{Choices: []*providerv1.Choice{{FinishReason: "stop", Content: content}}})
	require.NoError(t, err)
	return b
}

// TestCacheProtocol: how a conversation uses leases, and that no cache failure fails it.
func TestCacheProtocol(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name         string
		setup        func(t *testing.T, c *memCache, d *echoDispatcher)
		wantErr      error
		wantHit      bool
		wantContent  string
		wantCalls    int      // provider calls
		wantPuts     []uint64 // the lease each Put named
		wantReleases []uint64
		wantFailures map[string]float64 // parley_router_cache_errors_total{op}
	}{
		{
			name: "the lease holder stores the answer and ends its lease", wantContent: "x", wantCalls: 1, wantPuts: []uint64{1},
		},
		{
			name:    "a provider error ends the lease without a value",
			setup:   func(_ *testing.T, _ *memCache, d *echoDispatcher) { d.err = ErrNoWorker },
			wantErr: ErrNoWorker, wantCalls: 1, wantReleases: []uint64{1},
		},
		{
			name:        "a truncated answer is not cached and ends the lease",
			setup:       func(_ *testing.T, _ *memCache, d *echoDispatcher) { d.finish = "length" },
			wantContent: "x", wantCalls: 1, wantReleases: []uint64{1},
		},
		{
			name: "a busy key waits for the holder's answer",
			setup: func(t *testing.T, c *memCache, _ *echoDispatcher) {
				c.leases[cacheHash()] = 99
				c.waitValue, c.waitFound = marshalled(t, "from the holder"), true
			},
			wantHit: true, wantContent: "from the holder",
		},
		{
			name: "a busy key whose holder gave up asks the provider and stores without a lease",
			setup: func(_ *testing.T, c *memCache, _ *echoDispatcher) {
				c.leases[cacheHash()] = 99
			},
			wantContent: "x", wantCalls: 1, wantPuts: []uint64{0},
		},
		{
			name: "a failed wait asks the provider",
			setup: func(_ *testing.T, c *memCache, _ *echoDispatcher) {
				c.leases[cacheHash()] = 99
				c.waitErr = boom
			},
			wantContent: "x", wantCalls: 1, wantPuts: []uint64{0}, wantFailures: map[string]float64{"wait": 1},
		},
		{
			name:        "a failed lookup asks the provider and still tries to store",
			setup:       func(_ *testing.T, c *memCache, _ *echoDispatcher) { c.lookupErr = boom },
			wantContent: "x", wantCalls: 1, wantPuts: []uint64{0}, wantFailures: map[string]float64{"lookup": 1},
		},
		{
			name:        "a failed put ends the lease",
			setup:       func(_ *testing.T, c *memCache, _ *echoDispatcher) { c.putErr = boom },
			wantContent: "x", wantCalls: 1, wantPuts: []uint64{1}, wantReleases: []uint64{1}, wantFailures: map[string]float64{"put": 1},
		},
		{
			name: "a failed release is counted only",
			setup: func(_ *testing.T, c *memCache, d *echoDispatcher) {
				d.finish = "length"
				c.releaseErr = boom
			},
			wantContent: "x", wantCalls: 1, wantReleases: []uint64{1}, wantFailures: map[string]float64{"release": 1},
		},
		{
			name: "an undecodable entry is replaced",
			setup: func(_ *testing.T, c *memCache, _ *echoDispatcher) {
				c.m[cacheHash()] = []byte{0xff, 0xff}
			},
			wantContent: "x", wantCalls: 1, wantPuts: []uint64{0}, wantFailures: map[string]float64{"decode": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			svc, c, d := cacheFixture(t)
			if tt.setup != nil {
				tt.setup(t, c, d)
			}
			res, err := svc.Converse(t.Context(), cacheRequest())
			svc.bg.Wait() // the cache write that follows the reply
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
				require.Equal(t, tt.wantHit, res.CacheHit)
				require.Equal(t, tt.wantContent, res.Response.GetChoices()[0].GetContent())
			}
			require.Equal(t, tt.wantCalls, d.calls, "provider calls")
			require.Equal(t, tt.wantPuts, c.puts, "puts")
			require.Equal(t, tt.wantReleases, c.releases, "releases")
			for _, op := range []string{"lookup", "wait", "decode", "put", "release"} {
				require.InDelta(t, tt.wantFailures[op], testutil.ToFloat64(svc.m.cacheFallbacks.WithLabelValues(op)), 0, op)
			}
			require.Equal(t, []CacheID{{Tenant: DefaultTenant, Component: "echo", Hash: cacheHash()}}, c.ids)
		})
	}
}

func cacheRequest() Request { return request("echo", "x", false, false) }

// cacheHash is the key of cacheRequest as the Service computes it.
func cacheHash() string {
	p := cacheRequest().Provider
	p.Tenant = DefaultTenant
	return CacheKey(Component{Name: "echo", Type: "conversation.echo"}, p)
}

func TestCacheBounds(t *testing.T) {
	t.Parallel()
	svc, c, _ := cacheFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	_, err := svc.Converse(ctx, cacheRequest())
	require.NoError(t, err)
	svc.bg.Wait()
	require.Len(t, c.leaseTTLs, 1)
	require.Positive(t, c.leaseTTLs[0], "a lease lasts as long as the request may")
	require.LessOrEqual(t, c.leaseTTLs[0], time.Minute)

	// Another request of the same key while a lease is held waits no longer than the
	// lease can run (memCache says 2s are left), plus a second.
	c.mu.Lock()
	delete(c.m, c.ids[0].Hash)
	c.leases[c.ids[0].Hash] = 7
	c.mu.Unlock()
	_, err = svc.Converse(ctx, cacheRequest())
	require.NoError(t, err)
	require.Equal(t, []time.Duration{3 * time.Second}, c.maxWaits)

	// Without a deadline the cache picks the lease's length.
	_, err = svc.Converse(context.WithoutCancel(t.Context()), request("echo", "no deadline", false, false))
	require.NoError(t, err)
	require.Zero(t, c.leaseTTLs[len(c.leaseTTLs)-1])
}

func TestCacheOffTouchesNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  Request
	}{
		{"component without a ttl", request("nocache", "x", false, false)},
		{"request opts out", func() Request { r := cacheRequest(); r.BypassCache = true; return r }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			svc, c, d := cacheFixture(t)
			for range 2 {
				res, err := svc.Converse(t.Context(), tt.req)
				require.NoError(t, err)
				require.False(t, res.CacheHit)
			}
			require.Equal(t, 2, d.calls)
			require.Zero(t, c.lookups)
			require.Empty(t, c.puts)
		})
	}
}

func BenchmarkCacheKey(b *testing.B) {
	r := keyRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = CacheKey(keyComp, r)
	}
}

// BenchmarkConverseCacheHit is the router's hit path without the network: key,
// lookup, decode, audit record; with the router's default options (audit required,
// audit copies scrubbed, their scrubber answers remembered).
func BenchmarkConverseCacheHit(b *testing.B) {
	svc, err := New(components{"echo": {Name: "echo", Type: "conversation.echo", CacheTTL: time.Minute}},
		upperScrubber{}, newMemCache(nil), &echoDispatcher{}, encodingAudit{},
		Options{AuditRequired: true, AuditScrub: true, AuditScrubMemoBytes: 16 << 20},
		slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(b, err)
	if _, err := svc.Converse(b.Context(), cacheRequest()); err != nil {
		b.Fatal(err)
	}
	svc.bg.Wait()
	b.ReportAllocs()
	for b.Loop() {
		res, err := svc.Converse(b.Context(), cacheRequest())
		if err != nil || !res.CacheHit {
			b.Fatalf("hit=%v err=%v", res.CacheHit, err)
		}
	}
}

// encodingAudit encodes each event as the audit publisher does, and drops it.
type encodingAudit struct{}

func (encodingAudit) MaxEventBytes() int { return 8 << 20 }

func (encodingAudit) Record(_ context.Context, ev *auditv1.ConversationEvent) error {
	_, err := proto.Marshal(ev)
	return err
}

// gatedCache holds its first Put until open is closed.
type gatedCache struct {
	*memCache
	open    chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (c *gatedCache) Put(ctx context.Context, id CacheID, value []byte, ttl time.Duration, lease uint64) error {
	first := false
	c.once.Do(func() { first = true })
	if first {
		close(c.entered)
		<-c.open
	}
	return c.memCache.Put(ctx, id, value, ttl, lease)
}

// TestCacheWriteAfterReply: the reply does not wait for the cache Put, which still
// lands (and ends the lease) once the cache answers; when every background slot is busy
// the next write runs before its reply instead, and Close waits for the rest.
func TestCacheWriteAfterReply(t *testing.T) {
	t.Parallel()
	c := &gatedCache{memCache: newMemCache(nil), open: make(chan struct{}), entered: make(chan struct{})}
	reg := prometheus.NewRegistry()
	svc, err := New(components{"echo": {Name: "echo", Type: "conversation.echo", CacheTTL: time.Minute}},
		upperScrubber{}, c, &echoDispatcher{}, &memAudit{}, Options{Background: 1}, slog.New(slog.DiscardHandler), reg)
	require.NoError(t, err)

	res, err := svc.Converse(t.Context(), request("echo", "first", false, false))
	require.NoError(t, err, "answered while the Put is held")
	require.False(t, res.CacheHit)
	<-c.entered // the Put started without waiting for anything else
	c.mu.Lock()
	require.Empty(t, c.m, "nothing stored yet")
	require.Len(t, c.leases, 1, "the lease is still held")
	c.mu.Unlock()

	// The one slot is taken: this write runs inline, before its reply.
	_, err = svc.Converse(t.Context(), request("echo", "second", false, false))
	require.NoError(t, err)
	c.mu.Lock()
	require.Len(t, c.m, 1, "the inline Put is done when the reply leaves")
	c.mu.Unlock()
	require.InDelta(t, 1, testutil.ToFloat64(svc.m.background.WithLabelValues("inline")), 0)
	require.InDelta(t, 1, testutil.ToFloat64(svc.m.background.WithLabelValues("background")), 0)

	closed, cancel := context.WithCancel(t.Context())
	cancel()
	require.Error(t, svc.Close(closed), "Close reports the write still held")
	close(c.open)
	require.NoError(t, svc.Close(t.Context()))
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Len(t, c.m, 2, "the held Put landed")
	require.Empty(t, c.leases, "both leases ended")
	require.Equal(t, []uint64{2, 1}, c.puts)
}

// TestTenantConfinesCacheAndAudit: the caller in the context (package tenant) names the
// cache entry, the audit event's tenant and key id, and is told the real token usage; two
// tenants never share an entry.
func TestTenantConfinesCacheAndAudit(t *testing.T) {
	t.Parallel()
	svc, c, d := cacheFixture(t)
	var settled []int64
	callers := []*tenant.Caller{
		(&tenant.Caller{Tenant: "team-a", KeyID: "a1"}).WithSettle(func(n int64) { settled = append(settled, n) }),
		(&tenant.Caller{Tenant: "team-b", KeyID: "b1"}).WithSettle(func(n int64) { settled = append(settled, n) }),
		(&tenant.Caller{Tenant: "team-a", KeyID: "a2"}).WithSettle(func(n int64) { settled = append(settled, n) }),
	}
	var hits []bool
	for _, caller := range callers {
		res, err := svc.Converse(tenant.With(t.Context(), caller), cacheRequest())
		require.NoError(t, err)
		svc.bg.Wait()
		hits = append(hits, res.CacheHit)
	}
	require.Equal(t, []bool{false, false, true}, hits, "team-b misses team-a's entry; team-a's second key hits it")
	require.Equal(t, 2, d.calls)
	require.Equal(t, "team-a", c.ids[0].Tenant)
	require.Equal(t, "team-b", c.ids[len(c.ids)-2].Tenant)
	require.NotEqual(t, c.ids[0].Hash, c.ids[len(c.ids)-2].Hash, "the tenant is part of the hash too")
	require.Len(t, settled, 3)
	require.Positive(t, settled[0])
	require.Zero(t, settled[2], "a cache hit costs no provider tokens")
}
