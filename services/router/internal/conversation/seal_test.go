package conversation

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/seal"
	"github.com/parleyhq/parley/libs/seal/sealtest"
)

// openCopy opens an event's sealed copy as the audit service does: with the private key
// and the event's request id.
func openCopy(t *testing.T, o *seal.Opener, ev *auditv1.ConversationEvent) *auditv1.AuditCopy {
	t.Helper()
	sc := ev.GetSealed()
	require.NotNil(t, sc, "the event carries a sealed copy")
	msg, err := o.Open(seal.Box{Enc: sc.GetEnc(), Nonce: sc.GetNonce(), Ciphertext: sc.GetCiphertext()}, []byte(ev.GetRequestId()))
	require.NoError(t, err)
	_, err = o.Open(seal.Box{Enc: sc.GetEnc(), Nonce: sc.GetNonce(), Ciphertext: sc.GetCiphertext()}, []byte("another request"))
	require.ErrorIs(t, err, seal.ErrOpen, "the box is bound to its event's request id")
	cp := &auditv1.AuditCopy{}
	require.NoError(t, proto.Unmarshal(msg, cp))
	return cp
}

func copyText(p *providerv1.Request) string {
	if p == nil {
		return ""
	}
	return p.GetMessages()[0].GetParts()[0].GetText()
}

// TestSealedAuditCopy: with a sealer, a scrub made only for the audit copy is not made
// (the scrubber's calls are counted): the event carries the copy sealed to the audit
// service, with the raw texts and the flags naming what it must scrub, and no request or
// response of its own; its findings are those of the caller's scrubs. Scrubs the caller
// asked for are made as before, and the audit texts ride in them (nothing left to seal).
func TestSealedAuditCopy(t *testing.T) {
	t.Parallel()
	const text = "a secret"
	tests := []struct {
		name              string
		component         string
		scrubIn, scrubOut bool
		tokenize          bool
		dispatchErr       error
		second            bool // the second call (a hit for "echo") is the one checked
		wantCalls         int  // the scrubber's calls, over both calls when second
		wantUnsealedCalls int  // the same without a sealer
		wantSealed        bool
		wantReq, wantResp string // the copy's texts (sealed or not)
		wantScrubReq      bool
		wantScrubResp     bool
		wantFindings      int64
	}{
		{name: "miss, audit only", component: "echo", wantCalls: 0, wantUnsealedCalls: 1, wantSealed: true,
			wantReq: text, wantResp: text, wantScrubReq: true, wantScrubResp: true},
		{name: "hit, audit only", component: "echo", second: true, wantCalls: 0, wantUnsealedCalls: 2, wantSealed: true,
			wantReq: text, wantResp: text, wantScrubReq: true, wantScrubResp: true},
		{name: "cache off, audit only", component: "nocache", wantCalls: 0, wantUnsealedCalls: 1, wantSealed: true,
			wantReq: text, wantResp: text, wantScrubReq: true, wantScrubResp: true},
		{name: "provider error", component: "nocache", dispatchErr: &ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Message: "no"},
			wantCalls: 0, wantUnsealedCalls: 1, wantSealed: true, wantReq: text, wantScrubReq: true},
		{name: "caller scrubs input: the output is sealed", component: "nocache", scrubIn: true, wantCalls: 1, wantUnsealedCalls: 2, wantSealed: true,
			wantReq: "a <SECRET>", wantResp: "a <SECRET>", wantScrubResp: true, wantFindings: 1},
		{name: "caller scrubs output: audit texts ride in its call", component: "nocache", scrubOut: true, wantCalls: 1, wantUnsealedCalls: 1,
			wantReq: "a <SECRET>", wantResp: "a <SECRET>", wantFindings: 2},
		{name: "caller scrubs both", component: "nocache", scrubIn: true, scrubOut: true, wantCalls: 2, wantUnsealedCalls: 2,
			wantReq: "a <SECRET>", wantResp: "a <SECRET>", wantFindings: 1},
		{name: "tokenize, nothing flagged", component: "nocache", tokenize: true, wantCalls: 0, wantUnsealedCalls: 1, wantSealed: true,
			wantReq: text, wantResp: text, wantScrubReq: true, wantScrubResp: true},
		{name: "tokenize, flagged: the output continues the mapping", component: "nocache", tokenize: true, scrubIn: true, wantCalls: 2, wantUnsealedCalls: 2,
			wantReq: "a <SECRET_1>", wantResp: "a <SECRET_1>", wantFindings: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sealer, opener := sealtest.Pair(t)
			run := func(opts Options) (fixture, *auditv1.ConversationEvent) {
				f := newFixture(t, nil, nil, nil, opts)
				f.disp.err = tt.dispatchErr
				req := func() Request {
					r := request(tt.component, text, tt.scrubIn, tt.scrubOut)
					r.Tokenize = tt.tokenize
					return r
				}
				_, err := f.svc.Converse(t.Context(), req())
				f.svc.bg.Wait()
				if tt.second {
					res, err2 := f.svc.Converse(t.Context(), req())
					require.NoError(t, err2)
					require.True(t, res.CacheHit)
				}
				if tt.dispatchErr != nil {
					require.Error(t, err)
				} else {
					require.NoError(t, err)
				}
				return f, f.audit.events[len(f.audit.events)-1]
			}
			// Without a sealer, as before.
			f, _ := run(Options{AuditScrub: true})
			require.Len(t, *f.calls, tt.wantUnsealedCalls, "scrubber calls without a sealer")

			f, ev := run(Options{AuditScrub: true, AuditSealer: sealer})
			require.Len(t, *f.calls, tt.wantCalls, "scrubber calls with a sealer")
			require.Equal(t, tt.wantFindings, ev.GetPiiFindings()["SECRET"], "the router's findings")
			sealed := float64(0)
			if tt.wantSealed {
				sealed = float64(len(f.audit.events)) // one per event
			}
			require.Equal(t, sealed, testutil.ToFloat64(f.svc.m.auditSealed))
			req, resp := ev.GetRequest(), ev.GetResponse()
			if tt.wantSealed {
				require.Nil(t, ev.GetRequest(), "the raw copy is only sealed")
				require.Nil(t, ev.GetResponse())
				require.Empty(t, ev.GetRequestJson())
				require.NotContains(t, string(ev.GetSealed().GetCiphertext()), "secret")
				cp := openCopy(t, opener, ev)
				require.Equal(t, tt.wantScrubReq, cp.GetScrubRequest())
				require.Equal(t, tt.wantScrubResp, cp.GetScrubResponse())
				require.Equal(t, tt.tokenize, cp.GetTokenize())
				req, resp = cp.GetRequest(), cp.GetResponse()
			} else {
				require.Nil(t, ev.GetSealed())
			}
			require.Equal(t, tt.wantReq, copyText(req))
			if tt.wantResp == "" {
				require.Nil(t, resp)
			} else {
				require.Equal(t, tt.wantResp, resp.GetChoices()[0].GetContent())
			}
		})
	}
}

// TestSealedAuditCopyStream: a stream's end makes no scrubber call for the audit copy
// either, on a miss, a hit and with the content scrubbed through the scrubber stream
// (the sealed answer then holds the caller's scrubbed content).
func TestSealedAuditCopyStream(t *testing.T) {
	t.Parallel()
	const text = "a secret"
	tests := []struct {
		name          string
		component     string
		scrubOut      bool
		second        bool
		wantStreams   int
		wantResp      string
		wantFindings  int64
		wantUnsealed  int  // the scrubber's unary calls without a sealer
		wantScrubResp bool // the answer holds texts for the audit service to scrub
	}{
		{name: "miss", component: "echo", wantResp: text, wantUnsealed: 1, wantScrubResp: true},
		{name: "hit", component: "echo", second: true, wantResp: text, wantUnsealed: 2, wantScrubResp: true},
		// The content is scrubbed already, and the answer has no other text.
		{name: "content through the scrubber stream", component: "nocache", scrubOut: true, wantStreams: 1, wantResp: "a <SECRET>", wantFindings: 1, wantUnsealed: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sealer, opener := sealtest.Pair(t)
			run := func(opts Options) (streamFixture, *auditv1.ConversationEvent) {
				f := newStreamFixture(t, opts)
				deltas, _, err := collectStream(t, f.svc, request(tt.component, text, false, tt.scrubOut))
				require.NoError(t, err)
				require.Equal(t, tt.wantResp, strings.Join(deltas, ""))
				if tt.second {
					deltas, res, err := collectStream(t, f.svc, request(tt.component, text, false, tt.scrubOut))
					require.NoError(t, err)
					require.True(t, res.CacheHit)
					require.Equal(t, tt.wantResp, strings.Join(deltas, ""))
				}
				return f, f.audit.events[len(f.audit.events)-1]
			}
			f, _ := run(Options{AuditScrub: true})
			require.Len(t, *f.calls, tt.wantUnsealed, "scrubber calls without a sealer")

			f, ev := run(Options{AuditScrub: true, AuditSealer: sealer})
			require.Empty(t, *f.calls, "no scrubber call for the audit copy")
			want := tt.wantStreams
			if tt.second {
				want *= 2
			}
			require.Equal(t, want, *f.streams)
			require.Nil(t, ev.GetRequest())
			require.Nil(t, ev.GetResponse())
			require.Equal(t, tt.wantFindings, ev.GetPiiFindings()["SECRET"])
			cp := openCopy(t, opener, ev)
			require.True(t, cp.GetScrubRequest())
			require.Equal(t, tt.wantScrubResp, cp.GetScrubResponse())
			require.Equal(t, text, copyText(cp.GetRequest()))
			require.Equal(t, tt.wantResp, cp.GetResponse().GetChoices()[0].GetContent())
			require.NotNil(t, ev.GetTimeToFirstToken())
		})
	}
}

// failingSealer cannot seal.
type failingSealer struct{}

func (failingSealer) Seal([]byte, []byte) (seal.Box, error) {
	return seal.Box{}, errors.New("no entropy")
}

// TestSealFailureRedacts: a copy that cannot be sealed is recorded with its texts
// redacted, never raw.
func TestSealFailureRedacts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil, nil, Options{AuditScrub: true, AuditSealer: failingSealer{}})
	_, err := f.svc.Converse(t.Context(), request("nocache", "a secret", false, false))
	require.NoError(t, err)
	require.Empty(t, *f.calls)
	ev := f.audit.events[0]
	require.Nil(t, ev.GetSealed())
	require.Contains(t, string(ev.GetRequestJson()), redactedText)
	require.Contains(t, string(ev.GetResponseJson()), redactedText)
	require.NotContains(t, string(ev.GetRequestJson())+string(ev.GetResponseJson()), "secret")
	require.Equal(t, float64(1), testutil.ToFloat64(f.svc.m.auditRedacted))
}

// TestSealOverhead: sealing adds at most sealOverhead bytes to an event beyond its
// request and response fields, whatever their sizes (length prefixes grow with them), so
// fitAudit measures the sealed copy; a request that fits unsealed but not sealed is
// refused before the provider call, and its event still recorded.
func TestSealOverhead(t *testing.T) {
	t.Parallel()
	sealer, _ := sealtest.Pair(t)
	for _, n := range []int{0, 1, 100, 127, 128, 16383, 16384, 1 << 20, 3 << 20} {
		req := request("echo", strings.Repeat("x", n), false, false).Provider
		req.RequestId = "0193e5a0-0000-7000-8000-000000000000"
		resp := &providerv1.Response{Choices: []*providerv1.Choice{{Content: strings.Repeat("y", n/2), FinishReason: "stop"}}}
		ev := &auditv1.ConversationEvent{RequestId: req.GetRequestId(), Request: req, Response: resp}
		plain := proto.Size(ev)
		msg, err := proto.Marshal(&auditv1.AuditCopy{Request: req, Response: resp, ScrubRequest: true, ScrubResponse: true, Tokenize: true})
		require.NoError(t, err)
		box, err := sealer.Seal(msg, []byte(ev.GetRequestId()))
		require.NoError(t, err)
		sealed := proto.Size(&auditv1.ConversationEvent{RequestId: ev.GetRequestId(),
			Sealed: &auditv1.SealedCopy{Enc: box.Enc, Nonce: box.Nonce, Ciphertext: box.Ciphertext}})
		require.LessOrEqual(t, sealed-plain, sealOverhead, "texts of %d bytes", n)
		require.Positive(t, sealed-plain)
	}

	// fitAudit measures the sealed size.
	req := request("nocache", strings.Repeat("x", 200), false, false)
	limit := proto.Size(req.Provider) + sealOverhead/2 // the request alone fits, sealed it does not
	for _, tt := range []struct {
		name    string
		sealer  AuditSealer
		wantErr bool
	}{{name: "unsealed fits"}, {name: "sealed does not", sealer: sealer, wantErr: true}} {
		f := newFixture(t, nil, nil, nil, Options{AuditScrub: true, AuditSealer: tt.sealer})
		f.audit.max = 2 * (limit + 64) // fitAudit's half, with room for the scrubbed copy's placeholders
		_, err := f.svc.Converse(t.Context(), request("nocache", strings.Repeat("x", 200), false, false))
		if !tt.wantErr {
			require.NoError(t, err, tt.name)
			continue
		}
		require.Equal(t, KindInvalidRequest, KindOf(err), tt.name)
		require.Zero(t, f.disp.calls, "refused before the provider call")
		require.Len(t, f.audit.events, 1)
		require.Nil(t, f.audit.events[0].GetSealed(), "nothing left to seal: the copy was dropped")
		require.Nil(t, f.audit.events[0].GetRequest())
	}
}
