package bedrock

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

func TestCallErrorWithoutResponse(t *testing.T) {
	t.Parallel()
	params := smithy.InvalidParamsError{Context: "ConverseInput"}
	params.Add(smithy.NewErrParamRequired("ModelId"))
	tests := []struct {
		name     string
		give     error
		wantCode providerv1.ErrorCode
		wantText string
	}{
		{"refused by the SDK's validation", &smithy.OperationError{ServiceID: "Bedrock Runtime", OperationName: "Converse", Err: params},
			providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "invalid request"},
		{"credentials not resolved", &smithy.OperationError{ServiceID: "Bedrock Runtime", OperationName: "Converse",
			Err: errors.New("failed to retrieve credentials: SECRETVALUE")}, providerv1.ErrorCode_ERROR_CODE_INTERNAL, "[REDACTED]"},
		{"API error without HTTP response", &smithy.GenericAPIError{Code: "ThrottlingException", Message: "x"},
			providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "ThrottlingException"},
		{"unknown API error without HTTP response", &smithy.GenericAPIError{Code: "Weird\nError text", Message: "x"},
			providerv1.ErrorCode_ERROR_CODE_INTERNAL, "WeirdErrortext"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := &Provider{secrets: []string{"SECRETVALUE"}}
			err := p.callError(tt.give)
			var pe *provider.Error
			require.ErrorAs(t, err, &pe)
			require.Equal(t, tt.wantCode.String(), pe.Code.String(), "error: %v", err)
			require.ErrorContains(t, err, tt.wantText)
			require.NotContains(t, err.Error(), "SECRETVALUE")
		})
	}
}

// FuzzToolInput checks that tool-call arguments either become a document whose JSON is
// the same object, numbers kept exact, or are refused; never a panic.
func FuzzToolInput(f *testing.F) {
	for _, s := range []string{``, `{}`, ` {"a": 1} `, `{"a":`, `[1]`, `"x"`, `null`, `{"n":12345678901234567890,"f":-1.5e-7}`,
		`{"a":{"b":[true,false,null,"\u00e9"]}}`, `{} {}`, `{"a":1}x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, args string) {
		doc, err := toolInput(args)
		if err != nil {
			require.Nil(t, doc)
			return
		}
		out, err := documentJSON(doc)
		require.NoError(t, err)
		var got, want any
		require.NoError(t, json.Unmarshal([]byte(out), &got), "document JSON %q", out)
		if strings.Trim(args, " \t\r\n") == "" {
			want = map[string]any{}
		} else {
			require.NoError(t, json.Unmarshal([]byte(args), &want))
		}
		require.Equal(t, want, got)
	})
}

// FuzzStructDocument checks that tool parameters become a JSON schema document equal to
// the Struct's own JSON.
func FuzzStructDocument(f *testing.F) {
	f.Add("city", "string", 7.0, true)
	f.Add("", "", 0.0, false)
	f.Add("\xff", "x\"y", 1e300, true)
	f.Fuzz(func(t *testing.T, key, typ string, num float64, flag bool) {
		s, err := structpb.NewStruct(map[string]any{
			"type": "object", "properties": map[string]any{key: map[string]any{"type": typ, "maximum": num}}, "flag": flag,
		})
		if err != nil {
			return
		}
		m, err := structDocument(s)
		if err != nil {
			return
		}
		out, err := documentJSON(document.NewLazyDocument(m))
		require.NoError(t, err)
		want, err := json.Marshal(s.AsMap())
		require.NoError(t, err)
		require.JSONEq(t, string(want), out)
	})
}

func benchRequest(b *testing.B) *providerv1.Request {
	b.Helper()
	params, err := structpb.NewStruct(map[string]any{
		"type": "object",
		"properties": map[string]any{
			"city":  map[string]any{"type": "string", "description": "City name"},
			"units": map[string]any{"type": "string", "enum": []any{"metric", "imperial"}},
		},
		"required": []any{"city"},
	})
	if err != nil {
		b.Fatal(err)
	}
	text := func(s string) *providerv1.Part { return &providerv1.Part{Kind: &providerv1.Part_Text{Text: s}} }
	msgs := []*providerv1.Message{{Role: providerv1.Role_ROLE_SYSTEM, Parts: []*providerv1.Part{text("You are a helpful assistant.")}}}
	for i := range 4 {
		msgs = append(msgs,
			&providerv1.Message{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{text(fmt.Sprintf("Question %d: %s", i, strings.Repeat("lorem ipsum ", 20)))}},
			&providerv1.Message{Role: providerv1.Role_ROLE_ASSISTANT, Parts: []*providerv1.Part{text(strings.Repeat("dolor sit amet ", 30))}})
	}
	msgs = append(msgs,
		&providerv1.Message{Role: providerv1.Role_ROLE_ASSISTANT, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolCall{
			ToolCall: &providerv1.ToolCall{Id: "tooluse_01", Type: "function", Name: "get_weather", Arguments: `{"city":"Paris","units":"metric"}`},
		}}}},
		&providerv1.Message{Role: providerv1.Role_ROLE_TOOL, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolResult{
			ToolResult: &providerv1.ToolResult{ToolCallId: "tooluse_01", Name: "get_weather", Content: `{"temp":18,"sky":"clear"}`},
		}}}})
	maxTokens := int64(1024)
	return &providerv1.Request{
		Messages:    msgs,
		Tools:       []*providerv1.Tool{{Type: "function", Name: "get_weather", Description: "Weather now", Parameters: params}, {Type: "function", Name: "now"}},
		ToolChoice:  "auto",
		Temperature: 0.3,
		MaxTokens:   &maxTokens,
	}
}

// BenchmarkEncodeRequest measures the mapping to the SDK's Converse input; the SDK's own
// serialisation and signing are in BenchmarkConverse.
func BenchmarkEncodeRequest(b *testing.B) {
	req := benchRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := encodeRequest(DefaultModel, req, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeResponse measures the mapping of the SDK's Converse output, as the SDK's
// deserialiser leaves it (a tool input as a parsed document).
func BenchmarkDecodeResponse(b *testing.B) {
	out := &bedrockruntime.ConverseOutput{
		Output: &types.ConverseOutputMemberMessage{Value: types.Message{Role: types.ConversationRoleAssistant, Content: []types.ContentBlock{
			&types.ContentBlockMemberText{Value: "It is 18 degrees and clear in Paris. I will also check the time for you."},
			&types.ContentBlockMemberToolUse{Value: types.ToolUseBlock{
				ToolUseId: aws.String("tooluse_02"), Name: aws.String("now"),
				Input: document.NewLazyDocument(map[string]any{"tz": "Europe/Paris", "precise": true}),
			}},
		}}},
		StopReason: types.StopReasonToolUse,
		Usage:      &types.TokenUsage{InputTokens: aws.Int32(812), OutputTokens: aws.Int32(64), TotalTokens: aws.Int32(876)},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeResponse(out, ""); err != nil {
			b.Fatal(err)
		}
	}
}
