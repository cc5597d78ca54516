package daprsdk_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestTokenGRPC: with DAPR_API_TOKEN set on the router, an SDK without the token or with
// a wrong one gets daprd's rejection (dapr/dapr pkg/api/grpc/auth.go): Unauthenticated,
// "Unauthorized", and an ErrorInfo detail naming the cause.
func TestTokenGRPC(t *testing.T) {
	need(t)
	t.Parallel()
	tests := []struct {
		name       string
		token      string
		wantDetail string
	}{
		{name: "missing", token: "", wantDetail: "missing api token in request metadata"},
		{name: "wrong", token: "not-" + apiToken, wantDetail: "authentication error: api token mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := newClient(t, "")
			client.WithAuthToken(tt.token)
			_, err2 := client.ConverseAlpha2(t.Context(), dapr.ConversationRequestAlpha2{Name: "echo", Inputs: inputs(input(user("hi")))})
			//nolint:staticcheck // alpha1 is deprecated, and under test
			_, err1 := client.ConverseAlpha1(t.Context(), dapr.NewConversationRequest("echo", []alpha1Input{{Content: "hi"}}))
			for _, err := range []error{err1, err2} {
				s, ok := status.FromError(err)
				require.True(t, ok, "not a gRPC status: %v", err)
				require.Equal(t, codes.Unauthenticated, s.Code(), "%v", err)
				require.Equal(t, "Unauthorized", s.Message())
				require.Len(t, s.Details(), 1)
				info, ok := s.Details()[0].(*errdetails.ErrorInfo)
				require.True(t, ok, "%v", s.Details())
				require.True(t, proto.Equal(&errdetails.ErrorInfo{
					Reason: "Unauthorized", Domain: "dapr.io",
					Metadata: map[string]string{"http.code": "401", "http.error_message": tt.wantDetail},
				}, info), "%v", info)
			}
		})
	}
	t.Run("health and reflection need no token", func(t *testing.T) {
		t.Parallel()
		for _, addr := range []string{st.RouterGRPCAddr(), strings.TrimPrefix(st.URL("router"), "http://")} {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			res, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "dapr.proto.runtime.v1.Dapr"})
			require.NoError(t, err)
			require.Equal(t, healthpb.HealthCheckResponse_SERVING, res.GetStatus())

			stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
			require.NoError(t, err)
			require.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{
				MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
			}))
			ref, err := stream.Recv()
			require.NoError(t, err)
			var names []string
			for _, s := range ref.GetListServicesResponse().GetService() {
				names = append(names, s.GetName())
			}
			require.Contains(t, names, "dapr.proto.runtime.v1.Dapr")
			require.NoError(t, stream.CloseSend())
		}
	})
}

type exchange struct {
	status int
	header http.Header
	body   string
}

func send(t *testing.T, method, url, contentType, token, body string) exchange {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewBufferString(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("dapr-api-token", token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return exchange{status: res.StatusCode, header: res.Header, body: string(b)}
}

// TestTokenHTTP: Dapr HTTP calls without the right token get daprd's 401 "invalid api
// token" (dapr/dapr pkg/http/middlewares.go), the native Connect API gets Unauthenticated,
// the OpenAI-compatible API OpenAI's 401 (and takes the token as a bearer token), and health,
// readiness and metrics stay open.
func TestTokenHTTP(t *testing.T) {
	need(t)
	t.Parallel()
	const alpha2Body = `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"well hello there"}]}}]}]}`
	const alpha2Answer = `{"outputs":[{"choices":[{"finishReason":"stop","message":{"content":"well hello there"}}],"usage":{"completionTokens":"3","promptTokens":"3","totalTokens":"6"}}]}`
	router := st.URL("router")
	tests := []struct {
		name       string
		method     string
		path       string
		token      string
		body       string
		wantStatus int
		wantBody   string // exact, or JSON when it starts with {
	}{
		{name: "alpha2 missing", method: http.MethodPost, path: "/v1.0-alpha2/conversation/echo-nocache/converse", body: alpha2Body, wantStatus: 401, wantBody: "invalid api token\n"},
		{name: "alpha2 wrong", method: http.MethodPost, path: "/v1.0-alpha2/conversation/echo-nocache/converse", token: "x" + apiToken, body: alpha2Body, wantStatus: 401, wantBody: "invalid api token\n"},
		{name: "alpha2 right", method: http.MethodPost, path: "/v1.0-alpha2/conversation/echo-nocache/converse", token: apiToken, body: alpha2Body, wantStatus: 200, wantBody: alpha2Answer},
		{name: "alpha1 missing", method: http.MethodPost, path: "/v1.0-alpha1/conversation/echo-nocache/converse", body: `{"inputs":[{"content":"hi"}]}`, wantStatus: 401, wantBody: "invalid api token\n"},
		{name: "alpha1 right", method: http.MethodPost, path: "/v1.0-alpha1/conversation/echo-nocache/converse", token: apiToken, body: `{"inputs":[{"content":"hi"}]}`, wantStatus: 200, wantBody: `{"outputs":[{"result":"hi"}]}`},
		{name: "errors need the token too", method: http.MethodPost, path: "/v1.0-alpha2/conversation/nope/converse", body: alpha2Body, wantStatus: 401, wantBody: "invalid api token\n"},
		{name: "metadata missing", method: http.MethodGet, path: "/v1.0/metadata", wantStatus: 401, wantBody: "invalid api token\n"},
		{name: "metadata right", method: http.MethodGet, path: "/v1.0/metadata", token: apiToken, wantStatus: 200},
		{name: "healthz", method: http.MethodGet, path: "/healthz", wantStatus: 200, wantBody: "ok\n"},
		{name: "readyz", method: http.MethodGet, path: "/readyz", wantStatus: 200},
		{name: "metrics", method: http.MethodGet, path: "/metrics", wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := send(t, tt.method, router+tt.path, "application/json", tt.token, tt.body)
			require.Equal(t, tt.wantStatus, res.status, res.body)
			switch {
			case tt.wantStatus == http.StatusUnauthorized:
				require.Equal(t, "text/plain; charset=utf-8", res.header.Get("Content-Type"))
				require.Equal(t, tt.wantBody, res.body)
			case strings.HasPrefix(tt.wantBody, "{"):
				require.JSONEq(t, tt.wantBody, res.body)
			case tt.wantBody != "":
				require.Equal(t, tt.wantBody, res.body)
			}
		})
	}

	t.Run("openai-compatible api", func(t *testing.T) {
		t.Parallel()
		const body = `{"model":"echo-nocache","messages":[{"role":"user","content":"hello"}]}`
		tests := []struct {
			name, bearer, daprToken string
			wantStatus              int
			wantCode                any // the error's code; nil for none
		}{
			{name: "missing", wantStatus: 401, wantCode: nil},
			{name: "wrong bearer", bearer: "x" + apiToken, wantStatus: 401, wantCode: "invalid_api_key"},
			{name: "wrong dapr-api-token", daprToken: "x" + apiToken, wantStatus: 401, wantCode: "invalid_api_key"},
			{name: "bearer", bearer: apiToken, wantStatus: 200},
			{name: "dapr-api-token", daprToken: apiToken, wantStatus: 200},
		}
		for _, tt := range tests {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, router+"/v1/chat/completions", strings.NewReader(body))
			require.NoError(t, err)
			if tt.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tt.bearer)
			}
			if tt.daprToken != "" {
				req.Header.Set("dapr-api-token", tt.daprToken)
			}
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			b, err := io.ReadAll(res.Body)
			_ = res.Body.Close()
			require.NoError(t, err)
			require.Equal(t, tt.wantStatus, res.StatusCode, "%s: %s", tt.name, b)
			require.Equal(t, "application/json", res.Header.Get("Content-Type"), tt.name)
			if tt.wantStatus == http.StatusOK {
				require.Contains(t, string(b), `"content":"hello"`, tt.name)
				continue
			}
			var e struct {
				Error map[string]any `json:"error"`
			}
			require.NoError(t, json.Unmarshal(b, &e), string(b))
			require.Equal(t, "invalid_request_error", e.Error["type"], tt.name)
			require.Equal(t, tt.wantCode, e.Error["code"], tt.name)
			require.Nil(t, e.Error["param"], tt.name)
		}
	})

	t.Run("native connect api", func(t *testing.T) {
		t.Parallel()
		const path = "/parley.conversation.v1.ConversationService/Converse"
		const body = `{"component":"echo-nocache","messages":[{"role":"ROLE_USER","content":"hello"}]}`
		for _, token := range []string{"", "x" + apiToken} {
			res := send(t, http.MethodPost, router+path, "application/json", token, body)
			require.Equal(t, http.StatusUnauthorized, res.status, res.body)
			var wire struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Details []struct {
					Type string `json:"type"`
				} `json:"details"`
			}
			require.NoError(t, json.Unmarshal([]byte(res.body), &wire), res.body)
			require.Equal(t, "unauthenticated", wire.Code)
			require.Equal(t, "Unauthorized", wire.Message)
			require.Len(t, wire.Details, 1)
			require.Equal(t, "google.rpc.ErrorInfo", wire.Details[0].Type)
		}
		res := send(t, http.MethodPost, router+path, "application/json", apiToken, body)
		require.Equal(t, http.StatusOK, res.status, res.body)
		require.Contains(t, res.body, `"content":"hello"`)
	})
}
