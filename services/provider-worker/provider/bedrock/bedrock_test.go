package bedrock_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/bedrock"
)

const (
	testAccessKey    = "AKIATESTACCESSKEY01"
	testSecretKey    = "test/secret+key/0123456789abcdefghijklmn"
	testSessionToken = "test-session-token-QWERTY"
	testRegion       = "eu-west-3"
)

func text(s string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_Text{Text: s}}
}

func msg(role providerv1.Role, parts ...*providerv1.Part) *providerv1.Message {
	return &providerv1.Message{Role: role, Parts: parts}
}

func toolCall(id, name, args string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{
		Id: id, Type: "function", Name: name, Arguments: args,
	}}}
}

func toolResult(id, content string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_ToolResult{ToolResult: &providerv1.ToolResult{
		ToolCallId: id, Content: content,
	}}}
}

func requireProtoEqual(t *testing.T, want, got proto.Message) {
	t.Helper()
	if !proto.Equal(want, got) {
		require.Fail(t, "protos differ", "want: %s\ngot:  %s", prototext.Format(want), prototext.Format(got))
	}
}

func comp(meta ...string) component.Component {
	c := component.Component{Name: "bedrock", Type: "conversation.aws.bedrock", Metadata: map[string]string{}}
	for i := 0; i+1 < len(meta); i += 2 {
		c.Metadata[meta[i]] = meta[i+1]
	}
	return c
}

// hermetic keeps the SDK away from this machine's AWS files, environment profile and
// instance metadata service.
func hermetic() []func(*config.LoadOptions) error {
	return []func(*config.LoadOptions) error{
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}),
		config.WithEC2IMDSClientEnableState(imds.ClientDisabled),
	}
}

func options(env map[string]string) provider.Options {
	return provider.Options{
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Transport: http.DefaultTransport.(*http.Transport).Clone(),
		Now:       func() time.Time { return time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
}

// recorded is one request the fake API received.
type recorded struct {
	path    string
	rawPath string
	header  http.Header
	body    []byte
	// sigErr is why the SigV4 signature did not verify; empty when it did.
	sigErr string
}

// fakeBedrock stands in for the Bedrock Runtime endpoint: it records each request,
// verifies its SigV4 signature with the test credentials, and answers as told.
type fakeBedrock struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	status  int
	header  map[string]string
	body    string
	session string
}

func newFakeBedrock(t *testing.T, status int, body string, header map[string]string) *fakeBedrock {
	t.Helper()
	f := &fakeBedrock{status: status, body: body, header: header}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		rec := recorded{path: r.URL.Path, rawPath: r.URL.EscapedPath(), header: r.Header.Clone(), body: data}
		rec.sigErr = verifySigV4(r, data, f.session)
		f.mu.Lock()
		f.reqs = append(f.reqs, rec)
		f.mu.Unlock()
		for k, v := range f.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-Requestid", "7a62c49f-347e-4fc4-9331-6e8eEXAMPLE")
		w.WriteHeader(f.status)
		_, _ = io.WriteString(w, f.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeBedrock) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

var authRE = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/bedrock/aws4_request, ` +
	`SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$`)

// verifySigV4 checks the Authorization header against the test credentials: its shape,
// its scope (access key, the date of X-Amz-Date, region, service bedrock) and its
// signature, recomputed over the signed headers the request names.
func verifySigV4(r *http.Request, body []byte, session string) string {
	m := authRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return "Authorization header malformed: " + r.Header.Get("Authorization")
	}
	amzDate := r.Header.Get("X-Amz-Date")
	signedAt, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return "X-Amz-Date malformed: " + amzDate
	}
	switch {
	case m[1] != testAccessKey:
		return "credential access key " + m[1]
	case m[2] != amzDate[:8]:
		return "credential date " + m[2] + " is not the date of X-Amz-Date " + amzDate
	case m[3] != testRegion:
		return "credential region " + m[3]
	case r.Header.Get("X-Amz-Security-Token") != session:
		return "X-Amz-Security-Token " + r.Header.Get("X-Amz-Security-Token")
	}
	u, err := url.Parse("http://" + r.Host + r.URL.EscapedPath())
	if err != nil {
		return err.Error()
	}
	clone, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), nil)
	if err != nil {
		return err.Error()
	}
	clone.ContentLength = r.ContentLength
	for _, h := range strings.Split(m[4], ";") {
		if h != "host" && h != "content-length" {
			clone.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(r.Context(), aws.Credentials{
		AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey, SessionToken: session,
	}, clone, hex.EncodeToString(sum[:]), "bedrock", testRegion, signedAt)
	if err != nil {
		return err.Error()
	}
	if got, want := r.Header.Get("Authorization"), clone.Header.Get("Authorization"); got != want {
		return "signature mismatch:\n got " + got + "\nwant " + want
	}
	return ""
}

func newProvider(t *testing.T, c component.Component) *bedrock.Provider {
	t.Helper()
	p, err := bedrock.New(t.Context(), c, options(nil), hermetic()...)
	require.NoError(t, err)
	return p
}

func staticComp(endpoint string, meta ...string) component.Component {
	return comp(append([]string{"region", testRegion, "accessKey", testAccessKey, "secretKey", testSecretKey,
		"endpoint", endpoint}, meta...)...)
}

// okBody is a recorded-shape Converse answer.
const okBody = `{"metrics":{"latencyMs":412},"output":{"message":{"content":[{"text":"Hello!"}],"role":"assistant"}},
"stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":6,"totalTokens":18}}`

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		give      component.Component
		env       map[string]string
		wantModel string
	}{
		{"static credentials, default model", comp("region", testRegion, "accessKey", "a", "secretKey", "s"), nil, bedrock.DefaultModel},
		{"region from AWS_REGION", comp("accessKey", "a", "secretKey", "s", "model", "amazon.nova-lite-v1:0"),
			map[string]string{"AWS_REGION": "us-west-2"}, "amazon.nova-lite-v1:0"},
		{"default credential chain, resolved lazily", comp("region", testRegion), nil, bedrock.DefaultModel},
		{"assume role", comp("region", testRegion, "accessKey", "a", "secretKey", "s",
			"assumeRoleArn", "arn:aws:iam::123456789012:role/parley"), nil, bedrock.DefaultModel},
		{"emulator endpoint", comp("Region", testRegion, "AccessKey", "a", "SecretKey", "s",
			"Endpoint", "http://localstack:4566/"), nil, bedrock.DefaultModel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := bedrock.New(t.Context(), tt.give, options(tt.env), hermetic()...)
			require.NoError(t, err)
			require.Equal(t, tt.wantModel, p.Model())
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		give    component.Component
		allow   []string
		wantErr string
	}{
		{"no region", comp("accessKey", "a", "secretKey", "s"), nil, `no region: set metadata "region" or AWS_REGION`},
		{"access key alone", comp("region", testRegion, "accessKey", "a"), nil, `"accessKey" and "secretKey" must be set together`},
		{"secret key alone", comp("region", testRegion, "secretKey", testSecretKey), nil, "must be set together"},
		{"roles anywhere", comp("region", testRegion, "trustAnchorArn", "arn:x"), nil, "IAM Roles Anywhere"},
		{"bad endpoint scheme", comp("region", testRegion, "endpoint", "ftp://x"), nil, "scheme must be http or https"},
		{"endpoint not allowed", comp("region", testRegion, "endpoint", "https://evil.example.com"),
			[]string{"*.amazonaws.com"}, "ALLOWLIST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := options(nil)
			opts.EndpointAllowlist = tt.allow
			_, err := bedrock.New(t.Context(), tt.give, opts, hermetic()...)
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), testSecretKey)
		})
	}
}

func TestConverse(t *testing.T) {
	t.Parallel()
	maxTokens := int64(300)
	weather := func(t testing.TB) *structpb.Struct {
		s, err := structpb.NewStruct(map[string]any{
			"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}, "days": map[string]any{
				"type": "integer", "maximum": 7,
			}}, "required": []any{"city"},
		})
		require.NoError(t, err)
		return s
	}
	tests := []struct {
		name     string
		meta     []string
		req      func(t testing.TB) *providerv1.Request
		wantPath string
		wantBody string
		respond  string
		want     *providerv1.Response
	}{
		{
			name: "default model: plain text, no model in the answer",
			req: func(testing.TB) *providerv1.Request {
				return &providerv1.Request{Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("Hello"))}}
			},
			wantPath: "/model/amazon.titan-text-lite-v1/converse",
			wantBody: `{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}`,
			respond:  okBody,
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{FinishReason: "end_turn", Content: "Hello!"}},
				Usage:   &providerv1.Usage{PromptTokens: 12, CompletionTokens: 6, TotalTokens: 18},
			},
		},
		{
			name: "system, inference config, merged roles, named model",
			meta: []string{"model", "anthropic.claude-3-5-sonnet-20240620-v1:0"},
			req: func(testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages: []*providerv1.Message{
						msg(providerv1.Role_ROLE_SYSTEM, text("Be brief.")),
						msg(providerv1.Role_ROLE_DEVELOPER, text("French.")),
						msg(providerv1.Role_ROLE_USER, text("Hi"), text("")),
						msg(providerv1.Role_ROLE_USER, text("there")),
						msg(providerv1.Role_ROLE_ASSISTANT, text("Bonjour")),
					},
					Temperature: 0.25, MaxTokens: &maxTokens, Stop: []string{"END"},
					Metadata: map[string]string{"ignored": "yes"},
				}
			},
			wantPath: "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse",
			wantBody: `{"system":[{"text":"Be brief."},{"text":"French."}],
				"messages":[{"role":"user","content":[{"text":"Hi"},{"text":"there"}]},
					{"role":"assistant","content":[{"text":"Bonjour"}]}],
				"inferenceConfig":{"maxTokens":300,"temperature":0.25,"stopSequences":["END"]}}`,
			respond: `{"output":{"message":{"role":"assistant","content":[{"text":"Salut"},{"text":" !"}]}},
				"stopReason":"stop_sequence","usage":{"inputTokens":20,"outputTokens":3,"totalTokens":23,
				"cacheReadInputTokens":100,"cacheWriteInputTokens":10}}`,
			want: &providerv1.Response{
				Model:   "anthropic.claude-3-5-sonnet-20240620-v1:0",
				Choices: []*providerv1.Choice{{FinishReason: "stop_sequence", Content: "Salut !"}},
				Usage:   &providerv1.Usage{PromptTokens: 130, CompletionTokens: 3, TotalTokens: 133, PromptCachedTokens: 100},
			},
		},
		{
			name: "tools, tool use and results",
			meta: []string{"model", "arn:aws:bedrock:eu-west-3:123456789012:inference-profile/eu.anthropic.claude-3-haiku"},
			req: func(t testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages: []*providerv1.Message{
						msg(providerv1.Role_ROLE_USER, text("Weather in Paris?")),
						msg(providerv1.Role_ROLE_ASSISTANT, toolCall("tooluse_1", "get_weather", `{"city": "Paris", "days": 2}`),
							toolCall("tooluse_2", "now", "")),
						msg(providerv1.Role_ROLE_TOOL, toolResult("tooluse_1", "18C"), toolResult("tooluse_1", "sunny")),
						msg(providerv1.Role_ROLE_USER, text("And now?")),
						msg(providerv1.Role_ROLE_TOOL, toolResult("tooluse_2", "")),
					},
					Tools: []*providerv1.Tool{
						{Type: "function", Name: "get_weather", Description: "Weather now", Parameters: weather(t)},
						{Type: "function", Name: "now"},
					},
					ToolChoice: "get_weather",
				}
			},
			wantPath: "/model/arn:aws:bedrock:eu-west-3:123456789012:inference-profile/eu.anthropic.claude-3-haiku/converse",
			wantBody: `{"messages":[
				{"role":"user","content":[{"text":"Weather in Paris?"}]},
				{"role":"assistant","content":[
					{"toolUse":{"toolUseId":"tooluse_1","name":"get_weather","input":{"city":"Paris","days":2}}},
					{"toolUse":{"toolUseId":"tooluse_2","name":"now","input":{}}}]},
				{"role":"user","content":[
					{"toolResult":{"toolUseId":"tooluse_1","content":[{"text":"18C"},{"text":"sunny"}]}},
					{"toolResult":{"toolUseId":"tooluse_2","content":[]}},
					{"text":"And now?"}]}],
				"toolConfig":{"tools":[
					{"toolSpec":{"name":"get_weather","description":"Weather now","inputSchema":{"json":{"type":"object",
						"properties":{"city":{"type":"string"},"days":{"type":"integer","maximum":7}},"required":["city"]}}}},
					{"toolSpec":{"name":"now","inputSchema":{"json":{"type":"object","properties":{}}}}}],
					"toolChoice":{"tool":{"name":"get_weather"}}}}`,
			respond: `{"output":{"message":{"role":"assistant","content":[
				{"reasoningContent":{"reasoningText":{"text":"hmm","signature":"x"}}},
				{"text":"Checking."},
				{"toolUse":{"toolUseId":"tooluse_3","name":"get_weather","input":{"city":"Oslo","n":12345678901234567890,"f":1.5}}}]}},
				"stopReason":"tool_use","usage":{"inputTokens":50,"outputTokens":20,"totalTokens":70}}`,
			want: &providerv1.Response{
				Model: "arn:aws:bedrock:eu-west-3:123456789012:inference-profile/eu.anthropic.claude-3-haiku",
				Choices: []*providerv1.Choice{{FinishReason: "tool_use", Content: "Checking.",
					ToolCalls: []*providerv1.ToolCall{{Id: "tooluse_3", Type: "function", Name: "get_weather",
						Arguments: `{"city":"Oslo","f":1.5,"n":12345678901234567890}`}}}},
				Usage: &providerv1.Usage{PromptTokens: 50, CompletionTokens: 20, TotalTokens: 70},
			},
		},
		{
			name: "tool choice auto and required",
			req: func(testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages:   []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("x"))},
					Tools:      []*providerv1.Tool{{Type: "function", Name: "f"}},
					ToolChoice: "required",
				}
			},
			wantPath: "/model/amazon.titan-text-lite-v1/converse",
			wantBody: `{"messages":[{"role":"user","content":[{"text":"x"}]}],
				"toolConfig":{"tools":[{"toolSpec":{"name":"f","inputSchema":{"json":{"type":"object","properties":{}}}}}],
				"toolChoice":{"any":{}}}}`,
			respond: `{"output":{"message":{"role":"assistant","content":[{"toolUse":{"toolUseId":"t","name":"f","input":{}}}]}},
				"stopReason":"tool_use"}`,
			want: &providerv1.Response{Choices: []*providerv1.Choice{{FinishReason: "tool_use",
				ToolCalls: []*providerv1.ToolCall{{Id: "t", Type: "function", Name: "f", Arguments: "{}"}}}}},
		},
		{
			name: "tool choice none without tool history: no toolConfig",
			req: func(testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages:   []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("x"))},
					Tools:      []*providerv1.Tool{{Type: "function", Name: "f"}},
					ToolChoice: "none",
				}
			},
			wantPath: "/model/amazon.titan-text-lite-v1/converse",
			wantBody: `{"messages":[{"role":"user","content":[{"text":"x"}]}]}`,
			respond:  `{"output":{"message":{"role":"assistant","content":[]}}}`,
			want:     &providerv1.Response{Choices: []*providerv1.Choice{{FinishReason: "unknown"}}},
		},
		{
			name: "tool choice none with tool history: tools without a choice",
			req: func(testing.TB) *providerv1.Request {
				return &providerv1.Request{
					Messages: []*providerv1.Message{
						msg(providerv1.Role_ROLE_ASSISTANT, toolCall("t", "f", `{}`)),
						msg(providerv1.Role_ROLE_TOOL, toolResult("t", "ok")),
					},
					Tools:      []*providerv1.Tool{{Type: "function", Name: "f"}},
					ToolChoice: "none",
				}
			},
			wantPath: "/model/amazon.titan-text-lite-v1/converse",
			wantBody: `{"messages":[{"role":"assistant","content":[{"toolUse":{"toolUseId":"t","name":"f","input":{}}}]},
				{"role":"user","content":[{"toolResult":{"toolUseId":"t","content":[{"text":"ok"}]}}]}],
				"toolConfig":{"tools":[{"toolSpec":{"name":"f","inputSchema":{"json":{"type":"object","properties":{}}}}}]}}`,
			respond: okBody,
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{FinishReason: "end_turn", Content: "Hello!"}},
				Usage:   &providerv1.Usage{PromptTokens: 12, CompletionTokens: 6, TotalTokens: 18},
			},
		},
		{
			name: "response format: forced tool, toolUse input as content",
			meta: []string{"model", "anthropic.claude-3-5-haiku-20241022-v1:0"},
			req: func(t testing.TB) *providerv1.Request {
				rf, err := structpb.NewStruct(map[string]any{
					"type": "object", "name": "weather", "description": "The weather", "strict": true,
					"properties": map[string]any{
						"city": map[string]any{"type": "string", "description": "City name", "minLength": 1},
						"days": map[string]any{"type": "integer", "maximum": 7},
						"sky":  map[string]any{"type": "string", "enum": []any{"clear", "cloudy", 3}},
						"tags": map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
					},
					"required": []any{"city", 7},
				})
				require.NoError(t, err)
				return &providerv1.Request{
					Messages:       []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("Weather in Paris?"))},
					ResponseFormat: rf,
				}
			},
			wantPath: "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse",
			wantBody: `{"messages":[{"role":"user","content":[{"text":"Weather in Paris?"}]}],
				"toolConfig":{"tools":[{"toolSpec":{"name":"weather","description":"The weather","inputSchema":{"json":{
					"type":"object","description":"The weather","additionalProperties":false,"required":["city"],
					"properties":{
						"city":{"type":"string","description":"City name"},
						"days":{"type":"integer"},
						"sky":{"type":"string","enum":["clear","cloudy","3"]},
						"tags":{"type":"array","items":{"type":"string"}}}}}}}],
				"toolChoice":{"tool":{"name":"weather"}}}}`,
			respond: `{"metrics":{"latencyMs":1290},"output":{"message":{"content":[{"toolUse":{
				"input":{"city":"Paris","days":3,"sky":"clear","tags":["mild"]},"name":"weather",
				"toolUseId":"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q"}}],"role":"assistant"}},
				"stopReason":"tool_use","usage":{"inputTokens":402,"outputTokens":61,"totalTokens":463}}`,
			want: &providerv1.Response{
				Model: "anthropic.claude-3-5-haiku-20241022-v1:0",
				Choices: []*providerv1.Choice{{FinishReason: "stop",
					Content: `{"city":"Paris","days":3,"sky":"clear","tags":["mild"]}`}},
				Usage: &providerv1.Usage{PromptTokens: 402, CompletionTokens: 61, TotalTokens: 463},
			},
		},
		{
			name: "response format: default name, tool history, max_tokens kept",
			req: func(t testing.TB) *providerv1.Request {
				rf, err := structpb.NewStruct(map[string]any{"type": "object"})
				require.NoError(t, err)
				return &providerv1.Request{
					Messages: []*providerv1.Message{
						msg(providerv1.Role_ROLE_ASSISTANT, toolCall("t", "f", `{}`)),
						msg(providerv1.Role_ROLE_TOOL, toolResult("t", "ok")),
					},
					ToolChoice:     "none",
					ResponseFormat: rf,
				}
			},
			wantPath: "/model/amazon.titan-text-lite-v1/converse",
			wantBody: `{"messages":[{"role":"assistant","content":[{"toolUse":{"toolUseId":"t","name":"f","input":{}}}]},
				{"role":"user","content":[{"toolResult":{"toolUseId":"t","content":[{"text":"ok"}]}}]}],
				"toolConfig":{"tools":[{"toolSpec":{"name":"response","inputSchema":{"json":{"type":"object","additionalProperties":false}}}}],
				"toolChoice":{"tool":{"name":"response"}}}}`,
			respond: `{"output":{"message":{"role":"assistant","content":[{"text":"dropped"},
				{"toolUse":{"toolUseId":"u","name":"response","input":{"a":  "trunc"}}}]}},"stopReason":"max_tokens"}`,
			want: &providerv1.Response{Choices: []*providerv1.Choice{{FinishReason: "max_tokens", Content: `{"a":"trunc"}`}}},
		},
		{
			name: "response format: answer without the response tool mapped as usual",
			req: func(t testing.TB) *providerv1.Request {
				rf, err := structpb.NewStruct(map[string]any{"type": "object"})
				require.NoError(t, err)
				return &providerv1.Request{
					Messages:       []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("x"))},
					ResponseFormat: rf,
				}
			},
			wantPath: "/model/amazon.titan-text-lite-v1/converse",
			wantBody: `{"messages":[{"role":"user","content":[{"text":"x"}]}],
				"toolConfig":{"tools":[{"toolSpec":{"name":"response","inputSchema":{"json":{"type":"object","additionalProperties":false}}}}],
				"toolChoice":{"tool":{"name":"response"}}}}`,
			respond: okBody,
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{FinishReason: "end_turn", Content: "Hello!"}},
				Usage:   &providerv1.Usage{PromptTokens: 12, CompletionTokens: 6, TotalTokens: 18},
			},
		},
		{
			name: "invalid response format ignored",
			req: func(t testing.TB) *providerv1.Request {
				rf, err := structpb.NewStruct(map[string]any{"type": "object",
					"properties": map[string]any{"a": map[string]any{"description": "no type"}}})
				require.NoError(t, err)
				return &providerv1.Request{
					Messages:       []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("x"))},
					ResponseFormat: rf,
				}
			},
			wantPath: "/model/amazon.titan-text-lite-v1/converse",
			wantBody: `{"messages":[{"role":"user","content":[{"text":"x"}]}]}`,
			respond:  okBody,
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{FinishReason: "end_turn", Content: "Hello!"}},
				Usage:   &providerv1.Usage{PromptTokens: 12, CompletionTokens: 6, TotalTokens: 18},
			},
		},
		{
			name: "invalid response format ignored with tools",
			req: func(t testing.TB) *providerv1.Request {
				rf, err := structpb.NewStruct(map[string]any{"name": "no type"})
				require.NoError(t, err)
				return &providerv1.Request{
					Messages:       []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("x"))},
					Tools:          []*providerv1.Tool{{Type: "function", Name: "f"}},
					ResponseFormat: rf,
				}
			},
			wantPath: "/model/amazon.titan-text-lite-v1/converse",
			wantBody: `{"messages":[{"role":"user","content":[{"text":"x"}]}],
				"toolConfig":{"tools":[{"toolSpec":{"name":"f","inputSchema":{"json":{"type":"object","properties":{}}}}}]}}`,
			respond: okBody,
			want: &providerv1.Response{
				Choices: []*providerv1.Choice{{FinishReason: "end_turn", Content: "Hello!"}},
				Usage:   &providerv1.Usage{PromptTokens: 12, CompletionTokens: 6, TotalTokens: 18},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeBedrock(t, http.StatusOK, tt.respond, nil)
			p := newProvider(t, staticComp(api.srv.URL, tt.meta...))
			got, err := p.Converse(t.Context(), tt.req(t))
			require.NoError(t, err)
			requireProtoEqual(t, tt.want, got)

			reqs := api.requests()
			require.Len(t, reqs, 1)
			r := reqs[0]
			require.Equal(t, tt.wantPath, r.path)
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
			require.Empty(t, r.sigErr)
			require.Empty(t, r.header.Get("X-Amz-Security-Token"))
			require.JSONEq(t, tt.wantBody, string(r.body))
		})
	}
}

func TestConverseSessionToken(t *testing.T) {
	t.Parallel()
	api := newFakeBedrock(t, http.StatusOK, okBody, nil)
	api.session = testSessionToken
	p := newProvider(t, staticComp(api.srv.URL, "sessionToken", testSessionToken, "model", "amazon.nova-micro-v1:0"))
	_, err := p.Converse(t.Context(), &providerv1.Request{Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("Hi"))}})
	require.NoError(t, err)
	reqs := api.requests()
	require.Len(t, reqs, 1)
	require.Empty(t, reqs[0].sigErr)
	require.Equal(t, "/model/amazon.nova-micro-v1%3A0/converse", reqs[0].rawPath)
	require.Equal(t, testSessionToken, reqs[0].header.Get("X-Amz-Security-Token"))
}

// codeOf is what a test reads from a *provider.Error.
type codeOf struct {
	RetryAfter time.Duration
	retryable  bool
}

func (c codeOf) Retryable() bool { return c.retryable }

func requireCode(t *testing.T, err error, want providerv1.ErrorCode) codeOf {
	t.Helper()
	var pe *provider.Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, want.String(), pe.Code.String(), "error: %v", err)
	return codeOf{RetryAfter: pe.RetryAfter, retryable: pe.Retryable()}
}

func requireNoSecrets(t *testing.T, err error) {
	t.Helper()
	for _, s := range []string{testSecretKey, testSessionToken, "secret-prompt-text"} {
		require.NotContains(t, err.Error(), s)
	}
}

func TestConverseErrors(t *testing.T) {
	t.Parallel()
	awsErr := func(typ string) map[string]string {
		return map[string]string{"X-Amzn-Errortype": typ + ":http://internal.amazon.com/coral/com.amazon.bedrock/"}
	}
	tests := []struct {
		name           string
		status         int
		header         map[string]string
		body           string
		wantCode       providerv1.ErrorCode
		wantRetryAfter time.Duration
		wantText       string
	}{
		{"400 validation", http.StatusBadRequest, awsErr("ValidationException"),
			`{"message":"The model returned the following errors: secret-prompt-text"}`,
			providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, 0, "HTTP 400 Bad Request: ValidationException"},
		{"403 access denied", http.StatusForbidden, awsErr("AccessDeniedException"),
			`{"message":"You don't have access to the model with the specified model ID."}`,
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0, "AccessDeniedException"},
		{"403 bad signature", http.StatusForbidden, awsErr("InvalidSignatureException"),
			`{"message":"The request signature we calculated does not match. Canonical string: ` + testSessionToken + `"}`,
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0, "InvalidSignatureException"},
		{"403 unknown key", http.StatusForbidden, awsErr("UnrecognizedClientException"),
			`{"message":"The security token included in the request is invalid."}`,
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0, "UnrecognizedClientException"},
		{"404 model not found", http.StatusNotFound, awsErr("ResourceNotFoundException"), `{"message":"Model not found"}`,
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0, "ResourceNotFoundException"},
		{"408 model timeout", http.StatusRequestTimeout, awsErr("ModelTimeoutException"), `{"message":"timeout"}`,
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 0, "ModelTimeoutException"},
		{"424 model error", http.StatusFailedDependency, awsErr("ModelErrorException"), `{"message":"x"}`,
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0, "ModelErrorException"},
		{"429 throttling with retry-after", http.StatusTooManyRequests,
			map[string]string{"X-Amzn-Errortype": "ThrottlingException", "Retry-After": "4"},
			`{"message":"Too many requests, please wait before trying again."}`,
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 4 * time.Second, "HTTP 429 Too Many Requests: ThrottlingException"},
		{"400 service quota", http.StatusBadRequest, awsErr("ServiceQuotaExceededException"), `{"message":"quota"}`,
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 0, "ServiceQuotaExceededException"},
		{"500 internal", http.StatusInternalServerError, awsErr("InternalServerException"), `{"message":"x"}`,
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 0, "InternalServerException"},
		{"503 unavailable with HTTP-date retry-after", http.StatusServiceUnavailable,
			map[string]string{"X-Amzn-Errortype": "ServiceUnavailableException", "Retry-After": "Wed, 01 Jan 2031 00:00:09 GMT"},
			`{"message":"x"}`, providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 9 * time.Second, "ServiceUnavailableException"},
		{"502 without an AWS error", http.StatusBadGateway, nil, `<html>bad gateway</html>`,
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 0, "HTTP 502"},
		{"200 with malformed JSON", http.StatusOK, nil, `{"output":{"message":{"content":[{"text":"secret-prompt-text`,
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, 0, "bedrock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeBedrock(t, tt.status, tt.body, tt.header)
			api.session = testSessionToken
			p := newProvider(t, staticComp(api.srv.URL, "sessionToken", testSessionToken))
			_, err := p.Converse(t.Context(), &providerv1.Request{
				Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("secret-prompt-text"))},
			})
			pe := requireCode(t, err, tt.wantCode)
			require.Equal(t, tt.wantRetryAfter, pe.RetryAfter)
			require.ErrorContains(t, err, tt.wantText)
			requireNoSecrets(t, err)
			require.Len(t, api.requests(), 1, "the SDK must not retry")
		})
	}
}

func TestConverseInvalidRequest(t *testing.T) {
	t.Parallel()
	huge := int64(1) << 40
	objectSchema, err := structpb.NewStruct(map[string]any{"type": "object"})
	require.NoError(t, err)
	user := msg(providerv1.Role_ROLE_USER, text("x"))
	tests := []struct {
		name    string
		give    *providerv1.Request
		wantErr string
	}{
		{"invalid tool arguments", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_ASSISTANT, toolCall("t", "f", `{"a": secret-prompt-text`))}}, "not valid JSON"},
		{"trailing data in arguments", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_ASSISTANT, toolCall("t", "f", `{} {}`))}}, "not valid JSON"},
		{"array arguments", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_ASSISTANT, toolCall("t", "f", `[1]`))}}, "not a JSON object"},
		{"tool call in a user message", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_USER, toolCall("t", "f", `{}`))}}, "must be in an assistant message"},
		{"tool result in an assistant message", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_ASSISTANT, toolResult("t", "r"))}}, "cannot be in an assistant message"},
		{"part without kind", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_USER, &providerv1.Part{})}}, "no content"},
		{"unspecified role", &providerv1.Request{Messages: []*providerv1.Message{
			msg(providerv1.Role_ROLE_UNSPECIFIED, text("x"))}}, "unsupported role"},
		{"max tokens over int32", &providerv1.Request{Messages: []*providerv1.Message{user}, MaxTokens: &huge}, "max_tokens"},
		{"required without tools", &providerv1.Request{Messages: []*providerv1.Message{user}, ToolChoice: "required"},
			"needs at least one tool"},
		{"unknown tool name", &providerv1.Request{Messages: []*providerv1.Message{user},
			Tools: []*providerv1.Tool{{Name: "f"}}, ToolChoice: "g"}, `"g" names no tool`},
		{"response format with tools", &providerv1.Request{Messages: []*providerv1.Message{user},
			Tools:          []*providerv1.Tool{{Type: "function", Name: "f"}},
			ResponseFormat: objectSchema},
			"bedrock: response_format cannot be combined with tools for this provider"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeBedrock(t, http.StatusOK, okBody, nil)
			p := newProvider(t, staticComp(api.srv.URL))
			_, err := p.Converse(t.Context(), tt.give)
			requireCode(t, err, providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
			require.ErrorContains(t, err, tt.wantErr)
			requireNoSecrets(t, err)
			require.Empty(t, api.requests(), "an invalid request must not reach the API")
		})
	}
}

func TestConverseInvalidResponseFormatLogged(t *testing.T) {
	t.Parallel()
	api := newFakeBedrock(t, http.StatusOK, okBody, nil)
	var logs bytes.Buffer
	opts := options(nil)
	opts.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	p, err := bedrock.New(t.Context(), staticComp(api.srv.URL), opts, hermetic()...)
	require.NoError(t, err)
	rf, err := structpb.NewStruct(map[string]any{"type": 1})
	require.NoError(t, err)
	_, err = p.Converse(t.Context(), &providerv1.Request{
		RequestId:      "req-7",
		Messages:       []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("secret-prompt-text"))},
		ResponseFormat: rf,
	})
	require.NoError(t, err)
	require.Len(t, api.requests(), 1)
	require.NotContains(t, string(api.requests()[0].body), "toolConfig")
	require.Contains(t, logs.String(), `"msg":"response_format ignored: not convertible to a json_schema"`)
	require.Contains(t, logs.String(), `"request_id":"req-7"`)
	require.Contains(t, logs.String(), "schema type is required and must be a string")
	require.NotContains(t, logs.String(), "secret-prompt-text")
	require.NotContains(t, logs.String(), testSecretKey)
}

func TestConverseTransportErrors(t *testing.T) {
	t.Parallel()
	req := &providerv1.Request{Messages: []*providerv1.Message{msg(providerv1.Role_ROLE_USER, text("hi"))}}

	t.Run("hung server: deadline", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		p := newProvider(t, staticComp(srv.URL))
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := p.Converse(ctx, req)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		requireNoSecrets(t, err)
	})

	t.Run("slow body: deadline while reading", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Read the request first, as a real server does: a reply to an unread request
			// races with the client's write and may close the connection instead.
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"output":{"message":{"content":[`)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		p := newProvider(t, staticComp(srv.URL))
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		_, err := p.Converse(ctx, req)
		require.ErrorIs(t, err, context.DeadlineExceeded, "error: %v", err)
	})

	t.Run("connection refused: unavailable", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		endpoint := srv.URL
		srv.Close()
		p := newProvider(t, staticComp(endpoint))
		_, err := p.Converse(t.Context(), req)
		pe := requireCode(t, err, providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE)
		require.True(t, pe.Retryable())
		requireNoSecrets(t, err)
	})

	t.Run("connection dropped mid-answer: unavailable", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Length", "1000")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"output":{"message":{"content":[{"text":"secret-prompt-text`)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}))
		t.Cleanup(srv.Close)
		p := newProvider(t, staticComp(srv.URL))
		_, err := p.Converse(t.Context(), req)
		requireCode(t, err, providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE)
		requireNoSecrets(t, err)
	})
}

// BenchmarkConverse measures one call through the SDK against a local fake endpoint:
// the mapping, the SDK's serialisation, SigV4 signing, the loopback HTTP exchange and the
// SDK's deserialisation.
func BenchmarkConverse(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, okBody)
	}))
	b.Cleanup(srv.Close)
	p, err := bedrock.New(b.Context(), staticComp(srv.URL), options(nil), hermetic()...)
	if err != nil {
		b.Fatal(err)
	}
	req := &providerv1.Request{Messages: []*providerv1.Message{
		msg(providerv1.Role_ROLE_SYSTEM, text("Be brief.")),
		msg(providerv1.Role_ROLE_USER, text(strings.Repeat("lorem ipsum ", 50))),
	}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Converse(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}
