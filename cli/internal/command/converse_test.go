package command

import (
	"bytes"
	"encoding/json"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
)

func user(text string) *conversationv1.Message {
	return &conversationv1.Message{Role: conversationv1.Role_ROLE_USER, Content: text}
}

func TestParseConverse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		stdin      string
		output     string
		want       *conversationv1.ConverseRequest
		wantStream bool
		wantJSON   bool
		wantErr    string
	}{
		{name: "words joined", args: []string{"-c", "echo", "hello", "there"},
			want: &conversationv1.ConverseRequest{Component: "echo", Messages: []*conversationv1.Message{user("hello there")}}},
		{name: "flags after the text", args: []string{"hello", "--component", "echo", "--bypass-cache", "--json"},
			want: &conversationv1.ConverseRequest{Component: "echo", Messages: []*conversationv1.Message{user("hello")},
				CacheMode: conversationv1.CacheMode_CACHE_MODE_BYPASS}, wantJSON: true},
		{name: "stdin", args: []string{"-c", "echo"}, stdin: "line one\nline two\n\n",
			want: &conversationv1.ConverseRequest{Component: "echo", Messages: []*conversationv1.Message{user("line one\nline two")}}},
		{name: "dash is stdin", args: []string{"-c", "echo", "-"}, stdin: "from stdin",
			want: &conversationv1.ConverseRequest{Component: "echo", Messages: []*conversationv1.Message{user("from stdin")}}},
		{name: "double dash ends the flags", args: []string{"-c", "echo", "--", "-stream", "is text"},
			want: &conversationv1.ConverseRequest{Component: "echo", Messages: []*conversationv1.Message{user("-stream is text")}}},
		{name: "every option", args: []string{"-c", "openai", "-system", "be brief", "-temperature", "0.7", "-scrub", "both",
			"-scrub-mode", "tokenize", "-stream", "hi"},
			want: &conversationv1.ConverseRequest{Component: "openai", Temperature: proto.Float64(0.7),
				Messages: []*conversationv1.Message{{Role: conversationv1.Role_ROLE_SYSTEM, Content: "be brief"}, user("hi")},
				Scrub:    &conversationv1.Scrub{Inputs: true, Outputs: true, Mode: conversationv1.ScrubMode_SCRUB_MODE_TOKENIZE}},
			wantStream: true},
		{name: "temperature zero is sent", args: []string{"-c", "echo", "-temperature", "0", "hi"},
			want: &conversationv1.ConverseRequest{Component: "echo", Temperature: proto.Float64(0), Messages: []*conversationv1.Message{user("hi")}}},
		{name: "global -o json", args: []string{"-c", "echo", "hi"}, output: "json",
			want: &conversationv1.ConverseRequest{Component: "echo", Messages: []*conversationv1.Message{user("hi")}}, wantJSON: true},
		{name: "no component", args: []string{"hi"}, wantErr: "-c COMPONENT is required"},
		{name: "no message", args: []string{"-c", "echo"}, stdin: "\n", wantErr: "no message"},
		{name: "blank message", args: []string{"-c", "echo", " "}, wantErr: "the message is empty"},
		{name: "bad temperature", args: []string{"-c", "echo", "-temperature", "warm", "hi"}, wantErr: "want a number"},
		{name: "bad scrub", args: []string{"-c", "echo", "-scrub", "everything", "hi"}, wantErr: "-scrub: want inputs, outputs or both"},
		{name: "scrub mode alone", args: []string{"-c", "echo", "-scrub-mode", "tokenize", "hi"}, wantErr: "-scrub-mode needs -scrub"},
		{name: "unknown flag", args: []string{"-c", "echo", "-model", "x", "hi"}, wantErr: "flag provided but not defined: -model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			output := tt.output
			if output == "" {
				output = "table"
			}
			g := &global{output: output, timeout: time.Second}
			var stderr bytes.Buffer
			call, err := parseConverse(g, tt.args, IO{Stdin: strings.NewReader(tt.stdin), Stderr: &stderr})
			if tt.wantErr != "" {
				require.ErrorIs(t, err, errUsage)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.True(t, proto.Equal(tt.want, call.req), "want %v\ngot  %v", tt.want, call.req)
			require.Equal(t, tt.wantStream, call.stream)
			require.Equal(t, tt.wantJSON, call.json)
		})
	}
}

func TestConverseHelp(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	_, err := parseConverse(&global{output: "table", timeout: time.Second}, []string{"-h"}, IO{Stderr: &stderr})
	require.ErrorIs(t, err, flag.ErrHelp)
	require.True(t, strings.HasPrefix(stderr.String(), "usage: parley converse -c COMPONENT"), stderr.String())
	for _, f := range []string{"c", "system", "temperature", "scrub", "scrub-mode", "stream", "json", "bypass-cache", "token", "router"} {
		require.Regexp(t, `(?m)^  -`+f+`( |$)`, stderr.String(), f)
	}
}

func TestParseScrub(t *testing.T) {
	t.Parallel()
	tests := []struct {
		what, mode string
		want       *conversationv1.Scrub
		wantErr    bool
	}{
		{what: "", mode: "", want: nil},
		{what: "inputs", want: &conversationv1.Scrub{Inputs: true}},
		{what: "Outputs", want: &conversationv1.Scrub{Outputs: true}},
		{what: "inputs, outputs", mode: "replace", want: &conversationv1.Scrub{Inputs: true, Outputs: true}},
		{what: "both", mode: "TOKENIZE", want: &conversationv1.Scrub{Inputs: true, Outputs: true, Mode: conversationv1.ScrubMode_SCRUB_MODE_TOKENIZE}},
		{what: "inputs,", wantErr: true},
		{what: "pii", wantErr: true},
		{what: "inputs", mode: "mask", wantErr: true},
		{what: "", mode: "replace", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.what+"/"+tt.mode, func(t *testing.T) {
			t.Parallel()
			got, err := ParseScrub(tt.what, tt.mode)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.True(t, proto.Equal(tt.want, got), "got %v", got)
		})
	}
}

func TestWriteAnswer(t *testing.T) {
	t.Parallel()
	choice := func(i int64, text string, calls ...*conversationv1.ToolCall) *conversationv1.Choice {
		return &conversationv1.Choice{Index: i, Message: &conversationv1.Message{Role: conversationv1.Role_ROLE_ASSISTANT, Content: text, ToolCalls: calls}}
	}
	tests := []struct {
		name    string
		choices []*conversationv1.Choice
		want    string
	}{
		{name: "one choice", choices: []*conversationv1.Choice{choice(0, "hello")}, want: "hello\n"},
		{name: "ends its own line", choices: []*conversationv1.Choice{choice(0, "a\nb\n")}, want: "a\nb\n"},
		{name: "two choices", choices: []*conversationv1.Choice{choice(0, "one"), choice(1, "two")}, want: "one\ntwo\n"},
		{name: "tool calls", choices: []*conversationv1.Choice{choice(0, "", &conversationv1.ToolCall{Id: "0", Name: "weather", Arguments: `{"city":"Oslo"}`})},
			want: "[tool call 0: weather({\"city\":\"Oslo\"})]\n"},
		{name: "no choices", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			require.NoError(t, writeAnswer(&b, &conversationv1.ConverseResponse{Choices: tt.choices}))
			require.Equal(t, tt.want, b.String())
		})
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	u := &conversationv1.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}
	require.Equal(t, "request r1  model gpt-x  tokens 3/4/7  cache hit", summary("r1", "gpt-x", u, true))
	require.Equal(t, "request -  tokens 0/0/0  cache miss", summary("", "", nil, false))
}

func TestStreamPrinter(t *testing.T) {
	t.Parallel()
	chunk := func(i int64, text string) *conversationv1.ConverseStreamResponse {
		return &conversationv1.ConverseStreamResponse{RequestId: "r1", Index: i, ContentDelta: text}
	}
	last := &conversationv1.ConverseStreamResponse{RequestId: "r1", FinishReason: "stop",
		Usage: &conversationv1.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}, CacheHit: true}
	tests := []struct {
		name   string
		chunks []*conversationv1.ConverseStreamResponse
		want   string
	}{
		{name: "deltas joined", chunks: []*conversationv1.ConverseStreamResponse{chunk(0, "Hel"), chunk(0, "lo"), last}, want: "Hello\n"},
		{name: "choices on their own lines", chunks: []*conversationv1.ConverseStreamResponse{chunk(0, "a"), chunk(1, "b"), chunk(1, "c")}, want: "a\nbc\n"},
		{name: "newline kept", chunks: []*conversationv1.ConverseStreamResponse{chunk(0, "a\n"), chunk(1, "b\n")}, want: "a\nb\n"},
		{name: "tool call", chunks: []*conversationv1.ConverseStreamResponse{chunk(0, "calling"),
			{Index: 0, ToolCalls: []*conversationv1.ToolCall{{Id: "7", Name: "f", Arguments: "{}"}}}}, want: "calling\n[tool call 7: f({})]\n"},
		{name: "nothing", chunks: []*conversationv1.ConverseStreamResponse{last}, want: ""},
		{name: "tool call in pieces", chunks: []*conversationv1.ConverseStreamResponse{
			{Index: 0, ToolCalls: []*conversationv1.ToolCall{{Id: "c1", Name: "get_weather"}}},
			{Index: 0, ToolCalls: []*conversationv1.ToolCall{{Arguments: `{"city":`}}},
			{Index: 0, ToolCalls: []*conversationv1.ToolCall{{Arguments: `"Paris"}`}}},
			{Index: 0, FinishReason: "tool_calls"}}, want: "[tool call c1: get_weather({\"city\":\"Paris\"})]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			sp := &streamPrinter{w: &b}
			for _, c := range tt.chunks {
				require.NoError(t, sp.chunk(c))
			}
			require.NoError(t, sp.end())
			require.Equal(t, tt.want, b.String())
		})
	}

	// JSON: one document per chunk and line; the summary fields are collected either way.
	var b bytes.Buffer
	sp := &streamPrinter{w: &b, json: true}
	for _, c := range []*conversationv1.ConverseStreamResponse{chunk(0, "Hel"), chunk(0, "lo"), last} {
		require.NoError(t, sp.chunk(c))
	}
	require.NoError(t, sp.end())
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Len(t, lines, 3)
	var doc struct {
		ContentDelta string `json:"contentDelta"`
	}
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &doc))
	require.Equal(t, "lo", doc.ContentDelta)
	require.Equal(t, "r1", sp.requestID)
	require.True(t, sp.cacheHit)
	require.EqualValues(t, 3, sp.usage.GetTotalTokens())
}
