package conversation

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// holdScrubber is upperScrubber with a ScrubStream that, like the real scrubber, holds
// back the end of the text that could still become "secret" (replace mode only).
type holdScrubber struct {
	upperScrubber
	streams *int
}

func (s holdScrubber) ScrubStream(context.Context, ScrubMode, []Token) (ScrubStream, error) {
	*s.streams++
	return &holdStream{out: make(chan Scrubbed, 1024)}, nil
}

type holdStream struct {
	pending string
	out     chan Scrubbed
}

func (h *holdStream) release(all bool) {
	cut := len(h.pending)
	if !all {
		cut = max(0, len(h.pending)-(len("secret")-1))
		// Never cut inside a whole "secret": it is replaced first.
		for i := strings.Index(h.pending, "secret"); i >= 0 && i < cut; {
			if i+len("secret") > cut {
				cut = i
				break
			}
			j := strings.Index(h.pending[i+1:], "secret")
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	if cut == 0 {
		return
	}
	piece := h.pending[:cut]
	h.pending = h.pending[cut:]
	var fs []Finding
	for range strings.Count(piece, "secret") {
		fs = append(fs, Finding{Entity: "SECRET"})
	}
	h.out <- Scrubbed{Text: strings.ReplaceAll(piece, "secret", "<SECRET>"), Findings: fs}
}

func (h *holdStream) Send(text string) error {
	h.pending += text
	h.release(false)
	return nil
}

func (h *holdStream) CloseSend() error {
	h.release(true)
	close(h.out)
	return nil
}

func (h *holdStream) Recv() (Scrubbed, error) {
	s, ok := <-h.out
	if !ok {
		return Scrubbed{}, io.EOF
	}
	return s, nil
}

func (h *holdStream) Close() error { return nil }

// splitDispatcher streams the joined texts of the request in chunks cut at cuts (byte
// offsets), or fails after failAfter chunks when set.
type splitDispatcher struct {
	mu        sync.Mutex
	cuts      []int
	calls     int
	failAfter int
	output    uint64 // completion tokens the answer reports; 1 when 0
}

func (d *splitDispatcher) Dispatch(context.Context, *providerv1.Request) (*Dispatched, error) {
	return nil, errors.New("unary dispatch on a stream")
}

func (d *splitDispatcher) DispatchStream(_ context.Context, req *providerv1.Request, onChunk func(*providerv1.Chunk) error) (*Dispatched, error) {
	d.mu.Lock()
	d.calls++
	cuts := d.cuts
	d.mu.Unlock()
	var texts []string
	for _, m := range req.GetMessages() {
		for _, p := range m.GetParts() {
			texts = append(texts, p.GetText())
		}
	}
	text := strings.Join(texts, "\n")
	prev, seq := 0, uint64(0)
	var asm Assembly
	for _, c := range append(cuts, len(text)) {
		c = min(c, len(text))
		if c < prev {
			continue
		}
		seq++
		if d.failAfter > 0 && int(seq) > d.failAfter {
			return nil, ErrWorkerLost
		}
		ch := &providerv1.Chunk{Seq: seq, Content: text[prev:c]}
		if c == len(text) {
			ch.FinishReason = "stop"
		}
		asm.Add(ch)
		if err := onChunk(ch); err != nil {
			return nil, err
		}
		prev = c
	}
	return &Dispatched{Attempts: 1, Response: asm.Response(&providerv1.Response{
		WorkerId: "w1", Model: "m", Choices: []*providerv1.Choice{{FinishReason: "stop"}},
		Usage: &providerv1.Usage{PromptTokens: 1, CompletionTokens: max(d.output, 1), TotalTokens: 1 + max(d.output, 1)},
	})}, nil
}

type streamFixture struct {
	svc     *Service
	disp    *splitDispatcher
	audit   *memAudit
	cache   *memCache
	streams *int
	reg     *prometheus.Registry
	calls   *[]ScrubCall // the scrubber's unary calls
}

func newStreamFixture(t *testing.T, opts Options) streamFixture {
	t.Helper()
	f := streamFixture{disp: &splitDispatcher{}, audit: &memAudit{}, cache: newMemCache(nil), streams: new(int), reg: prometheus.NewRegistry()}
	comps := components{
		"echo":    {Name: "echo", Type: "conversation.echo", CacheTTL: time.Minute, Fallbacks: []string{"nocache"}},
		"nocache": {Name: "nocache", Type: "conversation.echo"},
	}
	f.calls = &[]ScrubCall{}
	sc := holdScrubber{upperScrubber: upperScrubber{mu: &sync.Mutex{}, calls: f.calls}, streams: f.streams}
	svc, err := New(comps, sc, f.cache, f.disp, f.audit, opts, slog.New(slog.DiscardHandler), f.reg)
	require.NoError(t, err)
	f.svc = svc
	return f
}

// collectStream runs ConverseStream and returns the deltas' content.
func collectStream(t *testing.T, svc *Service, req Request) ([]string, *Result, error) {
	t.Helper()
	var deltas []string
	res, err := svc.ConverseStream(t.Context(), req, func(d Delta) error {
		deltas = append(deltas, d.Content)
		return nil
	})
	svc.bg.Wait()
	return deltas, res, err
}

// TestStreamScrubsAcrossEveryChunkBoundary: "secret" split at any offset never reaches the
// caller, and the deltas concatenated equal the unary scrubbed answer.
func TestStreamScrubsAcrossEveryChunkBoundary(t *testing.T) {
	t.Parallel()
	text := "tell the secret, then secretsecret now"
	want := "tell the <SECRET>, then <SECRET><SECRET> now"
	cuts := [][]int{nil}
	for k := 1; k < len(text); k++ {
		cuts = append(cuts, []int{k})
	}
	every := make([]int, len(text))
	for i := range every {
		every[i] = i + 1
	}
	cuts = append(cuts, every) // one byte per chunk
	for _, c := range cuts {
		f := newStreamFixture(t, Options{AuditScrub: true})
		f.disp.cuts = c
		deltas, res, err := collectStream(t, f.svc, request("nocache", text, false, true))
		require.NoError(t, err, "cuts %v", c)
		for _, d := range deltas {
			require.NotContains(t, d, "secret", "cuts %v", c)
			require.NotContains(t, d, "sec", "a delta holds part of the raw value (cuts %v)", c)
		}
		require.Equal(t, want, strings.Join(deltas, ""), "cuts %v", c)
		require.Equal(t, want, res.Response.GetChoices()[0].GetContent())
		require.Equal(t, "stop", res.Response.GetChoices()[0].GetFinishReason())
		require.Equal(t, 1, *f.streams, "one scrubber stream per conversation")
		require.Len(t, f.audit.events, 1)
		ev := f.audit.events[0]
		require.Contains(t, string(ev.GetResponseJson()), want)
		require.NotContains(t, string(ev.GetResponseJson()), "secret")
		require.Equal(t, int64(6), ev.GetPiiFindings()["SECRET"], "three in the audit copy of the request, three in the answer, each counted once")
		require.NotNil(t, ev.GetTimeToFirstToken())
	}
	// The unary answer is the same.
	f := newStreamFixture(t, Options{AuditScrub: true})
	f.svc.dispatcher = &echoDispatcher{}
	res, err := f.svc.Converse(t.Context(), request("nocache", text, false, true))
	require.NoError(t, err)
	require.Equal(t, want, res.Response.GetChoices()[0].GetContent())
}

// TestStreamRestoresTokensAcrossChunks: in tokenize mode the provider sees placeholders,
// split anywhere, and the caller gets its own values back.
func TestStreamRestoresTokensAcrossChunks(t *testing.T) {
	t.Parallel()
	text := "mail the secret to email"
	for k := 0; k <= len("mail the <SECRET_1> to <EMAIL_1>"); k++ {
		f := newStreamFixture(t, Options{})
		f.disp.cuts = []int{k}
		req := request("nocache", text, true, false)
		req.Tokenize = true
		deltas, res, err := collectStream(t, f.svc, req)
		require.NoError(t, err)
		require.Equal(t, text, strings.Join(deltas, ""), "cut at %d", k)
		require.Equal(t, text, res.Response.GetChoices()[0].GetContent())
		require.Contains(t, string(f.audit.events[0].GetResponseJson()), "<SECRET_1>", "the audit keeps the tokenized answer")
	}
}

func TestStreamCacheReplaysAndKeepsOnlyCompleteAnswers(t *testing.T) {
	t.Parallel()
	f := newStreamFixture(t, Options{})
	f.disp.cuts = []int{2, 4}
	deltas, res, err := collectStream(t, f.svc, request("echo", "hello world", false, false))
	require.NoError(t, err)
	require.Equal(t, []string{"he", "ll", "o world"}, deltas)
	require.False(t, res.CacheHit)

	deltas, res, err = collectStream(t, f.svc, request("echo", "hello world", false, false))
	require.NoError(t, err)
	require.True(t, res.CacheHit)
	require.Equal(t, []string{"hello world"}, deltas, "a hit replays as a stream")
	require.Equal(t, 1, f.disp.calls)

	// The caller goes away after the first delta: the provider call is stopped and
	// nothing is cached.
	gone := errors.New("client went away")
	_, err = f.svc.ConverseStream(t.Context(), request("echo", "other prompt", false, false), func(Delta) error { return gone })
	f.svc.bg.Wait()
	require.ErrorIs(t, err, gone)
	require.Len(t, f.cache.puts, 1, "only the complete answer was stored")
	require.Len(t, f.audit.events, 3)
	require.Equal(t, "STATUS_ERROR", f.audit.events[2].GetStatus().String())
}

// TestStreamNoFallbackAfterTheFirstChunk: a worker lost mid-stream ends the stream with
// the error; the fallback component is not asked, as the caller already has a part.
func TestStreamNoFallbackAfterTheFirstChunk(t *testing.T) {
	t.Parallel()
	f := newStreamFixture(t, Options{})
	f.disp.cuts = []int{2, 4}
	f.disp.failAfter = 1
	deltas, _, err := collectStream(t, f.svc, request("echo", "hello world", false, false))
	require.ErrorIs(t, err, ErrWorkerLost)
	require.Equal(t, []string{"he"}, deltas)
	require.Equal(t, 1, f.disp.calls, "no fallback after the first chunk")
	require.Empty(t, f.cache.puts)
}

// toolStreamDispatcher streams a tool call in pieces: id and name, then its arguments in
// two fragments that cut "secret" in half.
type toolStreamDispatcher struct{}

func (toolStreamDispatcher) Dispatch(context.Context, *providerv1.Request) (*Dispatched, error) {
	return nil, errors.New("unary dispatch on a stream")
}

func (toolStreamDispatcher) DispatchStream(_ context.Context, _ *providerv1.Request, onChunk func(*providerv1.Chunk) error) (*Dispatched, error) {
	var asm Assembly
	for i, c := range []*providerv1.Chunk{
		{ToolCalls: []*providerv1.ToolCallDelta{{Index: 0, Id: "c1", Name: "send"}}},
		{ToolCalls: []*providerv1.ToolCallDelta{{Index: 0, Arguments: `{"to":"sec`}}},
		{ToolCalls: []*providerv1.ToolCallDelta{{Index: 0, Arguments: `ret"}`}}, FinishReason: "tool_calls"},
	} {
		c.Seq = uint64(i + 1)
		asm.Add(c)
		if err := onChunk(c); err != nil {
			return nil, err
		}
	}
	return &Dispatched{Attempts: 1, Response: asm.Response(&providerv1.Response{Choices: []*providerv1.Choice{{FinishReason: "tool_calls"}}})}, nil
}

// TestStreamToolCalls: tool-call pieces pass through as they come, unless the caller asked
// for their arguments to be scrubbed: then each call arrives whole, scrubbed, at the end.
func TestStreamToolCalls(t *testing.T) {
	t.Parallel()
	for _, scrubArgs := range []bool{false, true} {
		f := newStreamFixture(t, Options{})
		f.svc.dispatcher = toolStreamDispatcher{}
		req := request("nocache", "call send", false, false)
		req.ScrubToolArguments = scrubArgs
		var deltas []Delta
		res, err := f.svc.ConverseStream(t.Context(), req, func(d Delta) error {
			deltas = append(deltas, d)
			return nil
		})
		require.NoError(t, err)
		var args strings.Builder
		for _, d := range deltas {
			for _, tc := range d.ToolCalls {
				args.WriteString(tc.GetArguments())
			}
		}
		call := res.Response.GetChoices()[0].GetToolCalls()[0]
		require.Equal(t, "send", call.GetName())
		require.Equal(t, "tool_calls", res.Response.GetChoices()[0].GetFinishReason())
		if scrubArgs {
			require.Len(t, deltas, 1, "the call arrives whole")
			require.Equal(t, `{"to":"<SECRET>"}`, args.String())
			require.Equal(t, "c1", deltas[0].ToolCalls[0].GetId())
		} else {
			require.Len(t, deltas, 3, "the pieces pass through")
			require.Equal(t, `{"to":"secret"}`, args.String())
		}
		require.Equal(t, args.String(), call.GetArguments(), "the result is what the caller got")
	}
}
