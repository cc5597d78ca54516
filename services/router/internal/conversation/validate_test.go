package conversation

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/jsondepth"
)

// nestedJSON is an object nested depth levels deep: {"a":{"a":…{}}}.
func nestedJSON(depth int) string {
	return strings.Repeat(`{"a":`, depth-1) + "{}" + strings.Repeat("}", depth-1)
}

func nestedStruct(t *testing.T, depth int) *structpb.Struct {
	t.Helper()
	s := &structpb.Struct{}
	require.NoError(t, s.UnmarshalJSON([]byte(nestedJSON(depth))))
	return s
}

// TestLimitsRefused checks the limits every request keeps: too many texts is refused
// (before, the scrubber refused the call and the audit copy was stored fully redacted:
// audit evasion), and JSON nested deeper than jsondepth.Max is refused (before, a
// 4,900-level request was stored and made every audit page holding it unreadable).
// A refused request reaches neither the scrubber nor a worker nor the audit log.
func TestLimitsRefused(t *testing.T) {
	t.Parallel()
	texts := func(n int) func(*Request) {
		return func(r *Request) {
			parts := make([]*providerv1.Part, n)
			for i := range parts {
				parts[i] = textPart("t")
			}
			r.Provider.Messages[0].Parts = parts
		}
	}
	tools := func(depth int) func(*Request) {
		return func(r *Request) {
			r.Provider.Tools = []*providerv1.Tool{{Type: "function", Name: "f", Parameters: nestedStruct(t, depth)}}
		}
	}
	format := func(depth int) func(*Request) {
		return func(r *Request) { r.Provider.ResponseFormat = nestedStruct(t, depth) }
	}
	history := func(part *providerv1.Part) func(*Request) {
		return func(r *Request) {
			r.Provider.Messages = append(r.Provider.Messages, &providerv1.Message{Role: providerv1.Role_ROLE_TOOL, Parts: []*providerv1.Part{part}})
			r.ScrubInput = append(r.ScrubInput, false)
		}
	}
	tests := []struct {
		name    string
		edit    func(*Request)
		wantErr string
	}{
		{name: "texts at the limit", edit: texts(64)},
		{name: "one text too many", edit: texts(65), wantErr: "the request has 65 texts"},
		{name: "tool parameters at the depth limit", edit: tools(jsondepth.Max)},
		{name: "tool parameters too deep", edit: tools(jsondepth.Max + 1), wantErr: "tools[0].parameters nest deeper than 64 levels"},
		{name: "4,900-level tool parameters", edit: tools(4900), wantErr: "tools[0].parameters nest deeper"},
		{name: "response format too deep", edit: format(jsondepth.Max + 1), wantErr: "response_format nests deeper"},
		{name: "tool-call arguments too deep", edit: history(callPart(nestedJSON(jsondepth.Max + 1))), wantErr: "tool-call arguments nest JSON deeper"},
		{name: "tool result too deep", edit: history(resultPart(nestedJSON(jsondepth.Max + 1))), wantErr: "tool result nest JSON deeper"},
		{name: "brackets in a tool result that is not JSON", edit: history(resultPart(strings.Repeat("[", 1000)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil, nil, nil, Options{AuditScrub: true, MaxTexts: 64})
			req := request("nocache", "hello", true, false)
			tt.edit(&req)
			_, err := f.svc.Converse(t.Context(), req)
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.Len(t, f.audit.events, 1)
				require.NotContains(t, string(f.audit.events[0].GetRequestJson()), redactedText)
				return
			}
			var ire *InvalidRequestError
			require.ErrorAs(t, err, &ire)
			require.Contains(t, ire.Detail, tt.wantErr)
			require.Less(t, len(ire.Detail), 200, "the detail does not echo the input")
			require.Empty(t, *f.calls, "no scrubber call")
			require.Zero(t, f.disp.calls, "no provider call")
			require.Empty(t, f.audit.events, "no audit record")
		})
	}
}

// TestAuditSizeChecked: a request whose audit copy cannot fit the audit log (half of
// NATS max_payload; the answer gets the other half) is refused before any provider
// call, and the refusal is recorded; before, the provider was called and the audit
// publish then failed with internal text for the caller.
func TestAuditSizeChecked(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		size    int
		refused bool
	}{
		{name: "fits", size: 1000},
		{name: "too large", size: 3000, refused: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil, nil, nil, Options{AuditScrub: true})
			f.audit.max = 4096
			_, err := f.svc.Converse(t.Context(), request("nocache", strings.Repeat("a", tt.size), false, false))
			require.Len(t, f.audit.events, 1, "recorded either way")
			ev := f.audit.events[0]
			if !tt.refused {
				require.NoError(t, err)
				require.Equal(t, 1, f.disp.calls)
				require.Contains(t, strings.ToLower(string(ev.GetRequestJson())), "aaaa")
				return
			}
			var ire *InvalidRequestError
			require.ErrorAs(t, err, &ire)
			require.Contains(t, ire.Detail, "more than the 2048 bytes it may take")
			require.Zero(t, f.disp.calls, "no provider call")
			require.Empty(t, ev.GetRequestJson())
			require.Equal(t, KindInvalidRequest.String(), ev.GetErrorCode(), "without an adapter the kind is recorded")
		})
	}
}
