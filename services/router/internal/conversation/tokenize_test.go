package conversation

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// fixedDispatcher answers with a copy of resp and keeps a copy of each request it got.
type fixedDispatcher struct {
	mu   sync.Mutex
	resp *providerv1.Response
	got  []*providerv1.Request
}

func (d *fixedDispatcher) Dispatch(_ context.Context, req *providerv1.Request) (*Dispatched, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, _ := proto.Clone(req).(*providerv1.Request)
	d.got = append(d.got, r)
	resp, _ := proto.Clone(d.resp).(*providerv1.Response)
	return &Dispatched{Attempts: 1, Response: resp}, nil
}

func textPart(s string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_Text{Text: s}}
}

func callPart(args string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{Id: "c1", Name: "send", Arguments: args}}}
}

func resultPart(content string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_ToolResult{ToolResult: &providerv1.ToolResult{ToolCallId: "c1", Name: "send", Content: content}}}
}

func TestTokenizeRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil, nil, Options{AuditScrub: true})
	req := request("echo", "mail the secret to email", true, false)
	req.Tokenize = true
	res, err := f.svc.Converse(t.Context(), req)
	f.svc.bg.Wait()
	require.NoError(t, err)
	require.Equal(t, "mail the secret to email", res.Response.GetChoices()[0].GetContent(), "the caller gets its values back")

	// The provider saw tokens only.
	require.Equal(t, 1, f.disp.calls)
	require.Equal(t, ScrubTokenize, (*f.calls)[0].Mode)
	require.Equal(t, []TextFormat{FormatText}, (*f.calls)[0].Formats)

	// The audit record keeps the tokenized text, request and answer, and no mapping.
	require.Len(t, f.audit.events, 1)
	for _, b := range [][]byte{f.audit.events[0].GetRequestJson(), f.audit.events[0].GetResponseJson()} {
		require.Contains(t, string(b), "mail the <SECRET_1> to <EMAIL_1>")
		require.NotContains(t, string(b), "secret")
		require.NotContains(t, string(b), "email")
	}

	// The cache key is the tokenized request's, and the cached answer is tokenized.
	comp, _ := f.svc.Lookup("echo")
	tokenized := &providerv1.Request{Tenant: DefaultTenant, Messages: []*providerv1.Message{{
		Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{textPart("mail the <SECRET_1> to <EMAIL_1>")},
	}}}
	require.Equal(t, CacheKey(comp, tokenized), f.cache.ids[0].Hash)
	require.Len(t, f.cache.m, 1)
	for _, v := range f.cache.m {
		cached := &providerv1.Response{}
		require.NoError(t, proto.Unmarshal(v, cached))
		require.Equal(t, "mail the <SECRET_1> to <EMAIL_1>", cached.GetChoices()[0].GetContent())
	}

	// The same prompt hits the cache and is restored again.
	req2 := request("echo", "mail the secret to email", true, false)
	req2.Tokenize = true
	res2, err := f.svc.Converse(t.Context(), req2)
	require.NoError(t, err)
	require.True(t, res2.CacheHit)
	require.Equal(t, 1, f.disp.calls)
	require.Equal(t, "mail the secret to email", res2.Response.GetChoices()[0].GetContent())
	require.NotContains(t, string(f.audit.events[1].GetResponseJson()), "secret")
}

func TestTokenizeOutputs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil, nil, Options{})
	d := &fixedDispatcher{resp: &providerv1.Response{Choices: []*providerv1.Choice{{
		FinishReason: "tool_calls",
		Content:      "you said <SECRET_1>; again secret, and a new email",
		ToolCalls:    []*providerv1.ToolCall{{Id: "c1", Name: "send", Arguments: `{"body":"<SECRET_1>","cc":"email"}`}},
	}}}}
	f.svc.dispatcher = d
	req := request("nocache", "my secret", true, true)
	req.ScrubToolArguments = true
	req.Tokenize = true
	res, err := f.svc.Converse(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, "my <SECRET_1>", d.got[0].GetMessages()[0].GetParts()[0].GetText())

	// Values of the input come back; new PII in the answer keeps its new token.
	ch := res.Response.GetChoices()[0]
	require.Equal(t, "you said secret; again secret, and a new <EMAIL_1>", ch.GetContent())
	require.Equal(t, `{"body":"secret","cc":"<EMAIL_1>"}`, ch.GetToolCalls()[0].GetArguments())

	// The output call continued the input's mapping, tool-call arguments as JSON.
	require.Len(t, *f.calls, 2)
	out := (*f.calls)[1]
	require.Equal(t, ScrubTokenize, out.Mode)
	require.Equal(t, []Token{{Token: "<SECRET_1>", Entity: "SECRET", Value: "secret"}}, out.Tokens)
	require.Equal(t, []TextFormat{FormatText, FormatJSON}, out.Formats)

	audit := string(f.audit.events[0].GetResponseJson())
	require.Contains(t, audit, "again <SECRET_1>")
	require.NotContains(t, audit, "secret")
}

func TestTokenizeSpoofedPlaceholderNotRestored(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil, nil, Options{})
	// Audit-only texts are not flagged: their tokens never reached the provider and are
	// not restored.
	f.svc.opts.AuditScrub = true
	d := &fixedDispatcher{resp: &providerv1.Response{Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "<SECRET_1> <EMAIL_1>"}}}}
	f.svc.dispatcher = d
	req := request("nocache", "an email", true, false)
	req.Provider.Messages = append(req.Provider.Messages, &providerv1.Message{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{textPart("a secret")}})
	req.ScrubInput = []bool{true, false}
	req.Tokenize = true
	res, err := f.svc.Converse(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, "a secret", d.got[0].GetMessages()[1].GetParts()[0].GetText())
	require.Equal(t, "<SECRET_1> email", res.Response.GetChoices()[0].GetContent())
}

func TestTokenMapRestoresJSONEscaped(t *testing.T) {
	t.Parallel()
	tm, err := newTokenMap(t.Context(), []Token{{Token: "<SECRET_1>", Entity: "SECRET", Value: `pa"ss\word`}}, []string{"x <SECRET_1>"})
	require.NoError(t, err)
	resp := &providerv1.Response{Choices: []*providerv1.Choice{{
		Content:   "is <SECRET_1>",
		ToolCalls: []*providerv1.ToolCall{{Arguments: `{"p":"<SECRET_1>"}`}, {Arguments: `p=<SECRET_1>`}},
	}}}
	tm.restoreResponse(resp)
	ch := resp.GetChoices()[0]
	require.Equal(t, `is pa"ss\word`, ch.GetContent())
	require.Equal(t, `{"p":"pa\"ss\\word"}`, ch.GetToolCalls()[0].GetArguments())
	require.Equal(t, `p=pa"ss\word`, ch.GetToolCalls()[1].GetArguments())
}

func TestScrubStructuredInputs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil, nil, Options{})
	d := &fixedDispatcher{resp: &providerv1.Response{Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "ok"}}}}
	f.svc.dispatcher = d
	req := Request{
		Provider: &providerv1.Request{Component: "nocache", Messages: []*providerv1.Message{
			{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{textPart("send the secret")}},
			{Role: providerv1.Role_ROLE_ASSISTANT, Parts: []*providerv1.Part{callPart(`{"to":"secret"}`)}},
			{Role: providerv1.Role_ROLE_TOOL, Parts: []*providerv1.Part{resultPart(`{"sent":"secret"}`)}},
			{Role: providerv1.Role_ROLE_TOOL, Parts: []*providerv1.Part{resultPart(`sent secret`)}},
			{Role: providerv1.Role_ROLE_ASSISTANT, Parts: []*providerv1.Part{callPart(`{"to":"secret"}`)}},
		}},
		ScrubInput: []bool{true, true, true, true, false},
	}
	_, err := f.svc.Converse(t.Context(), req)
	require.NoError(t, err)
	require.Len(t, *f.calls, 1)
	in := (*f.calls)[0]
	require.Equal(t, ScrubReplace, in.Mode)
	require.Equal(t, []TextFormat{FormatText, FormatJSON, FormatJSON, FormatText}, in.Formats)
	require.Equal(t, []string{"send the secret", `{"to":"secret"}`, `{"sent":"secret"}`, "sent secret"}, in.Texts)

	msgs := d.got[0].GetMessages()
	require.Equal(t, `{"to":"<SECRET>"}`, msgs[1].GetParts()[0].GetToolCall().GetArguments(), "flagged history tool-call arguments are scrubbed")
	require.Equal(t, `{"sent":"<SECRET>"}`, msgs[2].GetParts()[0].GetToolResult().GetContent())
	require.Equal(t, `sent <SECRET>`, msgs[3].GetParts()[0].GetToolResult().GetContent())
	require.Equal(t, `{"to":"secret"}`, msgs[4].GetParts()[0].GetToolCall().GetArguments(), "unflagged input is left alone")
}

func TestScrubToolArgumentsSentAsJSON(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil, nil, Options{AuditScrub: true})
	f.svc.dispatcher = toolDispatcher{args: `{"to":"secret"}`}
	req := request("nocache", "x", false, false)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := f.svc.Converse(ctx, req)
	require.NoError(t, err)
	// Nothing flagged: the audit copy's input rides along in the output's call.
	require.Len(t, *f.calls, 1)
	require.Equal(t, []TextFormat{FormatText, FormatJSON, FormatText}, (*f.calls)[0].Formats)
	require.Equal(t, []string{"calling with secret", `{"to":"secret"}`, "x"}, (*f.calls)[0].Texts)
}

// TestTokenScanLinear bounds the work of finding which tokens the provider saw by the
// size of the texts, whatever the number of tokens: the earlier search (one
// strings.Contains per token over every text) did tokens × texts passes, 16,000 e-mail
// addresses costing seconds of router CPU.
func TestTokenScanLinear(t *testing.T) {
	t.Parallel()
	mapping := func(n int) ([]Token, map[string]int) {
		all := make([]Token, n)
		byToken := make(map[string]int, n)
		for i := range all {
			all[i] = Token{Token: fmt.Sprintf("<EMAIL_ADDRESS_%d>", i+1), Entity: "EMAIL_ADDRESS", Value: fmt.Sprintf("u%d@example.com", i)}
			byToken[all[i].Token] = i
		}
		return all, byToken
	}
	for _, n := range []int{1000, 4000, 16000} {
		all, byToken := mapping(n)
		oneText := make([]string, n)
		for i, tk := range all {
			oneText[i] = "mail " + tk.Token
		}
		cases := []struct {
			name  string
			texts []string
			want  int
		}{
			{name: "every token in one text", texts: []string{strings.Join(oneText, ", ")}, want: n},
			{name: "one token per text", texts: oneText, want: n},
			{name: "half the tokens", texts: oneText[:n/2], want: n / 2},
			{name: "only '<'", texts: []string{strings.Repeat("<", n*20)}, want: 0},
			{name: "unterminated candidates", texts: []string{strings.Repeat("<EMAIL_ADDRESS_1", n)}, want: 0},
			{name: "over-long candidates", texts: []string{strings.Repeat("<"+strings.Repeat("A", 100)+">", n)}, want: 0},
		}
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%d/%s", n, tc.name), func(t *testing.T) {
				t.Parallel()
				size := 0
				for _, s := range tc.texts {
					size += len(s)
				}
				var sc tokenScan
				got, err := sc.present(t.Context(), byToken, tc.texts)
				require.NoError(t, err)
				require.Len(t, got, tc.want)
				// Each byte is examined at most twice (once by the pass, once inside a
				// candidate), plus one lookup per candidate.
				require.LessOrEqual(t, sc.steps, 3*size, "steps for %d bytes", size)
			})
		}
	}
}

func TestTokenMapHonoursCancellation(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := newTokenMap(ctx, []Token{{Token: "<EMAIL_ADDRESS_1>", Value: "a@b.c"}}, []string{"<EMAIL_ADDRESS_1>"})
	require.ErrorIs(t, err, context.Canceled)

	// A long text is abandoned part-way: the context ends after the scan started.
	byToken := map[string]int{"<EMAIL_ADDRESS_1>": 0}
	text := strings.Repeat("x", 8*cancelCheckBytes)
	sc := tokenScan{}
	_, err = sc.present(&endsAfter{Context: t.Context(), checks: 1}, byToken, []string{text})
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, sc.steps, len(text), "the scan stopped before the end of the text")
}

// endsAfter is a context whose Err reports Canceled once it has been asked checks times.
type endsAfter struct {
	context.Context
	checks int
}

func (c *endsAfter) Err() error {
	if c.checks <= 0 {
		return context.Canceled
	}
	c.checks--
	return nil
}
