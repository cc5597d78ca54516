package command_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/parleyhq/parley/cli/internal/command"
	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
)

var update = flag.Bool("update", false, "update golden files")

var now = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// fakeAudit serves canned answers and records the requests it gets.
type fakeAudit struct {
	mu          sync.Mutex
	lists       []*auditv1.ListConversationsRequest
	stats       *auditv1.GetUsageStatsRequest
	statsTenant string
}

var _ auditv1connect.AuditServiceHandler = (*fakeAudit)(nil)

func conversation(i int) *auditv1.Conversation {
	req, _ := structpb.NewValue(map[string]any{"inputs": []any{map[string]any{"content": "hello <EMAIL_ADDRESS>"}}})
	return &auditv1.Conversation{
		RequestId: "0195f0c4-0000-7000-8000-00000000000" + string(rune('0'+i)), Tenant: "default",
		Api: auditv1.Api_API_ALPHA2, Component: "echo", Provider: "conversation.echo", Model: "echo-1",
		ContextId: "ctx-1", Request: req, Status: auditv1.Status_STATUS_OK, FinishReason: "stop",
		Usage:    &auditv1.TokenUsage{PromptTokens: 4, CompletionTokens: 4, TotalTokens: 8},
		CacheHit: i%2 == 0, PiiFindings: map[string]int64{"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 2}, Attempts: 1,
		WorkerId: "w-1", Latency: durationpb.New(time.Duration(i+1) * 1234 * time.Microsecond),
		ProviderLatency: durationpb.New(800 * time.Microsecond),
		TraceId:         "4bf92f3577b34da6a3ce929d0e0e4736",
		CreatedAt:       timestamppb.New(now.Add(-time.Duration(i) * time.Minute)),
	}
}

func (f *fakeAudit) ListConversations(_ context.Context, req *auditv1.ListConversationsRequest) (*auditv1.ListConversationsResponse, error) {
	f.mu.Lock()
	f.lists = append(f.lists, req)
	f.mu.Unlock()
	switch req.GetPageToken() {
	case "":
		return &auditv1.ListConversationsResponse{Conversations: []*auditv1.Conversation{conversation(0), conversation(1)}, NextPageToken: "p2"}, nil
	case "p2":
		return &auditv1.ListConversationsResponse{Conversations: []*auditv1.Conversation{conversation(2)}}, nil
	}
	return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("invalid page token"))
}

func (f *fakeAudit) GetConversation(_ context.Context, req *auditv1.GetConversationRequest) (*auditv1.GetConversationResponse, error) {
	if req.GetRequestId() != conversation(1).GetRequestId() {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("conversation not found"))
	}
	c := conversation(1)
	c.Status, c.ErrorCode, c.ErrorMessage, c.Fallbacks = auditv1.Status_STATUS_ERROR, "ERR_CONVERSATION_INVOKE", "provider timed out", []string{"backup"}
	return &auditv1.GetConversationResponse{Conversation: c}, nil
}

func (f *fakeAudit) GetUsageStats(ctx context.Context, req *auditv1.GetUsageStatsRequest) (*auditv1.GetUsageStatsResponse, error) {
	f.mu.Lock()
	f.stats = req
	if ci, ok := connect.CallInfoForHandlerContext(ctx); ok {
		f.statsTenant = ci.RequestHeader().Get(command.TenantHeader)
	}
	f.mu.Unlock()
	if slices.Contains(req.GetGroupBy(), auditv1.UsageDimension_USAGE_DIMENSION_KEY) {
		return &auditv1.GetUsageStatsResponse{Stats: []*auditv1.UsageStats{
			{BucketStart: timestamppb.New(time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)), Tenant: "team-a", KeyId: "ci", Requests: 7, Usage: &auditv1.TokenUsage{TotalTokens: 700}},
			{BucketStart: timestamppb.New(time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)), Tenant: "team-a", KeyId: "ops", Requests: 2, Usage: &auditv1.TokenUsage{TotalTokens: 90}},
		}}, nil
	}
	row := func(day int, component string, estimated bool) *auditv1.UsageStats {
		return &auditv1.UsageStats{
			BucketStart: timestamppb.New(time.Date(2026, 3, day, 0, 0, 0, 0, time.UTC)), Tenant: "default",
			Component: component, Requests: 120, Errors: 3, CacheHits: 30, CacheHitRate: 0.25,
			Usage:       &auditv1.TokenUsage{PromptTokens: 1200, CompletionTokens: 600, TotalTokens: 1800},
			LatencyMean: durationpb.New(350 * time.Millisecond), LatencyP50: durationpb.New(300 * time.Millisecond),
			LatencyP90: durationpb.New(900 * time.Millisecond), LatencyP99: durationpb.New(2500 * time.Millisecond),
			LatencyEstimated: estimated,
		}
	}
	return &auditv1.GetUsageStatsResponse{Stats: []*auditv1.UsageStats{row(8, "echo", true), row(9, "openai", true)}}, nil
}

// serve starts the fake on an HTTP/1.1 and cleartext HTTP/2 server.
func serve(t *testing.T) (*fakeAudit, string) {
	t.Helper()
	f := &fakeAudit{}
	mux := http.NewServeMux()
	mux.Handle(auditv1connect.NewAuditServiceHandler(f))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return f, srv.URL
}

// run runs the command line against url and returns the exit code, stdout and stderr.
func run(t *testing.T, url string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := func(k string) string {
		if k == command.EnvRouterURL {
			return url
		}
		return ""
	}
	code := command.Main(t.Context(), args, command.IO{Stdout: &stdout, Stderr: &stderr, Getenv: env, Now: func() time.Time { return now }})
	return code, stdout.String(), stderr.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o600))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), got)
}

func TestListRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want *auditv1.ListConversationsRequest
	}{
		{name: "no filter", args: nil, want: &auditv1.ListConversationsRequest{}},
		{name: "every filter", args: []string{
			"-since", "2h", "-end", "2026-03-10", "-component", "echo", "-model", "m", "-status", "error",
			"-error-code", "ERR_X", "-context-id", "c1", "-cache-hit", "false", "-min-latency", "1.5s",
			"-search", "invoice march", "-page-size", "20", "-page-token", "p2",
		}, want: &auditv1.ListConversationsRequest{
			StartTime: timestamppb.New(now.Add(-2 * time.Hour)), EndTime: timestamppb.New(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)),
			Component: "echo", Model: "m", Status: auditv1.Status_STATUS_ERROR, ErrorCode: "ERR_X", ContextId: "c1",
			CacheHit: proto.Bool(false), MinLatency: durationpb.New(1500 * time.Millisecond), TextQuery: "invoice march",
			PageSize: 20, PageToken: "p2",
		}},
		{name: "start as a time", args: []string{"-start", "2026-03-01T10:00:00+01:00", "-status", "OK", "-cache-hit", "yes"},
			want: &auditv1.ListConversationsRequest{StartTime: timestamppb.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)),
				Status: auditv1.Status_STATUS_OK, CacheHit: proto.Bool(true)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, url := serve(t)
			code, _, stderr := run(t, url, append([]string{"audit", "list"}, tt.args...)...)
			require.Equal(t, command.ExitOK, code, stderr)
			require.Len(t, f.lists, 1)
			require.True(t, proto.Equal(tt.want, f.lists[0]), "want %v\ngot  %v", tt.want, f.lists[0])
		})
	}
}

func TestListOutput(t *testing.T) {
	t.Parallel()
	_, url := serve(t)

	code, stdout, stderr := run(t, url, "audit", "list")
	require.Equal(t, command.ExitOK, code, stderr)
	golden(t, "list", stdout)
	require.Equal(t, "more: -page-token p2\n", stderr)

	code, stdout, stderr = run(t, url, "audit", "list", "-all")
	require.Equal(t, command.ExitOK, code, stderr)
	golden(t, "list-all", stdout)
	require.Empty(t, stderr)

	code, stdout, _ = run(t, url, "-o", "json", "-grpc", "audit", "list")
	require.Equal(t, command.ExitOK, code)
	var doc struct {
		Conversations []struct {
			RequestID string `json:"requestId"`
		} `json:"conversations"`
		NextPageToken string `json:"nextPageToken"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &doc))
	require.Len(t, doc.Conversations, 2)
	require.Equal(t, "p2", doc.NextPageToken)
}

func TestGet(t *testing.T) {
	t.Parallel()
	_, url := serve(t)
	id := conversation(1).GetRequestId()

	code, stdout, stderr := run(t, url, "audit", "get", id)
	require.Equal(t, command.ExitOK, code, stderr)
	golden(t, "get", stdout)

	code, stdout, _ = run(t, url, "-o", "json", "audit", "get", id)
	require.Equal(t, command.ExitOK, code)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &doc))
	require.Equal(t, id, doc["requestId"])

	code, _, stderr = run(t, url, "audit", "get", "0195f0c4-0000-7000-8000-0000000000ff")
	require.Equal(t, command.ExitError, code)
	require.Equal(t, "parley: get conversation: not_found: conversation not found\n", stderr)
}

func TestStats(t *testing.T) {
	t.Parallel()
	f, url := serve(t)
	code, stdout, stderr := run(t, url, "audit", "stats", "-bucket", "day", "-group-by", "component", "-since", "7d", "-model", "m")
	require.Equal(t, command.ExitOK, code, stderr)
	golden(t, "stats", stdout)
	want := &auditv1.GetUsageStatsRequest{
		Bucket: auditv1.UsageBucket_USAGE_BUCKET_DAY, GroupBy: []auditv1.UsageDimension{auditv1.UsageDimension_USAGE_DIMENSION_COMPONENT},
		StartTime: timestamppb.New(now.Add(-7 * 24 * time.Hour)), Model: "m",
	}
	require.True(t, proto.Equal(want, f.stats), "got %v", f.stats)

	code, stdout, _ = run(t, url, "-o", "json", "audit", "stats", "-bucket", "hour")
	require.Equal(t, command.ExitOK, code)
	require.True(t, json.Valid([]byte(stdout)))
	require.Equal(t, auditv1.UsageBucket_USAGE_BUCKET_HOUR, f.stats.GetBucket())
}

// TestStatsByKey: usage per API key, and an admin naming the tenant it queries.
func TestStatsByKey(t *testing.T) {
	t.Parallel()
	f, url := serve(t)
	code, stdout, stderr := run(t, url, "audit", "stats", "-group-by", "key", "-tenant", "team-a")
	require.Equal(t, command.ExitOK, code, stderr)
	golden(t, "stats-by-key", stdout)
	require.Equal(t, []auditv1.UsageDimension{auditv1.UsageDimension_USAGE_DIMENSION_KEY}, f.stats.GetGroupBy())
	require.Equal(t, "team-a", f.statsTenant)
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no command", args: nil, wantErr: "want a command: converse, components or audit"},
		{name: "audit alone", args: []string{"audit"}, wantErr: "want audit list"},
		{name: "unknown command", args: []string{"audit", "delete"}, wantErr: "unknown command audit delete"},
		{name: "not a command", args: []string{"chat", "list"}, wantErr: "unknown command chat"},
		{name: "bad output", args: []string{"-o", "yaml", "audit", "list"}, wantErr: "-o must be table or json"},
		{name: "bad output after the command", args: []string{"audit", "list", "-o", "yaml"}, wantErr: "-o must be table or json"},
		{name: "no timeout", args: []string{"audit", "stats", "-timeout", "0s"}, wantErr: "-timeout must be positive"},
		{name: "unknown flag", args: []string{"audit", "list", "-colour"}, wantErr: "flag provided but not defined"},
		{name: "bad status", args: []string{"audit", "list", "-status", "fine"}, wantErr: "-status"},
		{name: "bad cache hit", args: []string{"audit", "list", "-cache-hit", "maybe"}, wantErr: "-cache-hit"},
		{name: "bad min latency", args: []string{"audit", "list", "-min-latency", "slow"}, wantErr: "-min-latency"},
		{name: "bad since", args: []string{"audit", "list", "-since", "a while"}, wantErr: "-since"},
		{name: "since and start", args: []string{"audit", "list", "-since", "1h", "-start", "2026-03-01"}, wantErr: "exclude each other"},
		{name: "bad start", args: []string{"audit", "list", "-start", "yesterday"}, wantErr: "-start"},
		{name: "bad end", args: []string{"audit", "stats", "-end", "03/01/2026"}, wantErr: "-end"},
		{name: "negative page size", args: []string{"audit", "list", "-page-size", "-1"}, wantErr: "-page-size"},
		{name: "stray argument", args: []string{"audit", "list", "extra"}, wantErr: "takes 0 argument"},
		{name: "get without id", args: []string{"audit", "get"}, wantErr: "takes 1 argument"},
		{name: "bad bucket", args: []string{"audit", "stats", "-bucket", "week"}, wantErr: "-bucket"},
		{name: "bad group by", args: []string{"audit", "stats", "-group-by", "tenant"}, wantErr: "-group-by"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := run(t, "http://127.0.0.1:1", tt.args...)
			require.Equal(t, command.ExitUsage, code)
			require.Empty(t, stdout)
			require.Contains(t, stderr, tt.wantErr)
		})
	}
}

func TestRouterUnreachable(t *testing.T) {
	t.Parallel()
	code, _, stderr := run(t, "http://127.0.0.1:1", "-timeout", "2s", "audit", "list")
	require.Equal(t, command.ExitError, code)
	require.Contains(t, stderr, "list conversations: unavailable")
	require.Contains(t, stderr, "(is the router running at http://127.0.0.1:1? start it with make up, or set -router or $PARLEY_ROUTER_URL)")
}
