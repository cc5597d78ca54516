package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/providertext"
	"github.com/parleyhq/parley/libs/seal"
	"github.com/parleyhq/parley/libs/seal/sealtest"
	"github.com/parleyhq/parley/services/audit/internal/ingest"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// emailRE is what fakeScrubber finds: e-mail addresses.
var emailRE = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[a-z]{2,}`)

// fakeScrubber scrubs e-mail addresses deterministically, as pii-scrubber's Scrub does:
// <EMAIL_ADDRESS> in replace mode, numbered tokens continuing the request's mapping in
// tokenize mode. It counts its calls and can be made unavailable.
type fakeScrubber struct {
	down atomic.Bool

	mu    sync.Mutex
	calls []*piiv1.ScrubRequest // successful calls
}

func (f *fakeScrubber) Scrub(ctx context.Context, req *piiv1.ScrubRequest) (*piiv1.ScrubResponse, error) {
	if f.down.Load() {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("scrubber down"))
	}
	if err := ctx.Err(); err != nil {
		return nil, connect.NewError(connect.CodeCanceled, err)
	}
	if len(req.GetTexts()) > ingest.DefaultScrubMaxTexts {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("too many texts"))
	}
	tokens := append([]*piiv1.Token(nil), req.GetTokens()...)
	byValue := map[string]string{}
	for _, t := range tokens {
		byValue[t.GetValue()] = t.GetToken()
	}
	res := &piiv1.ScrubResponse{}
	for _, text := range req.GetTexts() {
		r := &piiv1.ScrubResult{}
		for _, loc := range emailRE.FindAllStringIndex(text, -1) {
			r.Findings = append(r.Findings, &piiv1.Finding{Entity: "EMAIL_ADDRESS", Start: int64(loc[0]), End: int64(loc[1]), Score: 1})
		}
		r.Text = emailRE.ReplaceAllStringFunc(text, func(v string) string {
			if req.GetMode() != piiv1.Mode_MODE_TOKENIZE {
				return "<EMAIL_ADDRESS>"
			}
			tok, ok := byValue[v]
			if !ok {
				tok = fmt.Sprintf("<EMAIL_ADDRESS_%d>", len(tokens)+1)
				byValue[v] = tok
				tokens = append(tokens, &piiv1.Token{Token: tok, Entity: "EMAIL_ADDRESS", Value: v})
			}
			return tok
		})
		res.Results = append(res.Results, r)
	}
	if req.GetMode() == piiv1.Mode_MODE_TOKENIZE {
		res.Tokens = tokens
	}
	f.mu.Lock()
	f.calls = append(f.calls, proto.CloneOf(req))
	f.mu.Unlock()
	return res, nil
}

func (f *fakeScrubber) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// rawCopy is an audit copy whose every scrubbable text holds email: a text part, a
// tool call's arguments, a JSON tool result, the answer's content and a tool call of the
// answer (five texts, one address each).
func rawCopy(email string) *auditv1.AuditCopy {
	return &auditv1.AuditCopy{
		Request: &providerv1.Request{Messages: []*providerv1.Message{
			{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "write to " + email + " please"}}}},
			{Role: providerv1.Role_ROLE_ASSISTANT, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{
				Id: "c1", Type: "function", Name: "send", Arguments: `{"to":"` + email + `"}`,
			}}}}},
			{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolResult{ToolResult: &providerv1.ToolResult{
				ToolCallId: "c1", Name: "send", Content: `{"sent":"` + email + `"}`,
			}}}}},
		}},
		Response: &providerv1.Response{Choices: []*providerv1.Choice{{
			FinishReason: "stop",
			Content:      "I wrote to " + email,
			ToolCalls:    []*providerv1.ToolCall{{Id: "c2", Type: "function", Name: "log", Arguments: `{"who":"` + email + `"}`}},
		}}},
		ScrubRequest:  true,
		ScrubResponse: true,
	}
}

// sealedEvent is event i of tenant-a carrying c sealed with s to the request id.
func sealedEvent(t testing.TB, s *seal.Sealer, i int, c *auditv1.AuditCopy) *auditv1.ConversationEvent {
	t.Helper()
	ev := event(t, "tenant-a", i, 0)
	ev.RequestJson, ev.ResponseJson = nil, nil
	msg, err := proto.Marshal(c)
	require.NoError(t, err)
	box, err := s.Seal(msg, []byte(ev.GetRequestId()))
	require.NoError(t, err)
	ev.Sealed = &auditv1.SealedCopy{Enc: box.Enc, Nonce: box.Nonce, Ciphertext: box.Ciphertext}
	return ev
}

// storedRow is what a test reads back of a row.
type storedRow struct {
	request, response string
	findings          map[string]int64
}

func (e *env) storedRows(t *testing.T) map[string]storedRow {
	t.Helper()
	rows, err := e.pool.Query(t.Context(), "SELECT request_id::text, request::text, coalesce(response::text, ''), pii_findings FROM conversations")
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]storedRow{}
	for rows.Next() {
		var id string
		var r storedRow
		require.NoError(t, rows.Scan(&id, &r.request, &r.response, &r.findings))
		out[id] = r
	}
	require.NoError(t, rows.Err())
	return out
}

// requireRows waits until the table holds n rows and the consumer is drained.
func (e *env) requireRows(t *testing.T, consumer string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		total, _ := e.rows(t)
		return total == n
	}, waitFor, tick)
	e.requireDrained(t, consumer)
}

// requireNoRawText fails when any column of any row holds one of raw.
func (e *env) requireNoRawText(t *testing.T, raw []string) {
	t.Helper()
	for _, r := range raw {
		var n int
		require.NoError(t, e.pool.QueryRow(t.Context(),
			"SELECT count(*) FROM conversations c WHERE strpos(c::text, $1) > 0", r).Scan(&n))
		require.Zero(t, n, "raw text %q stored", r)
	}
}

// streamHolds reports whether the stream still holds the message seq.
func (e *env) streamHolds(t *testing.T, seq uint64) bool {
	t.Helper()
	s, err := e.js.Stream(t.Context(), auditevent.Stream)
	require.NoError(t, err)
	_, err = s.GetMsg(t.Context(), seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false
	}
	require.NoError(t, err)
	return true
}

func TestSealedCopiesAreScrubbedStoredAndDeleted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sealer, opener := sealtest.Pair(t)
	scrubber := &fakeScrubber{}
	cfg := testConfig()
	cfg.Openers, cfg.Scrubber = []ingest.Opener{opener}, scrubber
	e.start(t, cfg)

	tests := []struct {
		name string
		copy func(email string) *auditv1.AuditCopy
		// wantFound is the findings the audit service adds (the event carries 1 already).
		wantFound int64
		// wantRaw is text that must be stored as it is (the router scrubbed or sent it so).
		wantRaw string
		token   bool
	}{
		{name: "request and response", copy: rawCopy, wantFound: 5},
		{name: "response only", copy: func(email string) *auditv1.AuditCopy {
			c := rawCopy(email)
			c.ScrubRequest = false
			c.Request.Messages[0].Parts[0].Kind = &providerv1.Part_Text{Text: "already <PERSON> scrubbed"}
			c.Request.Messages = c.Request.Messages[:1]
			return c
		}, wantFound: 2, wantRaw: "already <PERSON> scrubbed"},
		{name: "failed request without response", copy: func(email string) *auditv1.AuditCopy {
			c := rawCopy(email)
			c.Response, c.ScrubResponse = nil, false
			return c
		}, wantFound: 3},
		{name: "tokenize", copy: func(email string) *auditv1.AuditCopy {
			c := rawCopy(email)
			c.Tokenize = true
			return c
		}, wantFound: 5, token: true},
	}
	var raw []string
	seqs := map[string]uint64{}
	for i, tt := range tests {
		email := fmt.Sprintf("person%d@example.org", i)
		raw = append(raw, email)
		ev := sealedEvent(t, sealer, i, tt.copy(email))
		seqs[ev.GetRequestId()] = e.publish(t, encode(t, ev), ev.GetRequestId())
		tests[i].name = ev.GetRequestId() + " " + tt.name
	}
	plain := event(t, "tenant-a", 99, 0)
	plainSeq := e.publish(t, encode(t, plain), plain.GetRequestId())

	e.requireRows(t, cfg.Consumer, len(tests)+1)
	rows := e.storedRows(t)
	require.Len(t, rows, len(tests)+1)
	for _, tt := range tests {
		id, _, _ := strings.Cut(tt.name, " ")
		r := rows[id]
		require.Equal(t, map[string]int64{"EMAIL_ADDRESS": 1 + tt.wantFound}, r.findings, tt.name)
		placeholder := "<EMAIL_ADDRESS>"
		if tt.token {
			placeholder = "<EMAIL_ADDRESS_1>"
			require.NotContains(t, r.request+r.response, "<EMAIL_ADDRESS>", tt.name)
		}
		require.Equal(t, tt.wantFound, int64(strings.Count(r.request+r.response, placeholder)), tt.name)
		if tt.wantRaw != "" {
			require.Contains(t, r.request, tt.wantRaw, tt.name)
		}
		require.NotContains(t, r.request+r.response, ingest.RedactedText, tt.name)
	}
	e.requireNoRawText(t, raw)

	// Every stored event leaves the stream once its row is committed and acknowledged,
	// sealed or not: the sweep purges below the consumer's ack floor.
	require.Eventually(t, func() bool {
		for _, seq := range seqs {
			if e.streamHolds(t, seq) {
				return false
			}
		}
		return !e.streamHolds(t, plainSeq)
	}, waitFor, tick)
	require.GreaterOrEqual(t, metric(t, e.reg, "parley_audit_stream_purges_total", "outcome", "ok"), 1.0)
	require.Zero(t, metric(t, e.reg, "parley_audit_stream_purges_total", "outcome", "failed"))
	require.InDelta(t, len(tests), metric(t, e.reg, "parley_audit_sealed_opened_total"), 0)
	require.Empty(t, e.deadLetters(t))

	// Duplicate detection outlives the purge: the router's re-publish of a stored,
	// purged event within the window is still refused.
	for id := range seqs {
		ack, err := e.js.PublishMsg(t.Context(), &nats.Msg{
			Subject: auditevent.Subject, Data: []byte("again"),
			Header: nats.Header{jetstream.MsgIDHeader: []string{id}},
		})
		require.NoError(t, err)
		require.True(t, ack.Duplicate, "re-publish of purged %s accepted", id)
	}
}

func TestSealedCopyUnreadableIsStoredRedacted(t *testing.T) {
	t.Parallel()
	otherSealer, _ := sealtest.Pair(t)
	tests := []struct {
		name       string
		noKey      bool
		mutate     func(t *testing.T, s *seal.Sealer, ev *auditv1.ConversationEvent)
		wantReason string
	}{
		{name: "sealed to another key", mutate: func(t *testing.T, _ *seal.Sealer, ev *auditv1.ConversationEvent) {
			ev.Sealed = sealedEvent(t, otherSealer, 0, rawCopy("x@example.org")).Sealed
			// sealedEvent sealed to its own request id: seal this one's again.
			msg, err := proto.Marshal(rawCopy("x@example.org"))
			require.NoError(t, err)
			box, err := otherSealer.Seal(msg, []byte(ev.GetRequestId()))
			require.NoError(t, err)
			ev.Sealed = &auditv1.SealedCopy{Enc: box.Enc, Nonce: box.Nonce, Ciphertext: box.Ciphertext}
		}, wantReason: ingest.UnreadableOpen},
		{name: "ciphertext altered", mutate: func(_ *testing.T, _ *seal.Sealer, ev *auditv1.ConversationEvent) {
			ev.Sealed.Ciphertext[3] ^= 1
		}, wantReason: ingest.UnreadableOpen},
		{name: "box moved from another event", mutate: func(t *testing.T, s *seal.Sealer, ev *auditv1.ConversationEvent) {
			ev.Sealed = sealedEvent(t, s, 1, rawCopy("x@example.org")).Sealed
		}, wantReason: ingest.UnreadableOpen},
		{name: "not an audit copy", mutate: func(t *testing.T, s *seal.Sealer, ev *auditv1.ConversationEvent) {
			box, err := s.Seal([]byte{0xff, 0xff, 0xff}, []byte(ev.GetRequestId()))
			require.NoError(t, err)
			ev.Sealed = &auditv1.SealedCopy{Enc: box.Enc, Nonce: box.Nonce, Ciphertext: box.Ciphertext}
		}, wantReason: ingest.UnreadableParse},
		{name: "no key configured", noKey: true, mutate: func(*testing.T, *seal.Sealer, *auditv1.ConversationEvent) {}, wantReason: ingest.UnreadableNoKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			sealer, opener := sealtest.Pair(t)
			scrubber := &fakeScrubber{}
			cfg := testConfig()
			cfg.Scrubber = scrubber
			if !tt.noKey {
				cfg.Openers = []ingest.Opener{opener}
			}
			e.start(t, cfg)

			good := sealedEvent(t, sealer, 0, rawCopy("good@example.org"))
			bad := sealedEvent(t, sealer, 1, rawCopy("bad@example.org"))
			tt.mutate(t, sealer, bad)
			e.publish(t, encode(t, good), good.GetRequestId())
			badSeq := e.publish(t, encode(t, bad), bad.GetRequestId())

			e.requireRows(t, cfg.Consumer, 2)
			rows := e.storedRows(t)
			require.Len(t, rows, 2)
			r := rows[bad.GetRequestId()]
			require.Contains(t, r.request, ingest.RedactedText)
			require.Contains(t, r.response, ingest.RedactedText)
			require.Equal(t, map[string]int64{"EMAIL_ADDRESS": 1}, r.findings, "only the router's findings")
			if tt.noKey {
				require.Contains(t, rows[good.GetRequestId()].request, ingest.RedactedText)
			} else {
				require.NotContains(t, rows[good.GetRequestId()].request, ingest.RedactedText)
			}
			e.requireNoRawText(t, []string{"good@example.org", "bad@example.org", "x@example.org"})
			require.Positive(t, metric(t, e.reg, "parley_audit_sealed_unreadable_total", "reason", tt.wantReason))
			require.Empty(t, e.deadLetters(t))
			require.Eventually(t, func() bool { return !e.streamHolds(t, badSeq) }, waitFor, tick)
		})
	}
}

func TestSealedCopiesWaitForTheScrubber(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sealer, opener := sealtest.Pair(t)
	scrubber := &fakeScrubber{}
	scrubber.down.Store(true)
	cfg := testConfig()
	// One delivery: a spent delivery would dead-letter the event.
	cfg.MaxDeliver = 1
	cfg.Openers, cfg.Scrubber = []ingest.Opener{opener}, scrubber
	e.start(t, cfg)

	const n = 40
	var events []*auditv1.ConversationEvent
	var raw []string
	for i := range n {
		email := fmt.Sprintf("held%d@example.org", i)
		raw = append(raw, email)
		events = append(events, sealedEvent(t, sealer, i, rawCopy(email)))
	}
	plain := event(t, "tenant-a", n, 0)
	events = append(events, plain)
	e.publishAll(t, events)

	require.Eventually(t, func() bool {
		return metric(t, e.reg, "parley_audit_scrub_errors_total") >= 3
	}, waitFor, tick)
	total, _ := e.rows(t)
	require.Zero(t, total, "nothing stored while the scrubber is down")
	pending, ackPending := e.consumerState(t, cfg.Consumer)
	require.Equal(t, n+1, int(pending)+ackPending) //nolint:gosec // small

	scrubber.down.Store(false)
	e.requireRows(t, cfg.Consumer, n+1)
	rows := e.storedRows(t)
	require.Len(t, rows, n+1)
	for _, ev := range events[:n] {
		require.Equal(t, map[string]int64{"EMAIL_ADDRESS": 6}, rows[ev.GetRequestId()].findings)
	}
	e.requireNoRawText(t, raw)
	require.Empty(t, e.deadLetters(t))
	require.Zero(t, metric(t, e.reg, "parley_audit_sealed_unreadable_total", "reason", ingest.UnreadableOpen))
}

func TestSealedCopiesShareScrubCalls(t *testing.T) {
	t.Parallel()
	const textsPerCopy = 5 // rawCopy's
	tests := []struct {
		name     string
		events   int
		tokenize int // events in tokenize mode, after the others
		maxTexts int
		perCall  int // copies per call by the byte bound (maxBytes is perCall copies' bytes)
		pad      int // bytes added to the copy's first text
		// wantCalls is the Scrub calls the batch needs.
		wantCalls int
	}{
		{name: "one call", events: 100, maxTexts: 4096, wantCalls: 1},        // 500 texts
		{name: "default text limit", events: 900, maxTexts: 0, wantCalls: 2}, // 4500 texts: ceil(4500/4096)
		{name: "text limit", events: 100, maxTexts: 64, wantCalls: 8},        // ceil(500/64)
		{name: "byte limit", events: 10, perCall: 3, pad: 1000, wantCalls: 4},
		{name: "tokenize copies alone", events: 20, tokenize: 3, maxTexts: 4096, wantCalls: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			sealer, opener := sealtest.Pair(t)
			scrubber := &fakeScrubber{}
			cfg := testConfig()
			cfg.MaxRows = tt.events + tt.tokenize
			cfg.Openers, cfg.Scrubber = []ingest.Opener{opener}, scrubber
			cfg.ScrubMaxTexts = tt.maxTexts

			// Published before the ingester starts, so that they make one batch. Every
			// copy's texts have the same length (one-letter addresses).
			var events []*auditv1.ConversationEvent
			for i := range tt.events + tt.tokenize {
				c := rawCopy(fmt.Sprintf("p%c@example.org", 'a'+i%26))
				c.Request.Messages[0].Parts[0].Kind = &providerv1.Part_Text{Text: strings.Repeat("z", tt.pad) + c.Request.Messages[0].Parts[0].GetText()}
				c.Tokenize = i >= tt.events
				if tt.perCall > 0 {
					// The bound counts each text's bytes plus 16 for its framing.
					size := 0
					for _, r := range providertext.Inputs(c.GetRequest()) {
						size += len(r.Text()) + 16
					}
					for _, o := range providertext.Outputs(c.GetResponse()) {
						size += len(o.Text) + 16
					}
					cfg.ScrubMaxBytes = tt.perCall * size
				}
				events = append(events, sealedEvent(t, sealer, i, c))
			}
			e.publishAll(t, events)
			e.start(t, cfg)
			e.requireRows(t, cfg.Consumer, tt.events+tt.tokenize)

			// Published before the start, the events are normally one batch and make
			// wantCalls calls; a loaded machine can still split the fetch, and each split
			// adds at most one call (a shared call cut in two), never one per event.
			batches := int(metric(t, e.reg, "parley_audit_batches_total", "outcome", "ok"))
			require.GreaterOrEqual(t, batches, 1)
			calls := scrubber.callCount()
			require.GreaterOrEqual(t, calls, tt.wantCalls)
			require.LessOrEqual(t, calls, tt.wantCalls+batches-1, "%d batches", batches)
			require.InDelta(t, calls, metric(t, e.reg, "parley_audit_scrub_texts"), 0)
			texts := 0
			for _, c := range scrubber.calls {
				texts += len(c.GetTexts())
				if tt.maxTexts > 0 {
					require.LessOrEqual(t, len(c.GetTexts()), tt.maxTexts)
				}
				tokenize := c.GetMode() == piiv1.Mode_MODE_TOKENIZE
				require.True(t, !tokenize || len(c.GetTexts()) == textsPerCopy, "a tokenize call holds one copy")
			}
			require.Equal(t, (tt.events+tt.tokenize)*textsPerCopy, texts)
			total, _ := e.rows(t)
			require.Equal(t, tt.events+tt.tokenize, total)
		})
	}
}

// TestSealedCopiesWithTwoReplicas: two ingesters share the consumer; every sealed event is
// stored once and leaves the stream, purged below the shared ack floor by either replica.
func TestSealedCopiesWithTwoReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sealer, opener := sealtest.Pair(t)
	cfg := testConfig()
	cfg.MaxRows = 25
	cfg.Openers, cfg.Scrubber = []ingest.Opener{opener}, &fakeScrubber{}
	e.start(t, cfg)
	second := prometheus.NewRegistry()
	in, err := ingest.New(e.js, store.New(e.pool), cfg, testLogger(t), second)
	require.NoError(t, err)
	require.NoError(t, in.Start(t.Context()))
	t.Cleanup(func() { require.NoError(t, in.Stop(context.WithoutCancel(t.Context()))) })

	const n = 300
	var events []*auditv1.ConversationEvent
	for i := range n {
		events = append(events, sealedEvent(t, sealer, i, rawCopy(fmt.Sprintf("r%d@example.org", i))))
	}
	e.publishAll(t, events)
	e.requireRows(t, cfg.Consumer, n)
	s, err := e.js.Stream(t.Context(), auditevent.Stream)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := s.Info(t.Context())
		require.NoError(t, err)
		return info.State.Msgs == 0
	}, waitFor, tick)
	// The purges are per committed batch at most, not per message: a sweep runs only when
	// a batch was committed since the last one.
	for _, reg := range []*prometheus.Registry{e.reg, second} {
		purges := metric(t, reg, "parley_audit_stream_purges_total", "outcome", "ok")
		batches := metric(t, reg, "parley_audit_batches_total", "outcome", "ok")
		require.LessOrEqual(t, purges, batches, "a purge per committed batch at most")
		require.Zero(t, metric(t, reg, "parley_audit_stream_purges_total", "outcome", "failed"))
	}
	require.GreaterOrEqual(t, metric(t, e.reg, "parley_audit_stream_purges_total", "outcome", "ok")+
		metric(t, second, "parley_audit_stream_purges_total", "outcome", "ok"), 1.0)
	e.requireNoRawText(t, []string{"@example.org"})
}
