package conversation

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// toolDispatcher answers with a tool call whose arguments carry PII.
type toolDispatcher struct{ args string }

func (d toolDispatcher) Dispatch(context.Context, *providerv1.Request) (*Dispatched, error) {
	return &Dispatched{Attempts: 1, Response: &providerv1.Response{Choices: []*providerv1.Choice{{
		FinishReason: "tool_calls", Content: "calling with secret",
		ToolCalls: []*providerv1.ToolCall{{Id: "1", Name: "send", Arguments: d.args}},
	}}}}, nil
}

func TestScrubToolArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                    string
		args                    string
		scrubOut, scrubArgs     bool
		auditScrub              bool
		wantContent, wantArgs   string
		wantAuditArgsNotContain string
	}{
		{name: "dapr exact: content only", args: `{"to":"secret"}`, scrubOut: true,
			wantContent: "calling with <SECRET>", wantArgs: `{"to":"secret"}`},
		{name: "beyond dapr: string values in arguments, layout kept", args: `{"to":"secret","n":3,"list":["a secret",{"k":"secret"}]}`, scrubOut: true, scrubArgs: true,
			wantContent: "calling with <SECRET>", wantArgs: `{"to":"<SECRET>","n":3,"list":["a <SECRET>",{"k":"<SECRET>"}]}`},
		{name: "arguments that are not json are one text", args: `to=secret`, scrubArgs: true,
			wantContent: "calling with secret", wantArgs: `to=<SECRET>`},
		{name: "no pii keeps arguments byte for byte", args: `{ "to" : "bob" }`, scrubOut: true, scrubArgs: true,
			wantContent: "calling with <SECRET>", wantArgs: `{ "to" : "bob" }`},
		{name: "audit copy scrubbed, response untouched", args: `{"to":"secret"}`, auditScrub: true,
			wantContent: "calling with secret", wantArgs: `{"to":"secret"}`, wantAuditArgsNotContain: `"secret"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil, nil, nil, Options{AuditScrub: tt.auditScrub})
			f.svc.dispatcher = toolDispatcher{args: tt.args}
			req := request("nocache", "x", false, tt.scrubOut)
			req.ScrubToolArguments = tt.scrubArgs
			res, err := f.svc.Converse(t.Context(), req)
			require.NoError(t, err)
			ch := res.Response.GetChoices()[0]
			require.Equal(t, tt.wantContent, ch.GetContent())
			require.Equal(t, tt.wantArgs, ch.GetToolCalls()[0].GetArguments())
			if tt.wantAuditArgsNotContain != "" {
				audit := string(f.audit.events[0].GetResponseJson())
				require.NotContains(t, audit, `\"to\":\"secret\"`)
				require.Contains(t, audit, `{\"to\":\"<SECRET>\"}`)
			}
		})
	}
}

// TestAuditInputScrubFolded: when no message is flagged, the audit copy's input scrub
// rides in the output's scrubber call, so the request waits for one call; a request that
// fails before its output scrub still gets its audit copy scrubbed before it is recorded;
// a request close to the audit size limit is scrubbed and measured first, as before; a
// scrubber failure redacts both copies. Raw text never reaches the audit log.
func TestAuditInputScrubFolded(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name        string
		scrubIn     bool
		scrubErr    error
		dispatchErr error
		maxEvent    int
		text        string
		wantCalls   int
		wantErr     bool
		wantAudit   string
		wantFinds   int64
	}{
		{name: "audit only: one call", text: "a secret", wantCalls: 1, wantAudit: "a <SECRET>", wantFinds: 2},
		{name: "flagged: input then output", scrubIn: true, text: "a secret", wantCalls: 2, wantAudit: "a <SECRET>", wantFinds: 1},
		{name: "provider failed: scrubbed before recording", dispatchErr: &ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Message: "no"},
			text: "a secret", wantCalls: 1, wantErr: true, wantAudit: "a <SECRET>", wantFinds: 1},
		{name: "near the size limit: scrubbed first", maxEvent: 600, text: "a secret " + strings.Repeat("x", 100), wantCalls: 2,
			wantAudit: "a <SECRET>", wantFinds: 2},
		{name: "scrubber down: both copies redacted", scrubErr: boom, text: "a secret", wantCalls: 1, wantAudit: redactedText},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.scrubErr, nil, nil, Options{AuditScrub: true})
			f.audit.max = tt.maxEvent
			f.disp.err = tt.dispatchErr
			_, err := f.svc.Converse(t.Context(), request("nocache", tt.text, tt.scrubIn, false))
			if tt.wantErr {
				require.Error(t, err)
			} else {
				require.NoError(t, err)
			}
			require.Len(t, *f.calls, tt.wantCalls)
			require.Len(t, f.audit.events, 1)
			ev := f.audit.events[0]
			require.Contains(t, string(ev.GetRequestJson()), tt.wantAudit)
			require.NotContains(t, string(ev.GetRequestJson()), "secret")
			require.NotContains(t, string(ev.GetResponseJson()), "secret")
			require.Equal(t, tt.wantFinds, ev.GetPiiFindings()["SECRET"])
		})
	}
}

// TestAuditScrubMemo: with the memo on, a repeated request whose texts the scrubber has
// answered for an audit copy before (a cache hit: same prompt, same answer) records a
// scrubbed audit copy without calling the scrubber; what the caller asked to scrub, and
// tokenize mode, always go to the scrubber.
func TestAuditScrubMemo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		scrubIn, scrubOut bool
		tokenize          bool
		wantSecondCalls   int
	}{
		{name: "audit only: from the memo", wantSecondCalls: 0},
		{name: "output asked: called", scrubOut: true, wantSecondCalls: 1},
		{name: "input asked: called for it, the output from the memo", scrubIn: true, wantSecondCalls: 1},
		{name: "tokenize: called", tokenize: true, wantSecondCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil, nil, nil, Options{AuditScrub: true, AuditScrubMemoBytes: 1 << 20})
			req := func() Request {
				r := request("echo", "a secret", tt.scrubIn, tt.scrubOut)
				r.Tokenize = tt.tokenize
				return r
			}
			_, err := f.svc.Converse(t.Context(), req())
			require.NoError(t, err)
			f.svc.bg.Wait()
			first := len(*f.calls)
			res, err := f.svc.Converse(t.Context(), req())
			require.NoError(t, err)
			require.True(t, res.CacheHit)
			require.Len(t, *f.calls, first+tt.wantSecondCalls)
			require.Len(t, f.audit.events, 2)
			for _, ev := range f.audit.events {
				require.NotContains(t, string(ev.GetRequestJson()), "secret")
				require.NotContains(t, string(ev.GetResponseJson()), "secret")
			}
			require.Equal(t, f.audit.events[0].GetPiiFindings(), f.audit.events[1].GetPiiFindings())
		})
	}
}

// TestScrubMemoBounds: the memo holds at most its bytes, least recently used out, and
// no answer past its time.
func TestScrubMemoBounds(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("x", 100)
	one := int64(len(text) + memoOverhead)
	m := newScrubMemo(2*one, time.Hour)
	call := func(s string) ScrubCall { return ScrubCall{Texts: []string{s}} }
	for _, s := range []string{"a" + text[1:], "b" + text[1:]} {
		m.store(call(s), []Scrubbed{{Text: s}})
	}
	_, ok := m.lookup(call("a" + text[1:]))
	require.True(t, ok)
	m.store(call("c"+text[1:]), []Scrubbed{{Text: "c" + text[1:]}})
	_, ok = m.lookup(call("b" + text[1:]))
	require.False(t, ok, "least recently used went")
	_, ok = m.lookup(ScrubCall{Texts: []string{"a" + text[1:], "c" + text[1:]}})
	require.True(t, ok)
	require.LessOrEqual(t, m.size, 2*one)
	_, ok = m.lookup(ScrubCall{Texts: []string{"a" + text[1:]}, Formats: []TextFormat{FormatJSON}})
	require.False(t, ok, "the format is part of the key")

	expired := newScrubMemo(1<<20, -time.Second)
	expired.store(call("a"), []Scrubbed{{Text: "a"}})
	_, ok = expired.lookup(call("a"))
	require.False(t, ok)
	require.Nil(t, newScrubMemo(0, time.Hour), "0 turns it off")
}
