package integration_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDaprHTTPExchanges compares request/response pairs as JSON values: Dapr's own
// integration-test examples (reference: dapr-conversation-api.md §1.3-1.5) and more.
func TestDaprHTTPExchanges(t *testing.T) {
	need(t)
	t.Parallel()
	tests := []struct {
		name       string
		path       string
		body       string
		wantStatus int
		wantBody   string
	}{
		{
			name: "alpha1 echo", path: "/v1.0-alpha1/conversation/echo-nocache/converse",
			body:       `{"inputs":[{"content":"well hello there"}]}`,
			wantStatus: 200, wantBody: `{"outputs":[{"result":"well hello there"}]}`,
		},
		{
			name: "alpha1 scrub one input", path: "/v1.0-alpha1/conversation/echo-nocache/converse",
			body:       `{"inputs":[{"content":"well hello there, my phone number is +2222222222","scrubPII":true}]}`,
			wantStatus: 200, wantBody: `{"outputs":[{"result":"well hello there, my phone number is <PHONE_NUMBER>"}]}`,
		},
		{
			name: "alpha1 scrub outputs joins inputs", path: "/v1.0-alpha1/conversation/echo-nocache/converse",
			body:       `{"inputs":[{"content":"well hello there from 10.8.9.1"},{"content":"well hello there, my email is test@test.com"}],"scrubPII":true}`,
			wantStatus: 200, wantBody: `{"outputs":[{"result":"well hello there from <IP>\nwell hello there, my email is <EMAIL_ADDRESS>"}]}`,
		},
		{
			name: "alpha1 contextID and parameters echoed, unknown fields ignored", path: "/v1.0-alpha1/conversation/echo-nocache/converse",
			body:       `{"contextID":"c1","contextId":"ignored","inputs":[{"content":"hi","role":"system"}],"parameters":{"p":{"@type":"type.googleapis.com/google.protobuf.Int64Value","value":"100"}},"bogus":1}`,
			wantStatus: 200, wantBody: `{"contextID":"c1","outputs":[{"result":"hi","parameters":{"p":{"@type":"type.googleapis.com/google.protobuf.Int64Value","value":"100"}}}]}`,
		},
		{
			name: "alpha1 no inputs", path: "/v1.0-alpha1/conversation/echo/converse",
			body:       `{"metadata":{"model":"daprGPT"}}`,
			wantStatus: 400, wantBody: `{"errorCode":"ERR_CONVERSATION_MISSING_INPUTS","message":"failed conversing with component echo: missing inputs in request"}`,
		},
		{
			name: "alpha1 empty body", path: "/v1.0-alpha1/conversation/echo/converse", body: ``,
			wantStatus: 400, wantBody: `{"errorCode":"ERR_CONVERSATION_MISSING_INPUTS","message":"failed conversing with component echo: missing inputs in request"}`,
		},
		{
			name: "alpha2 user message", path: "/v1.0-alpha2/conversation/echo-nocache/converse",
			body:       `{"inputs":[{"messages":[{"ofUser":{"name":"user name","content":[{"text":"user message"}]}}]}]}`,
			wantStatus: 200, wantBody: `{"outputs":[{"choices":[{"finishReason":"stop","message":{"content":"user message"}}],"usage":{"completionTokens":"2","promptTokens":"2","totalTokens":"4"}}]}`,
		},
		{
			name: "alpha2 tool message", path: "/v1.0-alpha2/conversation/echo-nocache/converse",
			body:       `{"inputs":[{"messages":[{"ofTool":{"toolId":"tool-123","name":"tool name","content":[{"text":"tool message"}]}}]}]}`,
			wantStatus: 200, wantBody: `{"outputs":[{"choices":[{"finishReason":"stop","message":{"content":"Tool Response for tool ID 'tool-123' with name 'tool name': tool message"}}],"usage":{"completionTokens":"12","promptTokens":"12","totalTokens":"24"}}]}`,
		},
		{
			name: "alpha2 tools, context id, every option", path: "/v1.0-alpha2/conversation/echo-nocache/converse",
			body: `{"contextId":"test-conversation-123","inputs":[{"messages":[{"ofUser":{"content":[{"text":"well hello there"}]}}]},
				{"messages":[{"ofSystem":{"content":[{"text":"You are a helpful assistant"}]}}]}],
				"scrubPii":true,"temperature":0.7,"responseFormat":{"type":"object","properties":{"a":{"type":"string"}}},"promptCacheRetention":"86400s",
				"tools":[{"function":{"name":"test_function","description":"A test function",
				"parameters":{"type":"object","properties":{"param1":{"type":"string"}},"required":["param1"]}}}],"toolChoice":"auto"}`,
			wantStatus: 200, wantBody: `{"contextId":"test-conversation-123","outputs":[{"choices":[{"finishReason":"tool_calls",
				"message":{"content":"well hello there\nYou are a helpful assistant","toolCalls":[{"id":"0","function":{"name":"test_function","arguments":"param1"}}]}}],
				"usage":{"completionTokens":"8","promptTokens":"8","totalTokens":"16"}}]}`,
		},
		{
			name: "alpha2 proto field names accepted", path: "/v1.0-alpha2/conversation/echo-nocache/converse",
			body:       `{"context_id":"x","inputs":[{"messages":[{"of_user":{"content":[{"text":"a b"}]}}],"scrub_pii":false}]}`,
			wantStatus: 200, wantBody: `{"contextId":"x","outputs":[{"choices":[{"finishReason":"stop","message":{"content":"a b"}}],"usage":{"completionTokens":"2","promptTokens":"2","totalTokens":"4"}}]}`,
		},
		{
			name: "alpha2 assistant tool call without function", path: "/v1.0-alpha2/conversation/echo/converse",
			body:       `{"inputs":[{"messages":[{"ofAssistant":{"toolCalls":[{"id":"call_123"}]}}]}]}`,
			wantStatus: 400, wantBody: `{"errorCode":"ERR_CONVERSATION_INVALID_PARMS","message":"failed conversing with component echo: invalid params: tool types cannot be nil"}`,
		},
		{
			name: "alpha2 message without type", path: "/v1.0-alpha2/conversation/echo/converse",
			body:       `{"inputs":[{"messages":[{"invalidField":{"content":[{"text":"x"}]}}]}]}`,
			wantStatus: 400, wantBody: `{"errorCode":"ERR_CONVERSATION_INVALID_PARMS","message":"failed conversing with component echo: invalid params: message type cannot be nil"}`,
		},
		{
			name: "alpha2 tool choice required without tools", path: "/v1.0-alpha2/conversation/echo/converse",
			body:       `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"x"}]}}]}],"toolChoice":"required"}`,
			wantStatus: 400, wantBody: `{"errorCode":"ERR_CONVERSATION_INVALID_PARMS","message":"failed conversing with component echo: invalid params: tool choice must be 'auto', 'none', 'required', or a specific tool name matching the tools available to be used"}`,
		},
		{
			name: "alpha2 tool choice names no tool", path: "/v1.0-alpha2/conversation/echo/converse",
			body:       `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"x"}]}}]}],"tools":[{"function":{"name":"f"}}],"toolChoice":"g"}`,
			wantStatus: 400, wantBody: `{"errorCode":"ERR_CONVERSATION_INVALID_PARMS","message":"failed conversing with component echo: invalid params: tool choice selected was not found. Must be 'auto', 'none', 'required', or a specific tool name matching the tools available to be used"}`,
		},
		{
			name: "unknown component", path: "/v1.0-alpha2/conversation/nope/converse",
			body:       `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"x"}]}}]}]}`,
			wantStatus: 400, wantBody: `{"errorCode":"ERR_CONVERSATION_NOT_FOUND","message":"failed finding conversation component nope"}`,
		},
		{
			name: "no worker for the component fails fast", path: "/v1.0-alpha2/conversation/orphan/converse",
			body:       `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"x"}]}}]}]}`,
			wantStatus: 500, wantBody: `{"errorCode":"ERR_CONVERSATION_INVOKE","message":"failed conversing with component orphan: no worker serves the component"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := post(t, tt.path, tt.body)
			require.Equal(t, tt.wantStatus, res.status, res.body)
			require.JSONEq(t, tt.wantBody, res.body)
			require.Equal(t, "application/json", res.header.Get("Content-Type"))
		})
	}
}

// TestDaprHTTPMalformed checks the errors whose messages carry a decoder's words.
func TestDaprHTTPMalformed(t *testing.T) {
	need(t)
	t.Parallel()
	tests := []struct {
		name       string
		method     string
		body       string
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{name: "not json", method: http.MethodPost, body: `{"inputs":`, wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST", wantMsg: "failed deserializing HTTP body: "},
		{name: "bool as string", method: http.MethodPost, body: `{"inputs":[],"scrubPii":"true"}`, wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST", wantMsg: "invalid value for bool field scrubPii"},
		{name: "two message types", method: http.MethodPost, body: `{"inputs":[{"messages":[{"ofUser":{},"ofSystem":{}}]}]}`, wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST", wantMsg: "is already set"},
		{name: "oversized body", method: http.MethodPost, body: `{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"` + strings.Repeat("x", 5<<20) + `"}]}}]}]}`, wantStatus: 400, wantCode: "ERR_BODY_READ", wantMsg: "failed to read request body: http: request body too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := do(t, tt.method, "/v1.0-alpha2/conversation/echo/converse", tt.body)
			require.Equal(t, tt.wantStatus, res.status, res.body)
			require.Contains(t, res.body, `"errorCode":"`+tt.wantCode+`"`)
			require.Contains(t, res.body, tt.wantMsg)
		})
	}
	t.Run("other methods", func(t *testing.T) {
		t.Parallel()
		res := do(t, http.MethodGet, "/v1.0-alpha2/conversation/echo/converse", "")
		require.Equal(t, http.StatusMethodNotAllowed, res.status)
	})
	// After all of that, the router still serves.
	t.Run("still serving", func(t *testing.T) {
		t.Parallel()
		require.Eventually(t, func() bool {
			return post(t, "/v1.0-alpha1/conversation/echo-nocache/converse", `{"inputs":[{"content":"ok"}]}`).status == 200
		}, 10*time.Second, 50*time.Millisecond)
	})
}

func TestDaprMetadataListsComponents(t *testing.T) {
	need(t)
	t.Parallel()
	res := do(t, http.MethodGet, "/v1.0/metadata", "")
	require.Equal(t, 200, res.status)
	// As daprd: each component's spec.version as its file gives it (none when unset), and
	// the runtime version in the extended metadata.
	require.JSONEq(t, `{"id":"parley","runtimeVersion":"parley","extended":{"daprRuntimeVersion":"parley"},"components":[
		{"name":"echo","type":"conversation.echo","version":"v1"},
		{"name":"echo-nocache","type":"conversation.echo"},
		{"name":"orphan","type":"conversation.echo"},
		{"name":"primary-down","type":"conversation.echo"}]}`, res.body)
}
