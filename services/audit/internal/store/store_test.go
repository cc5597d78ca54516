package store_test

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/pgtest"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// base is the time of the first test event; events are one second apart.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newStore(t testing.TB) (*store.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.NewDB(t, store.Migrations())
	return store.New(pool), pool
}

// event returns a fully populated event; i picks its id and time.
func event(t testing.TB, tenant string, i int) *auditv1.ConversationEvent {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return &auditv1.ConversationEvent{
		RequestId:       id.String(),
		Tenant:          tenant,
		Api:             auditv1.Api_API_ALPHA2,
		Component:       "openai",
		Provider:        "conversation.openai",
		Model:           "gpt-4o-mini",
		ContextId:       fmt.Sprintf("ctx-%d", i%3),
		RequestJson:     []byte(fmt.Sprintf(`{"inputs":[{"content":"hello %d","role":"user"}],"temperature":0.5}`, i)),
		ResponseJson:    []byte(`{"outputs":[{"result":"hi <REDACTED>"}],"n":2}`),
		FinishReason:    "stop",
		Status:          auditv1.Status_STATUS_OK,
		Usage:           &auditv1.TokenUsage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15, CachedTokens: 2, ReasoningTokens: 1},
		CacheHit:        false,
		PiiFindings:     map[string]int64{"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1},
		Attempts:        2,
		Fallbacks:       []string{"azure-openai"},
		WorkerId:        "worker-7",
		Latency:         durationpb.New(1500 * time.Microsecond),
		ProviderLatency: durationpb.New(1200 * time.Microsecond),
		CreatedAt:       timestamppb.New(base.Add(time.Duration(i) * time.Second)),
		TraceId:         fmt.Sprintf("4bf92f3577b34da6a3ce929d%08x", i),
	}
}

// want is what Get and List return for ev.
func want(t testing.TB, ev *auditv1.ConversationEvent) *auditv1.Conversation {
	t.Helper()
	c := &auditv1.Conversation{
		RequestId:       ev.GetRequestId(),
		Tenant:          ev.GetTenant(),
		Api:             ev.GetApi(),
		Component:       ev.GetComponent(),
		Provider:        ev.GetProvider(),
		Model:           ev.GetModel(),
		ContextId:       ev.GetContextId(),
		Request:         value(t, ev.GetRequestJson()),
		Response:        value(t, ev.GetResponseJson()),
		FinishReason:    ev.GetFinishReason(),
		Status:          ev.GetStatus(),
		ErrorCode:       ev.GetErrorCode(),
		ErrorMessage:    ev.GetErrorMessage(),
		Usage:           ev.GetUsage(),
		CacheHit:        ev.GetCacheHit(),
		PiiFindings:     ev.GetPiiFindings(),
		Attempts:        ev.GetAttempts(),
		Fallbacks:       ev.GetFallbacks(),
		WorkerId:        ev.GetWorkerId(),
		Latency:         ev.GetLatency(),
		ProviderLatency: ev.GetProviderLatency(),
		CreatedAt:       ev.GetCreatedAt(),
		// Set for streamed conversations only.
		TimeToFirstToken: ev.GetTimeToFirstToken(),
		TraceId:          ev.GetTraceId(),
	}
	if c.Usage == nil {
		c.Usage = &auditv1.TokenUsage{}
	}
	if c.Latency == nil {
		c.Latency = durationpb.New(0)
	}
	if c.ProviderLatency == nil {
		c.ProviderLatency = durationpb.New(0)
	}
	return c
}

func value(t testing.TB, b []byte) *structpb.Value {
	t.Helper()
	if len(b) == 0 {
		return nil
	}
	var v any
	require.NoError(t, json.Unmarshal(b, &v))
	sv, err := structpb.NewValue(v)
	require.NoError(t, err)
	return sv
}

func requireProtoEqual(t testing.TB, want, got proto.Message) {
	t.Helper()
	require.True(t, proto.Equal(want, got), "want:\n%v\ngot:\n%v", want, got)
}

func insert(t testing.TB, s *store.Store, events ...*auditv1.ConversationEvent) {
	t.Helper()
	n, err := s.InsertBatch(t.Context(), events)
	require.NoError(t, err)
	require.EqualValues(t, len(events), n)
}

func TestInsertGetRoundTrip(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)

	full := event(t, "acme", 1)
	failed := event(t, "acme", 2)
	failed.Api = auditv1.Api_API_ALPHA1
	failed.Status = auditv1.Status_STATUS_ERROR
	failed.ErrorCode = "ERR_CONVERSATION_INVOKE"
	failed.ErrorMessage = "provider timed out"
	failed.ResponseJson = nil
	failed.FinishReason = ""
	failed.CacheHit = true
	minimal := &auditv1.ConversationEvent{
		RequestId: uuid.NewString(),
		Tenant:    "acme",
		Api:       auditv1.Api_API_NATIVE,
		Status:    auditv1.Status_STATUS_OK,
		CreatedAt: timestamppb.New(base),
	}
	// Tenant text that PostgreSQL cannot store as is: NUL and invalid UTF-8 are replaced.
	odd := event(t, "acme", 3)
	odd.ErrorMessage = "nul\x00byte and bad \xff utf8"
	odd.RequestJson = []byte(`{"s":"a\u0000b","lone":"\ud800","big":1e400,"small":2.5e-3,"esc":"\\u0000"}`)
	streamed := event(t, "acme", 4)
	streamed.TimeToFirstToken = durationpb.New(1500 * time.Microsecond)
	// As the router sends them: request and response as protobuf, stored as their JSON.
	asProto := event(t, "acme", 5)
	asProto.RequestJson, asProto.ResponseJson = nil, nil
	asProto.Request = &providerv1.Request{
		Messages:    []*providerv1.Message{{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "hello 5"}}}}},
		Temperature: 0.5,
	}
	asProto.Response = &providerv1.Response{Model: "m", Choices: []*providerv1.Choice{{FinishReason: "stop"}}}
	asJSON := proto.CloneOf(asProto)
	asJSON.Request, asJSON.Response = nil, nil
	var err error
	asJSON.RequestJson, err = protojson.Marshal(asProto.GetRequest())
	require.NoError(t, err)
	asJSON.ResponseJson, err = protojson.Marshal(asProto.GetResponse())
	require.NoError(t, err)

	// A trace id that is not one (wrong length, upper case, all zero) is dropped, the row kept.
	var badTrace []*auditv1.ConversationEvent
	for i, id := range []string{"4BF92F3577B34DA6A3CE929D0E0E4736", "4bf92f35", "00000000000000000000000000000000", "4bf92f3577b34da6a3ce929d0e0e473g"} {
		ev := event(t, "acme", 10+i)
		ev.TraceId = id
		badTrace = append(badTrace, ev)
	}
	// The OpenAI-compatible API's rows (migration 006 admits the value).
	viaOpenAI := event(t, "acme", 5)
	viaOpenAI.Api = auditv1.Api_API_OPENAI

	insert(t, s, append([]*auditv1.ConversationEvent{full, failed, minimal, odd, streamed, asProto, viaOpenAI}, badTrace...)...)

	oddCleaned := proto.CloneOf(odd)
	oddCleaned.ErrorMessage = "nul\uFFFDbyte and bad \uFFFD utf8"
	oddCleaned.RequestJson = []byte(`{"s":"a\ufffdb","lone":"\ufffd","big":"1e400","small":0.0025,"esc":"\\u0000"}`)
	oddWant := want(t, oddCleaned)

	tests := []struct {
		name string
		give *auditv1.ConversationEvent
		want *auditv1.Conversation
	}{
		{name: "full", give: full, want: want(t, full)},
		{name: "error without response", give: failed, want: want(t, failed)},
		{name: "minimal", give: minimal, want: want(t, minimal)},
		{name: "text postgres rejects", give: odd, want: oddWant},
		{name: "streamed, with its time to first token", give: streamed, want: want(t, streamed)},
		{name: "openai api", give: viaOpenAI, want: want(t, viaOpenAI)},
		{name: "request and response as protobuf", give: asProto, want: want(t, asJSON)},
	}
	for i, ev := range badTrace {
		w := want(t, ev)
		w.TraceId = ""
		tests = append(tests, struct {
			name string
			give *auditv1.ConversationEvent
			want *auditv1.Conversation
		}{name: fmt.Sprintf("malformed trace id %d", i), give: ev, want: w})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.Get(t.Context(), "acme", tt.give.GetRequestId())
			require.NoError(t, err)
			requireProtoEqual(t, tt.want, got)
		})
	}
}

func TestGetNotFound(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ev := event(t, "acme", 1)
	insert(t, s, ev)

	tests := []struct {
		name      string
		tenant    string
		requestID string
	}{
		{name: "unknown id", tenant: "acme", requestID: uuid.NewString()},
		{name: "other tenant", tenant: "globex", requestID: ev.GetRequestId()},
		{name: "not a uuid", tenant: "acme", requestID: "not-a-uuid"},
		{name: "empty id", tenant: "acme", requestID: ""},
		{name: "sql in id", tenant: "acme", requestID: "' OR 1=1 --"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.Get(t.Context(), tt.tenant, tt.requestID)
			require.ErrorIs(t, err, store.ErrNotFound)
			require.Nil(t, got)
		})
	}
}

func TestInsertBatchRedeliveryIsIdempotent(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()

	batch := make([]*auditv1.ConversationEvent, 20)
	for i := range batch {
		batch[i] = event(t, "acme", i)
	}
	n, err := s.InsertBatch(ctx, batch)
	require.NoError(t, err)
	require.EqualValues(t, 20, n)

	// The whole batch again, as after a crash between commit and ack.
	n, err = s.InsertBatch(ctx, batch)
	require.NoError(t, err)
	require.Zero(t, n)

	// A batch overlapping the first, with a duplicate inside itself.
	extra := event(t, "acme", 100)
	n, err = s.InsertBatch(ctx, []*auditv1.ConversationEvent{batch[3], extra, extra, batch[7]})
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	var rows int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM conversations").Scan(&rows))
	require.Equal(t, 21, rows)
}

func TestInsertBatchRejectsInvalidEvents(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)

	tests := []struct {
		name   string
		modify func(*auditv1.ConversationEvent)
	}{
		{name: "request id not a uuid", modify: func(e *auditv1.ConversationEvent) { e.RequestId = "abc" }},
		{name: "no created_at", modify: func(e *auditv1.ConversationEvent) { e.CreatedAt = nil }},
		{name: "invalid created_at", modify: func(e *auditv1.ConversationEvent) { e.CreatedAt = &timestamppb.Timestamp{Nanos: -1} }},
		{name: "no tenant", modify: func(e *auditv1.ConversationEvent) { e.Tenant = "" }},
		{name: "api unspecified", modify: func(e *auditv1.ConversationEvent) { e.Api = auditv1.Api_API_UNSPECIFIED }},
		{name: "api unknown", modify: func(e *auditv1.ConversationEvent) { e.Api = 42 }},
		{name: "status unspecified", modify: func(e *auditv1.ConversationEvent) { e.Status = auditv1.Status_STATUS_UNSPECIFIED }},
		{name: "request not json", modify: func(e *auditv1.ConversationEvent) { e.RequestJson = []byte("{") }},
		{name: "response not json", modify: func(e *auditv1.ConversationEvent) { e.ResponseJson = []byte("nope") }},
		{name: "tokens overflow bigint", modify: func(e *auditv1.ConversationEvent) { e.Usage.TotalTokens = 1 << 63 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			good := event(t, "acme", 1)
			bad := event(t, "acme", 2)
			tt.modify(bad)
			require.ErrorIs(t, store.ValidateEvent(bad), store.ErrInvalidEvent)

			n, err := s.InsertBatch(t.Context(), []*auditv1.ConversationEvent{good, bad})
			require.ErrorIs(t, err, store.ErrInvalidEvent)
			require.ErrorContains(t, err, "event 1")
			require.Zero(t, n)
			// Nothing from the batch was written.
			_, err = s.Get(t.Context(), "acme", good.GetRequestId())
			require.ErrorIs(t, err, store.ErrNotFound)
		})
	}
	t.Run("nil event", func(t *testing.T) {
		t.Parallel()
		_, err := s.InsertBatch(t.Context(), []*auditv1.ConversationEvent{nil})
		require.ErrorIs(t, err, store.ErrInvalidEvent)
	})
	t.Run("empty batch", func(t *testing.T) {
		t.Parallel()
		n, err := s.InsertBatch(t.Context(), nil)
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

// listAll pages through every result and fails on a duplicate.
func listAll(t testing.TB, s *store.Store, tenant string, req *auditv1.ListConversationsRequest) (ids []string, pages int) {
	t.Helper()
	req = proto.CloneOf(req)
	seen := map[string]bool{}
	for {
		resp, err := s.List(t.Context(), tenant, req)
		require.NoError(t, err)
		pages++
		for _, c := range resp.GetConversations() {
			require.False(t, seen[c.GetRequestId()], "duplicate %s", c.GetRequestId())
			seen[c.GetRequestId()] = true
			ids = append(ids, c.GetRequestId())
		}
		if resp.GetNextPageToken() == "" {
			return ids, pages
		}
		require.Less(t, pages, 10000, "pagination does not end")
		req.PageToken = resp.GetNextPageToken()
	}
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)

	// 12 events, one per second; every filterable field varies independently.
	var events []*auditv1.ConversationEvent
	for i := range 12 {
		ev := event(t, "acme", i)
		ev.Component = []string{"openai", "anthropic"}[i%2]
		ev.Model = []string{"m-a", "m-b", "m-c"}[i%3]
		ev.ContextId = []string{"", "conv-1", "conv-2", "conv-3"}[i%4]
		ev.CacheHit = i%5 == 0
		if i%4 == 3 {
			ev.Status = auditv1.Status_STATUS_ERROR
			ev.ErrorCode = []string{"ERR_CONVERSATION_INVOKE", "DeadlineExceeded"}[i%2]
			ev.ResponseJson = nil
		}
		ev.Latency = durationpb.New(time.Duration(i) * 100 * time.Millisecond)
		ev.RequestJson = fmt.Appendf(nil, `{"inputs":[{"content":"Please check %s number %d","role":"user"}],"temperature":0.5}`,
			[]string{"the Invoice", "this receipt", "the invoice_42"}[i%3], i)
		events = append(events, ev)
	}
	insert(t, s, events...)
	insert(t, s, event(t, "globex", 5)) // never listed for acme

	// expect returns the request ids of events matching pred, newest first.
	expect := func(pred func(i int, e *auditv1.ConversationEvent) bool) []string {
		var ids []string
		for i := len(events) - 1; i >= 0; i-- {
			if pred(i, events[i]) {
				ids = append(ids, events[i].GetRequestId())
			}
		}
		return ids
	}
	at := func(i int) *timestamppb.Timestamp { return timestamppb.New(base.Add(time.Duration(i) * time.Second)) }

	tests := []struct {
		name string
		give *auditv1.ListConversationsRequest
		want []string
	}{
		{name: "no filter", give: &auditv1.ListConversationsRequest{},
			want: expect(func(int, *auditv1.ConversationEvent) bool { return true })},
		{name: "start time inclusive", give: &auditv1.ListConversationsRequest{StartTime: at(4)},
			want: expect(func(i int, _ *auditv1.ConversationEvent) bool { return i >= 4 })},
		{name: "end time exclusive", give: &auditv1.ListConversationsRequest{EndTime: at(4)},
			want: expect(func(i int, _ *auditv1.ConversationEvent) bool { return i < 4 })},
		{name: "time window", give: &auditv1.ListConversationsRequest{StartTime: at(3), EndTime: at(9)},
			want: expect(func(i int, _ *auditv1.ConversationEvent) bool { return i >= 3 && i < 9 })},
		{name: "component", give: &auditv1.ListConversationsRequest{Component: "anthropic"},
			want: expect(func(_ int, e *auditv1.ConversationEvent) bool { return e.GetComponent() == "anthropic" })},
		{name: "model", give: &auditv1.ListConversationsRequest{Model: "m-b"},
			want: expect(func(_ int, e *auditv1.ConversationEvent) bool { return e.GetModel() == "m-b" })},
		{name: "status ok", give: &auditv1.ListConversationsRequest{Status: auditv1.Status_STATUS_OK},
			want: expect(func(_ int, e *auditv1.ConversationEvent) bool { return e.GetStatus() == auditv1.Status_STATUS_OK })},
		{name: "status error", give: &auditv1.ListConversationsRequest{Status: auditv1.Status_STATUS_ERROR},
			want: expect(func(_ int, e *auditv1.ConversationEvent) bool { return e.GetStatus() == auditv1.Status_STATUS_ERROR })},
		{name: "error code", give: &auditv1.ListConversationsRequest{ErrorCode: "DeadlineExceeded"},
			want: expect(func(_ int, e *auditv1.ConversationEvent) bool { return e.GetErrorCode() == "DeadlineExceeded" })},
		{name: "context id", give: &auditv1.ListConversationsRequest{ContextId: "conv-2"},
			want: expect(func(_ int, e *auditv1.ConversationEvent) bool { return e.GetContextId() == "conv-2" })},
		{name: "cache hit true", give: &auditv1.ListConversationsRequest{CacheHit: proto.Bool(true)},
			want: expect(func(_ int, e *auditv1.ConversationEvent) bool { return e.GetCacheHit() })},
		{name: "cache hit false", give: &auditv1.ListConversationsRequest{CacheHit: proto.Bool(false)},
			want: expect(func(_ int, e *auditv1.ConversationEvent) bool { return !e.GetCacheHit() })},
		{name: "combined", give: &auditv1.ListConversationsRequest{
			StartTime: at(1), EndTime: at(11), Component: "openai", Model: "m-a", Status: auditv1.Status_STATUS_OK, CacheHit: proto.Bool(false)},
			want: expect(func(i int, e *auditv1.ConversationEvent) bool {
				return i >= 1 && i < 11 && e.GetComponent() == "openai" && e.GetModel() == "m-a" &&
					e.GetStatus() == auditv1.Status_STATUS_OK && !e.GetCacheHit()
			})},
		{name: "min latency inclusive", give: &auditv1.ListConversationsRequest{MinLatency: durationpb.New(700 * time.Millisecond)},
			want: expect(func(i int, _ *auditv1.ConversationEvent) bool { return i >= 7 })},
		{name: "min latency rounds up to a microsecond", give: &auditv1.ListConversationsRequest{MinLatency: durationpb.New(700*time.Millisecond + 1)},
			want: expect(func(i int, _ *auditv1.ConversationEvent) bool { return i >= 8 })},
		{name: "zero min latency", give: &auditv1.ListConversationsRequest{MinLatency: durationpb.New(0)},
			want: expect(func(int, *auditv1.ConversationEvent) bool { return true })},
		{name: "text one word any case", give: &auditv1.ListConversationsRequest{TextQuery: "INVOICE"},
			want: expect(func(i int, _ *auditv1.ConversationEvent) bool { return i%3 != 1 })},
		{name: "text every word must occur", give: &auditv1.ListConversationsRequest{TextQuery: "invoice 42"},
			want: expect(func(i int, _ *auditv1.ConversationEvent) bool { return i%3 == 2 })},
		{name: "text words in any order and punctuation", give: &auditv1.ListConversationsRequest{TextQuery: "number, receipt!"},
			want: expect(func(i int, _ *auditv1.ConversationEvent) bool { return i%3 == 1 })},
		{name: "text in the response", give: &auditv1.ListConversationsRequest{TextQuery: "redacted"},
			want: expect(func(_ int, e *auditv1.ConversationEvent) bool { return e.GetResponseJson() != nil })},
		{name: "text is whole words", give: &auditv1.ListConversationsRequest{TextQuery: "invoic"}, want: nil},
		{name: "text does not match keys", give: &auditv1.ListConversationsRequest{TextQuery: "role"}, want: nil},
		{name: "text and other filters", give: &auditv1.ListConversationsRequest{TextQuery: "number 9", Model: "m-a"},
			want: expect(func(i int, _ *auditv1.ConversationEvent) bool { return i == 9 })},
		{name: "no match", give: &auditv1.ListConversationsRequest{Component: "nope"}, want: nil},
		{name: "other tenant's context id", give: &auditv1.ListConversationsRequest{ContextId: "ctx-2"}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Page size 2 exercises pagination under every filter too.
			req := proto.CloneOf(tt.give)
			req.PageSize = 2
			got, _ := listAll(t, s, "acme", req)
			require.Equal(t, tt.want, got)

			// And one full page gives the same rows.
			resp, err := s.List(t.Context(), "acme", tt.give)
			require.NoError(t, err)
			require.Empty(t, resp.GetNextPageToken())
			var ids []string
			for _, c := range resp.GetConversations() {
				ids = append(ids, c.GetRequestId())
			}
			require.Equal(t, tt.want, ids)
		})
	}
}

func TestListReturnsFullConversations(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ev := event(t, "acme", 1)
	insert(t, s, ev)
	resp, err := s.List(t.Context(), "acme", &auditv1.ListConversationsRequest{})
	require.NoError(t, err)
	require.Len(t, resp.GetConversations(), 1)
	requireProtoEqual(t, want(t, ev), resp.GetConversations()[0])
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)

	// 23 events; 6 of them share one created_at, so only request_id orders them.
	var events []*auditv1.ConversationEvent
	for i := range 23 {
		ev := event(t, "acme", i)
		if i >= 10 && i < 16 {
			ev.CreatedAt = timestamppb.New(base.Add(10 * time.Second))
		}
		events = append(events, ev)
	}
	insert(t, s, events...)
	all, pages := listAll(t, s, "acme", &auditv1.ListConversationsRequest{PageSize: 1000})
	require.Len(t, all, 23)
	require.Equal(t, 1, pages)

	tests := []struct {
		name      string
		pageSize  int32
		wantPages int
	}{
		{name: "size 1", pageSize: 1, wantPages: 23},
		{name: "size 4", pageSize: 4, wantPages: 6},
		{name: "size 5", pageSize: 5, wantPages: 5},
		{name: "size 23 exact", pageSize: 23, wantPages: 1},
		{name: "size 22", pageSize: 22, wantPages: 2},
		{name: "default", pageSize: 0, wantPages: 1},
		{name: "clamped", pageSize: 5000, wantPages: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, pages := listAll(t, s, "acme", &auditv1.ListConversationsRequest{PageSize: tt.pageSize})
			require.Equal(t, all, got)
			require.Equal(t, tt.wantPages, pages)
		})
	}

	t.Run("rows arriving while paging cause no gaps or repeats", func(t *testing.T) {
		t.Parallel()
		s, _ := newStore(t)
		for i := range 10 {
			insert(t, s, event(t, "acme", i))
		}
		first, err := s.List(t.Context(), "acme", &auditv1.ListConversationsRequest{PageSize: 4})
		require.NoError(t, err)
		// A newer row lands between pages; it belongs before the cursor, so it is not seen.
		insert(t, s, event(t, "acme", 50))
		rest, _ := listAll(t, s, "acme", &auditv1.ListConversationsRequest{PageSize: 4, PageToken: first.GetNextPageToken()})
		require.Len(t, rest, 6)
	})
}

func TestListPageSizeLimits(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	batch := make([]*auditv1.ConversationEvent, store.MaxPageSize+5)
	for i := range batch {
		batch[i] = event(t, "acme", i)
	}
	insert(t, s, batch...)

	tests := []struct {
		name     string
		pageSize int32
		want     int
	}{
		{name: "unset gives default", pageSize: 0, want: store.DefaultPageSize},
		{name: "explicit", pageSize: 7, want: 7},
		{name: "max", pageSize: store.MaxPageSize, want: store.MaxPageSize},
		{name: "above max clamps", pageSize: store.MaxPageSize + 1, want: store.MaxPageSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := s.List(t.Context(), "acme", &auditv1.ListConversationsRequest{PageSize: tt.pageSize})
			require.NoError(t, err)
			require.Len(t, resp.GetConversations(), tt.want)
			require.NotEmpty(t, resp.GetNextPageToken())
		})
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	var a, b []*auditv1.ConversationEvent
	for i := range 8 {
		a = append(a, event(t, "tenant-a", i))
		// Tenant B's rows share every other field and interleave in time with A's.
		evb := event(t, "tenant-b", i)
		b = append(b, evb)
	}
	insert(t, s, append(a, b...)...)

	tests := []struct {
		name   string
		tenant string
		own    []*auditv1.ConversationEvent
		others []*auditv1.ConversationEvent
	}{
		{name: "a", tenant: "tenant-a", own: a, others: b},
		{name: "b", tenant: "tenant-b", own: b, others: a},
		{name: "unknown", tenant: "tenant-c", others: append(append([]*auditv1.ConversationEvent{}, a...), b...)},
		{name: "empty", tenant: "", others: append(append([]*auditv1.ConversationEvent{}, a...), b...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ids, _ := listAll(t, s, tt.tenant, &auditv1.ListConversationsRequest{PageSize: 3})
			require.Len(t, ids, len(tt.own))
			for _, ev := range tt.others {
				require.NotContains(t, ids, ev.GetRequestId())
				_, err := s.Get(t.Context(), tt.tenant, ev.GetRequestId())
				require.ErrorIs(t, err, store.ErrNotFound)
			}
			for _, ev := range tt.own {
				got, err := s.Get(t.Context(), tt.tenant, ev.GetRequestId())
				require.NoError(t, err)
				require.Equal(t, tt.tenant, got.GetTenant())
			}
		})
	}

	t.Run("cursor from another tenant reveals nothing", func(t *testing.T) {
		t.Parallel()
		resp, err := s.List(t.Context(), "tenant-b", &auditv1.ListConversationsRequest{PageSize: 2})
		require.NoError(t, err)
		ids, _ := listAll(t, s, "tenant-a", &auditv1.ListConversationsRequest{PageToken: resp.GetNextPageToken()})
		for _, ev := range b {
			require.NotContains(t, ids, ev.GetRequestId())
		}
	})
}

func TestListInvalidRequests(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	insert(t, s, event(t, "acme", 1), event(t, "acme", 2))
	first, err := s.List(t.Context(), "acme", &auditv1.ListConversationsRequest{PageSize: 1})
	require.NoError(t, err)
	valid := first.GetNextPageToken()
	require.NotEmpty(t, valid)
	farFuture := make([]byte, 25)
	farFuture[0] = 1
	binary.BigEndian.PutUint64(farFuture[1:9], math.MaxInt64)

	tests := []struct {
		name    string
		give    *auditv1.ListConversationsRequest
		wantErr error
	}{
		{name: "garbage token", give: &auditv1.ListConversationsRequest{PageToken: "garbage"}, wantErr: store.ErrInvalidPageToken},
		{name: "not base64url", give: &auditv1.ListConversationsRequest{PageToken: strings.Repeat("!", len(valid))}, wantErr: store.ErrInvalidPageToken},
		{name: "std base64 padding", give: &auditv1.ListConversationsRequest{PageToken: valid + "=="}, wantErr: store.ErrInvalidPageToken},
		{name: "truncated", give: &auditv1.ListConversationsRequest{PageToken: valid[:len(valid)-2]}, wantErr: store.ErrInvalidPageToken},
		{name: "wrong version", give: &auditv1.ListConversationsRequest{PageToken: "Ag" + valid[2:]}, wantErr: store.ErrInvalidPageToken},
		{name: "time out of range", give: &auditv1.ListConversationsRequest{PageToken: base64.RawURLEncoding.EncodeToString(farFuture)}, wantErr: store.ErrInvalidPageToken},
		{name: "negative page size", give: &auditv1.ListConversationsRequest{PageSize: -1}, wantErr: store.ErrInvalidRequest},
		{name: "unknown status", give: &auditv1.ListConversationsRequest{Status: 9}, wantErr: store.ErrInvalidRequest},
		{name: "invalid start time", give: &auditv1.ListConversationsRequest{StartTime: &timestamppb.Timestamp{Seconds: -1 << 62}}, wantErr: store.ErrInvalidRequest},
		{name: "invalid end time", give: &auditv1.ListConversationsRequest{EndTime: &timestamppb.Timestamp{Nanos: 2e9}}, wantErr: store.ErrInvalidRequest},
		{name: "negative min latency", give: &auditv1.ListConversationsRequest{MinLatency: durationpb.New(-time.Second)}, wantErr: store.ErrInvalidRequest},
		{name: "invalid min latency", give: &auditv1.ListConversationsRequest{MinLatency: &durationpb.Duration{Seconds: 1, Nanos: -1}}, wantErr: store.ErrInvalidRequest},
		{name: "text without words", give: &auditv1.ListConversationsRequest{TextQuery: "?!-"}, wantErr: store.ErrInvalidRequest},
		{name: "text too long", give: &auditv1.ListConversationsRequest{TextQuery: strings.Repeat("a", store.MaxTextQuery+1)}, wantErr: store.ErrInvalidRequest},
		{name: "text with too many words", give: &auditv1.ListConversationsRequest{TextQuery: manyWords(store.MaxQueryWords + 1)}, wantErr: store.ErrInvalidRequest},
		{name: "text not utf8", give: &auditv1.ListConversationsRequest{TextQuery: "abc\xff"}, wantErr: store.ErrInvalidRequest},
		{name: "component not utf8", give: &auditv1.ListConversationsRequest{Component: "\xffx"}, wantErr: store.ErrInvalidRequest},
		{name: "context id with nul", give: &auditv1.ListConversationsRequest{ContextId: "a\x00b"}, wantErr: store.ErrInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := s.List(t.Context(), "acme", tt.give)
			require.ErrorIs(t, err, tt.wantErr)
			require.Nil(t, resp)
		})
	}
}

// manyWords returns n distinct words.
func manyWords(n int) string {
	words := make([]string, n)
	for i := range words {
		words[i] = fmt.Sprintf("w%d", i)
	}
	return strings.Join(words, " ")
}

func TestMigrationsEmbedded(t *testing.T) {
	t.Parallel()
	body, err := fs.ReadFile(store.Migrations(), "001_create_conversations.sql")
	require.NoError(t, err)
	require.Contains(t, string(body), "PRIMARY KEY (request_id, created_at)")
}

func BenchmarkInsertBatch(b *testing.B) {
	s, _ := newStore(b)
	const batchSize = 500
	batches := make([][]*auditv1.ConversationEvent, b.N)
	for i := range batches {
		batches[i] = make([]*auditv1.ConversationEvent, batchSize)
		for j := range batchSize {
			batches[i][j] = event(b, "acme", i*batchSize+j)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		n, err := s.InsertBatch(b.Context(), batches[i])
		if err != nil {
			b.Fatal(err)
		}
		if n != batchSize {
			b.Fatalf("inserted %d rows, want %d", n, batchSize)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "rows/s")
}
