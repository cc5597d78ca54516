package daprapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// echoConverser answers like Dapr's echo component (texts joined by newlines, a tool call
// per request tool, word-count usage), in process: the API layer's tests need no network.
// The real echo provider and the whole path are tested end to end in integration/.
type echoConverser struct{}

// echoProviderTime is the provider time echoConverser reports.
const echoProviderTime = 40 * time.Millisecond

func (echoConverser) Lookup(name string) (conversation.Component, bool) {
	return conversation.Component{Name: name, Type: "conversation.echo"}, name == "echo"
}

func (echoConverser) Converse(_ context.Context, req conversation.Request) (*conversation.Result, error) {
	var texts []string
	choice := &providerv1.Choice{FinishReason: "stop"}
	for i, t := range req.Provider.GetTools() {
		var keys []string
		for k := range t.GetParameters().GetFields()["properties"].GetStructValue().GetFields() {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		choice.ToolCalls = append(choice.ToolCalls, &providerv1.ToolCall{Id: strconv.Itoa(i), Name: t.GetName(), Arguments: strings.Join(keys, ",")})
		choice.FinishReason = "tool_calls"
	}
	for _, m := range req.Provider.GetMessages() {
		for _, p := range m.GetParts() {
			if p.GetText() != "" {
				texts = append(texts, p.GetText())
			}
		}
	}
	choice.Content = strings.Join(texts, "\n")
	n := uint64(len(strings.Fields(choice.Content)))
	return &conversation.Result{RequestID: "r1", ProviderTime: echoProviderTime, Response: &providerv1.Response{
		Choices: []*providerv1.Choice{choice},
		Usage:   &providerv1.Usage{PromptTokens: n, CompletionTokens: n, TotalTokens: 2 * n},
	}}, nil
}

func (echoConverser) List() []conversation.Component {
	return []conversation.Component{{Name: "echo", Type: "conversation.echo"}}
}

func newTestHandler() *Handler {
	c := echoConverser{}
	return New(c, c, Options{MaxBodyBytes: 1 << 16, Timeout: time.Second}, slog.New(slog.DiscardHandler))
}

func serve(h *Handler, version, name, body string) *httptest.ResponseRecorder {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0-alpha1/conversation/{name}/converse", h.HTTPAlpha1)
	mux.HandleFunc("POST /v1.0-alpha2/conversation/{name}/converse", h.HTTPAlpha2)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1.0-"+version+"/conversation/"+name+"/converse", strings.NewReader(body))
	mux.ServeHTTP(rec, req)
	return rec
}

func TestHTTPExchanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, version, component, body string
		wantStatus                     int
		wantBody                       string
	}{
		{"alpha1 echo", "alpha1", "echo", `{"inputs":[{"content":"a"},{"content":"b c","role":"ai"}]}`, 200, `{"outputs":[{"result":"a\nb c"}]}`},
		{"alpha1 name in body loses to url", "alpha1", "echo", `{"name":"other","inputs":[{"content":"x"}]}`, 200, `{"outputs":[{"result":"x"}]}`},
		{"alpha1 literal scrubPII names only", "alpha1", "echo", `{"contextId":"ignored","inputs":[{"content":"x","scrub_pii":true}]}`, 200, `{"outputs":[{"result":"x"}]}`},
		{"alpha2 usage and index omitted", "alpha2", "echo", `{"inputs":[{"messages":[{"ofDeveloper":{"content":[{"text":"one two three"}]}}]}]}`, 200,
			`{"outputs":[{"choices":[{"finishReason":"stop","message":{"content":"one two three"}}],"usage":{"completionTokens":"3","promptTokens":"3","totalTokens":"6"}}]}`},
		{"alpha2 tool choice by name", "alpha2", "echo", `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"x"}]}}]}],"tools":[{"function":{"name":"f","parameters":{"properties":{"b":{},"a":{}}}}}],"toolChoice":"f"}`, 200,
			`{"outputs":[{"choices":[{"finishReason":"tool_calls","message":{"content":"x","toolCalls":[{"id":"0","function":{"name":"f","arguments":"a,b"}}]}}],"usage":{"completionTokens":"1","promptTokens":"1","totalTokens":"2"}}]}`},
		{"alpha2 tool choice name without tools passes", "alpha2", "echo", `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"x"}]}}]}],"toolChoice":"anything"}`, 200,
			`{"outputs":[{"choices":[{"finishReason":"stop","message":{"content":"x"}}],"usage":{"completionTokens":"1","promptTokens":"1","totalTokens":"2"}}]}`},
		{"alpha2 double is a string too", "alpha2", "echo", `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"x"}]}}]}],"temperature":"0.5"}`, 200,
			`{"outputs":[{"choices":[{"finishReason":"stop","message":{"content":"x"}}],"usage":{"completionTokens":"1","promptTokens":"1","totalTokens":"2"}}]}`},
		{"not found before inputs", "alpha2", "nope", `{}`, 400, `{"errorCode":"ERR_CONVERSATION_NOT_FOUND","message":"failed finding conversation component nope"}`},
		{"malformed before not found", "alpha2", "nope", `[`, 400, ``},
		{"bare any is malformed", "alpha1", "echo", `{"inputs":[{"content":"x"}],"parameters":{"max_tokens":100}}`, 400, ``},
	}
	h := newTestHandler()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := serve(h, tt.version, tt.component, tt.body)
			require.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			if tt.wantBody != "" {
				require.JSONEq(t, tt.wantBody, rec.Body.String())
			}
			if tt.wantStatus == 200 {
				require.Equal(t, "miss", rec.Header().Get(CacheHeader))
				require.Equal(t, "r1", rec.Header().Get(RequestIDHeader))
				requireServerTiming(t, rec.Header().Get("Server-Timing"), echoProviderTime)
			} else {
				require.Empty(t, rec.Header().Get("Server-Timing"))
				require.Contains(t, rec.Body.String(), `"errorCode":"ERR_`)
			}
		})
	}
}

func TestAlpha2Usage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   *providerv1.Usage
		want string
	}{
		{"nil", nil, `null`},
		{"all zero", &providerv1.Usage{}, `null`},
		{"totals only", &providerv1.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}, `{"completionTokens":"2","promptTokens":"1","totalTokens":"3"}`},
		{"details", &providerv1.Usage{TotalTokens: 3, PromptCachedTokens: 5, CompletionReasoningTokens: 7},
			`{"totalTokens":"3","completionTokensDetails":{"reasoningTokens":"7"},"promptTokensDetails":{"cachedTokens":"5"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := alpha2Usage(tt.in)
			got := "null"
			if u != nil {
				b, err := encodeOptions.Marshal(u)
				require.NoError(t, err)
				got = string(b)
			}
			require.JSONEq(t, tt.want, got)
		})
	}
}

// FuzzHTTPBody throws arbitrary bodies at both versions: the handler never panics, and
// answers 200 with JSON or a Dapr error body.
func FuzzHTTPBody(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `[`, `{"inputs":[{"content":"x","scrubPII":true}]}`,
		`{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"x"}]}}]}],"tools":[{"function":{"name":"f"}}],"toolChoice":"required"}`,
		`{"inputs":[{"messages":[{"ofAssistant":{"toolCalls":[{"id":"1"}]}}]}]}`,
		`{"inputs":[{"messages":[{"ofTool":{"toolId":"t","name":"n","content":[{"text":"r"}]}}]}],"promptCacheRetention":"1s","responseFormat":{"type":"object"}}`,
	} {
		f.Add("alpha1", s)
		f.Add("alpha2", s)
	}
	h := newTestHandler()
	f.Fuzz(func(t *testing.T, version, body string) {
		if version != "alpha1" {
			version = "alpha2"
		}
		rec := serve(h, version, "echo", body)
		switch rec.Code {
		case http.StatusOK:
			require.True(t, json.Valid(rec.Body.Bytes()), rec.Body.String())
		case http.StatusBadRequest, http.StatusInternalServerError:
			var e struct{ ErrorCode, Message string }
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), rec.Body.String())
			require.True(t, strings.HasPrefix(e.ErrorCode, "ERR_"), rec.Body.String())
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	})
}

// TestErrorsMasked checks that Dapr's INVOKE error carries the provider's message but
// never Parley's internals (scrubber, audit stream, anything unexpected): those get an
// error id, and the log line with the cause carries the same id.
func TestErrorsMasked(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	h := New(echoConverser{}, echoConverser{}, Options{}, slog.New(slog.NewJSONHandler(&logs, nil)))
	tests := []struct {
		err        error
		wantCode   string
		wantStatus int
		wantMsg    string
		internal   string
	}{
		{err: &conversation.InvalidRequestError{Detail: "the request has 5000 texts"}, wantCode: "ERR_CONVERSATION_INVALID_PARMS", wantStatus: 400,
			wantMsg: "failed conversing with component echo: invalid params: the request has 5000 texts"},
		{err: &conversation.ProviderError{Message: "rate limited by provider"}, wantCode: "ERR_CONVERSATION_INVOKE", wantStatus: 500,
			wantMsg: "failed conversing with component echo: rate limited by provider"},
		{err: &conversation.AuditError{Err: errors.New("nats: maximum payload exceeded")}, wantCode: "ERR_CONVERSATION_INVOKE", wantStatus: 500,
			internal: "nats: maximum payload exceeded"},
		{err: &conversation.ScrubError{Err: errors.New("dial tcp 10.1.2.3:3510: connection refused")}, wantCode: "ERR_CONVERSATION_INVOKE", wantStatus: 500,
			internal: "10.1.2.3"},
		{err: errors.New("request id: entropy exhausted"), wantCode: "ERR_CONVERSATION_INVOKE", wantStatus: 500, internal: "entropy"},
	}
	for _, tt := range tests {
		logs.Reset()
		derr := h.toDapr(t.Context(), "echo", tt.err)
		require.Equal(t, tt.wantCode, derr.ErrorCode)
		require.Equal(t, tt.wantStatus, derr.HTTPStatus)
		if tt.internal == "" {
			require.Equal(t, tt.wantMsg, derr.Message)
			continue
		}
		require.NotContains(t, derr.Message, tt.internal)
		m := regexp.MustCompile(`^failed conversing with component echo: internal error \(id ([0-9a-f]+)\)$`).FindStringSubmatch(derr.Message)
		require.Len(t, m, 2, derr.Message)
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(logs.String()), &rec))
		require.Equal(t, m[1], rec["error_id"])
		require.Contains(t, rec["err"], tt.internal)
	}
}

func TestDeepBodyRefused(t *testing.T) {
	t.Parallel()
	h := newTestHandler()
	deep := strings.Repeat(`{"a":`, 4900) + "1" + strings.Repeat("}", 4900)
	body := `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"hi"}]}}]}],"tools":[{"function":{"name":"f","parameters":` + deep + `}}]}`
	rec := serve(h, "alpha2", "echo", body)
	require.Equal(t, http.StatusBadRequest, rec.Code)
	var got map[string]string
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	require.Equal(t, "ERR_MALFORMED_REQUEST", got["errorCode"])
	require.Equal(t, "failed deserializing HTTP body: JSON nested deeper than 72 levels", got["message"])

	// Parameters nested to the limit fit the envelope.
	ok := strings.Repeat(`{"a":`, 63) + "{}" + strings.Repeat("}", 63)
	body = `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"hi"}]}}]}],"tools":[{"function":{"name":"f","parameters":` + ok + `}}]}`
	require.Equal(t, http.StatusOK, serve(h, "alpha2", "echo", body).Code)
}

// TestHugeComponentNameBounded: a 3 MB component name once became a 3 MB log line; the
// answer (and so every log line about it) keeps a bounded prefix.
func TestHugeComponentNameBounded(t *testing.T) {
	t.Parallel()
	name := strings.Repeat("c", 3<<20)
	rec := serve(newTestHandlerWithBody(4<<20), "alpha2", name, `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"hi"}]}}]}]}`)
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Less(t, rec.Body.Len(), 1024)
	require.Contains(t, rec.Body.String(), `"errorCode":"ERR_CONVERSATION_NOT_FOUND"`)
}

func newTestHandlerWithBody(maxBody int64) *Handler {
	c := echoConverser{}
	return New(c, c, Options{MaxBodyBytes: maxBody, Timeout: time.Second}, slog.New(slog.DiscardHandler))
}

// requireServerTiming checks a Server-Timing value: the provider's time as the converser
// reported it, and the gateway's the rest of the total (none when the provider's is longer,
// as with a converser that answers at once but reports a provider time).
func requireServerTiming(t *testing.T, value string, provider time.Duration) {
	t.Helper()
	got := map[string]float64{}
	for part := range strings.SplitSeq(value, ", ") {
		name, dur, ok := strings.Cut(part, ";dur=")
		require.True(t, ok, "Server-Timing %q", value)
		v, err := strconv.ParseFloat(dur, 64)
		require.NoError(t, err, "Server-Timing %q", value)
		got[name] = v
	}
	require.Len(t, got, 3, "Server-Timing %q", value)
	require.InDelta(t, float64(provider.Microseconds())/1000, got["provider"], 1e-9)
	require.InDelta(t, max(0, got["total"]-got["provider"]), got["gateway"], 0.0015)
}
