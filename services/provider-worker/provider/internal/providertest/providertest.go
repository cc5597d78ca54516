// Package providertest holds the test fixtures shared by the provider packages: a fake
// provider server that records every request, a transport that answers without a network,
// and the table of failure cases every HTTP provider must classify the same way.
package providertest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// Exchange is one request the fake server received.
type Exchange struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
}

// Reply is what the fake server answers.
type Reply struct {
	Status int
	Header http.Header
	Body   string
}

// Server is a fake provider: it records each request and answers with Reply.
type Server struct {
	*httptest.Server

	mu        sync.Mutex
	exchanges []Exchange
	reply     Reply
}

// NewServer starts a fake provider answering reply to every request; it stops with t.
func NewServer(t testing.TB, reply Reply) *Server {
	t.Helper()
	s := &Server{reply: reply}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.exchanges = append(s.exchanges, Exchange{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body,
	})
	reply := s.reply
	s.mu.Unlock()
	for k, vs := range reply.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	status := reply.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, reply.Body)
}

// Exchanges returns the requests received so far.
func (s *Server) Exchanges() []Exchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Exchange(nil), s.exchanges...)
}

// Only returns the single request received, failing t otherwise.
func (s *Server) Only(t testing.TB) Exchange {
	t.Helper()
	ex := s.Exchanges()
	require.Len(t, ex, 1, "requests received")
	return ex[0]
}

// RoundTripFunc is an http.RoundTripper made of a function.
type RoundTripFunc func(*http.Request) (*http.Response, error)

// RoundTrip implements http.RoundTripper.
func (f RoundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Capture returns a transport that records the URL and headers of each request and
// answers status with body, without any network: it checks default endpoints.
func Capture(status int, body string, got *[]*http.Request) http.RoundTripper {
	var mu sync.Mutex
	return RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		*got = append(*got, r.Clone(context.WithoutCancel(r.Context())))
		mu.Unlock()
		if r.Body != nil {
			_, _ = io.Copy(io.Discard, r.Body)
			_ = r.Body.Close()
		}
		return &http.Response{
			StatusCode: status,
			Header:     http.Header{"Content-Type": {"application/json"}},
			Body:       io.NopCloser(strings.NewReader(body)),
			Request:    r,
		}, nil
	})
}

// Converser is a provider under test.
type Converser interface {
	Converse(ctx context.Context, req *providerv1.Request) (*providerv1.Response, error)
}

// Factory builds the provider under test against endpoint (a base URL), with key, the
// clock now and no other setting.
type Factory func(t *testing.T, endpoint, key string, now func() time.Time) Converser

// Secret texts that must never show up in an error.
const (
	Key        = "sk-test-0123456789abcdefSECRET"
	PromptText = "my secret prompt about the merger"
)

// Request is a small conversation holding PromptText.
func Request() *providerv1.Request {
	return &providerv1.Request{Messages: []*providerv1.Message{{
		Role:  providerv1.Role_ROLE_USER,
		Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: PromptText}}},
	}}}
}

// ErrorBody renders an error body the way the provider under test does.
type ErrorBody func(typ, code, message string) string

// OpenAIErrorBody is OpenAI's {"error":{"message","type","param","code"}}.
func OpenAIErrorBody(typ, code, message string) string {
	return fmt.Sprintf(`{"error":{"message":%q,"type":%q,"param":null,"code":%q}}`, message, typ, code)
}

// Clock returns the fixed time the error cases run at; HTTP dates have whole seconds.
func Clock() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }

type errorCase struct {
	name        string
	reply       Reply
	handler     func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) // replaces reply when set
	timeout     time.Duration                                                         // a context deadline for the call
	cancel      bool                                                                  // cancel the context before the call
	closed      bool                                                                  // call a server that is gone
	wantCode    providerv1.ErrorCode
	wantRetry   bool
	wantAfter   time.Duration
	wantErrIs   error
	wantMessage string // a substring of the error
}

// RunErrorCases checks how the provider classifies every failure: 400, 401, 403, 404,
// 422, 429 with Retry-After in seconds, as an HTTP date and in retry-after-ms, an
// out-of-credit 429, 500, 503, malformed and empty answers, a slow answer and a hung body
// (the context deadline ends both), a cancelled call and a refused connection. Every error
// must be a *provider.Error with the right code and Retry-After and must hold neither Key
// nor PromptText.
func RunErrorCases(t *testing.T, newProvider Factory, errorBody ErrorBody) {
	t.Helper()
	leaky := errorBody("invalid_request_error", "invalid_api_key",
		"Incorrect API key provided: "+Key+". You can find your API key at https://example.com. "+PromptText)
	cases := []errorCase{
		{
			name:     "400 bad request",
			reply:    Reply{Status: 400, Body: errorBody("invalid_request_error", "context_length_exceeded", PromptText)},
			wantCode: providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, wantMessage: "HTTP 400",
		},
		{
			name:     "422 unprocessable",
			reply:    Reply{Status: 422, Body: `{"detail":[{"msg":"` + PromptText + `"}]}`},
			wantCode: providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, wantMessage: "HTTP 422",
		},
		{
			name:     "401 bad key echoed by the provider",
			reply:    Reply{Status: 401, Body: leaky},
			wantCode: providerv1.ErrorCode_ERROR_CODE_INTERNAL, wantMessage: "authentication failed",
		},
		{
			name:     "403 forbidden",
			reply:    Reply{Status: 403, Body: leaky},
			wantCode: providerv1.ErrorCode_ERROR_CODE_INTERNAL, wantMessage: "HTTP 403",
		},
		{
			name:     "404 unknown model",
			reply:    Reply{Status: 404, Body: errorBody("invalid_request_error", "model_not_found", "no such model")},
			wantCode: providerv1.ErrorCode_ERROR_CODE_NOT_FOUND, wantMessage: "model_not_found",
		},
		{
			name: "429 Retry-After seconds",
			reply: Reply{Status: 429, Header: http.Header{"Retry-After": {"7"}},
				Body: errorBody("rate_limit_error", "rate_limit_exceeded", "slow down")},
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantAfter: 7 * time.Second,
			wantMessage: "HTTP 429",
		},
		{
			name: "429 Retry-After HTTP date",
			reply: Reply{Status: 429, Header: http.Header{"Retry-After": {Clock().Add(2 * time.Minute).Format(http.TimeFormat)}},
				Body: errorBody("rate_limit_error", "rate_limit_exceeded", "slow down")},
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantAfter: 2 * time.Minute,
		},
		{
			name: "429 retry-after-ms wins over Retry-After",
			reply: Reply{Status: 429, Header: http.Header{"Retry-After": {"2"}, "Retry-After-Ms": {"1500"}},
				Body: errorBody("rate_limit_error", "rate_limit_exceeded", "slow down")},
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantAfter: 1500 * time.Millisecond,
		},
		{
			name:     "429 out of credit",
			reply:    Reply{Status: 429, Body: errorBody("insufficient_quota", "insufficient_quota", "you exceeded your quota")},
			wantCode: providerv1.ErrorCode_ERROR_CODE_INTERNAL, wantMessage: "insufficient_quota",
		},
		{
			name:     "500 internal server error",
			reply:    Reply{Status: 500, Body: errorBody("server_error", "", "oops")},
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantMessage: "HTTP 500",
		},
		{
			name:     "503 overloaded with Retry-After",
			reply:    Reply{Status: 503, Header: http.Header{"Retry-After": {"30"}}, Body: "<html>overloaded</html>"},
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantAfter: 30 * time.Second,
			wantMessage: "HTTP 503",
		},
		{
			name:     "200 malformed JSON",
			reply:    Reply{Status: 200, Body: `{"choices":[{"message":{"content":"` + PromptText},
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantMessage: "decode response",
		},
		{
			name:     "200 HTML instead of JSON",
			reply:    Reply{Status: 200, Header: http.Header{"Content-Type": {"text/html"}}, Body: "<html>" + PromptText + "</html>"},
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantMessage: "decode response",
		},
		{
			name:     "200 without choices",
			reply:    Reply{Status: 200, Body: `{"id":"x","choices":[]}`},
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantMessage: "no choices",
		},
		{
			name: "slow answer ends at the deadline",
			handler: func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
				// The body must be read for the server to notice the client leaving.
				_, _ = io.Copy(io.Discard, r.Body)
				select {
				case <-r.Context().Done():
				case <-release:
				}
			},
			timeout:  50 * time.Millisecond,
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantErrIs: context.DeadlineExceeded,
		},
		{
			name: "hung body ends at the deadline",
			handler: func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, `{"choices":[{"index":0,"message":{"content":"par`)
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				}
				select {
				case <-r.Context().Done():
				case <-release:
				}
			},
			timeout:  50 * time.Millisecond,
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantErrIs: context.DeadlineExceeded,
		},
		{
			name:     "cancelled by the caller",
			reply:    Reply{Status: 200, Body: `{}`},
			cancel:   true,
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantErrIs: context.Canceled,
		},
		{
			name:     "connection refused",
			closed:   true,
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantMessage: "send request",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runErrorCase(t, newProvider, tc)
		})
	}
}

func runErrorCase(t *testing.T, newProvider Factory, tc errorCase) {
	release := make(chan struct{})
	h := func(w http.ResponseWriter, r *http.Request) {
		if tc.handler != nil {
			tc.handler(w, r, release)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		for k, vs := range tc.reply.Header {
			w.Header()[k] = vs
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(tc.reply.Status)
		_, _ = io.WriteString(w, tc.reply.Body)
	}
	srv := httptest.NewServer(http.HandlerFunc(h))
	t.Cleanup(srv.Close)
	// Cleanups run last-in first-out: handlers still waiting are released before Close
	// waits for them.
	t.Cleanup(func() { close(release) })
	endpoint := srv.URL
	if tc.closed {
		srv.Close()
	}
	p := newProvider(t, endpoint, Key, Clock)

	ctx := t.Context()
	if tc.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, tc.timeout)
		defer cancel()
	}
	if tc.cancel {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		cancel()
	}
	resp, err := p.Converse(ctx, Request())
	require.Error(t, err)
	require.Nil(t, resp)

	var pe *provider.Error
	require.ErrorAs(t, err, &pe, "error %v", err)
	require.Equal(t, tc.wantCode, pe.Code, "error %v", err)
	require.Equal(t, tc.wantCode, pe.ErrorCode())
	require.Equal(t, tc.wantRetry, pe.Retryable(), "error %v", err)
	require.Equal(t, tc.wantRetry, provider.IsRetryable(err))
	require.Equal(t, tc.wantAfter, pe.RetryAfter)
	if tc.wantErrIs != nil {
		require.ErrorIs(t, err, tc.wantErrIs)
	}
	RequireClean(t, err)
	if tc.wantMessage != "" {
		require.Contains(t, err.Error(), tc.wantMessage)
	}
}

// RequireClean fails t when err's text holds the key, the prompt, or the provider's free
// text message.
func RequireClean(t testing.TB, err error) {
	t.Helper()
	msg := err.Error()
	require.NotContains(t, msg, Key)
	require.NotContains(t, msg, Key[len(Key)-10:])
	require.NotContains(t, msg, PromptText)
	require.NotContains(t, msg, "Incorrect API key")
	require.NotContains(t, fmt.Sprintf("%+v", err), Key)
}

// RequireJSONEqual compares two JSON documents as values.
func RequireJSONEqual(t testing.TB, want string, got []byte) {
	t.Helper()
	require.JSONEq(t, want, string(got))
}

// New builds the provider of component c, as the worker's registry does.
type New func(c component.Component, opts provider.Options) (Converser, error)

// RequestCase is one conversation sent to a fake provider: the request the provider must
// make and the response it must make of the recorded answer.
type RequestCase struct {
	Name string
	// Metadata of the component; "{server}" in a value becomes the fake server's URL.
	Metadata map[string]string
	// Env holds the environment variables the provider sees.
	Env     map[string]string
	Request *providerv1.Request
	// Reply is the body of the fake's answer (status 200).
	Reply string
	// WantPath and WantQuery are the URL path and raw query the request must have.
	WantPath  string
	WantQuery string
	// WantHeader lists headers that must have exactly these values.
	WantHeader http.Header
	// WantNoHeader lists headers that must be absent.
	WantNoHeader []string
	// WantBody is the JSON body, compared as a JSON value.
	WantBody string
	// Want is the expected response.
	Want *providerv1.Response
}

// RunRequestCases sends every case to its own fake server and checks the request
// exactly (method, path, query, headers, JSON body) and the mapped response.
func RunRequestCases(t *testing.T, newProvider New, cases []RequestCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			srv := NewServer(t, Reply{Body: tc.Reply})
			md := make(map[string]string, len(tc.Metadata))
			for k, v := range tc.Metadata {
				md[k] = strings.ReplaceAll(v, "{server}", srv.URL)
			}
			p, err := newProvider(component.Component{Name: "c", Type: "conversation.x", Metadata: md}, provider.Options{
				LookupEnv: MapEnv(tc.Env),
			})
			require.NoError(t, err)
			got, err := p.Converse(t.Context(), tc.Request)
			require.NoError(t, err)

			ex := srv.Only(t)
			require.Equal(t, http.MethodPost, ex.Method)
			require.Equal(t, tc.WantPath, ex.Path)
			require.Equal(t, tc.WantQuery, ex.RawQuery)
			require.Equal(t, "application/json", ex.Header.Get("Content-Type"))
			for k, vs := range tc.WantHeader {
				require.Equal(t, vs, ex.Header.Values(k), "header %s", k)
			}
			for _, k := range tc.WantNoHeader {
				require.Empty(t, ex.Header.Values(k), "header %s", k)
			}
			RequireJSONEqual(t, tc.WantBody, ex.Body)
			RequireProtoEqual(t, tc.Want, got)
		})
	}
}

// RequireProtoEqual compares two protos.
func RequireProtoEqual(t testing.TB, want, got proto.Message) {
	t.Helper()
	if !proto.Equal(want, got) {
		require.Fail(t, "protos differ", "want: %s\ngot:  %s", prototext.Format(want), prototext.Format(got))
	}
}

// MapEnv returns a LookupEnv reading m.
func MapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// DefaultURL builds the provider of a component with metadata md and environment env,
// sends one request through a transport that never touches the network, and returns the
// URL and headers of that request: it checks default endpoints.
func DefaultURL(t *testing.T, newProvider New, md, env map[string]string) (string, http.Header) {
	t.Helper()
	var got []*http.Request
	p, err := newProvider(component.Component{Name: "c", Metadata: md}, provider.Options{
		LookupEnv: MapEnv(env),
		Transport: Capture(http.StatusOK, `{"choices":[{"index":0,"message":{"content":"ok"},"finish_reason":"stop"}]}`, &got),
	})
	require.NoError(t, err)
	_, err = p.Converse(t.Context(), Request())
	require.NoError(t, err)
	require.Len(t, got, 1)
	return got[0].URL.String(), got[0].Header
}

// Text builds a text part.
func Text(s string) *providerv1.Part { return &providerv1.Part{Kind: &providerv1.Part_Text{Text: s}} }

// ToolCall builds a tool-call part of type function.
func ToolCall(id, name, args string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{
		Id: id, Type: "function", Name: name, Arguments: args,
	}}}
}

// ToolResult builds a tool-result part.
func ToolResult(id, name, content string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_ToolResult{ToolResult: &providerv1.ToolResult{
		ToolCallId: id, Name: name, Content: content,
	}}}
}

// Msg builds a message.
func Msg(role providerv1.Role, parts ...*providerv1.Part) *providerv1.Message {
	return &providerv1.Message{Role: role, Parts: parts}
}

// Struct builds a Struct from a JSON object, failing t when it is not one.
func Struct(t testing.TB, js string) *structpb.Struct {
	t.Helper()
	var s structpb.Struct
	require.NoError(t, protojson.Unmarshal([]byte(js), &s))
	return &s
}
