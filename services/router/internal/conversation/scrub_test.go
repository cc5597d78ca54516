package conversation

import (
	"context"
	"testing"

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
