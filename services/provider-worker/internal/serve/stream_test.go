package serve_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/provider-worker/internal/serve"
	"github.com/parleyhq/parley/services/provider-worker/provider/echo"
)

// streamed is what a router saw of one streamed request.
type streamed struct {
	chunks  []*providerv1.Chunk
	final   *providerv1.Reply
	control string // the reply subject of the heartbeats and chunks
}

// readStream reads replies on sub up to the final one, the first chunk numbered first;
// after each chunk, when credit is set, it grants credit(chunk) through the control subject.
func readStream(t *testing.T, nc *nats.Conn, sub *nats.Subscription, first uint64, credit func(seq uint64) uint64) streamed {
	t.Helper()
	var s streamed
	for {
		m, err := sub.NextMsg(20 * time.Second)
		require.NoError(t, err, "after %d chunks", len(s.chunks))
		var r providerv1.Reply
		require.NoError(t, proto.Unmarshal(m.Data, &r))
		if r.GetHeartbeat() == nil && r.GetChunk() == nil {
			s.final = &r
			return s
		}
		require.NotEmpty(t, m.Reply, "a streamed request's heartbeats and chunks name the control subject")
		if s.control == "" {
			s.control = m.Reply
		}
		require.Equal(t, s.control, m.Reply)
		if c := r.GetChunk(); c != nil {
			require.Equal(t, first+uint64(len(s.chunks)), c.GetSeq(), "chunks are numbered without gaps")
			s.chunks = append(s.chunks, c)
			if credit != nil {
				sendControl(t, nc, m.Reply, &providerv1.Control{Kind: &providerv1.Control_Credit{Credit: credit(c.GetSeq())}})
			}
		}
	}
}

func sendControl(t *testing.T, nc *nats.Conn, subject string, c *providerv1.Control) {
	t.Helper()
	b, err := proto.Marshal(c)
	require.NoError(t, err)
	require.NoError(t, nc.Publish(subject, b))
}

func streamRequest(component, text string, window uint32) *providerv1.Request {
	r := request(component, text)
	r.Stream, r.StreamWindow = true, window
	return r
}

func content(chunks []*providerv1.Chunk) string {
	var b strings.Builder
	for _, c := range chunks {
		b.WriteString(c.GetContent())
	}
	return b.String()
}

func TestStreamEchoWordByWord(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	startWorker(t, srv, map[string]serve.Provider{"echo": echo.New(), "whole": newScripted()}, serve.Options{})
	nc := natstest.Connect(t, srv)
	text := "one two  three\nfour"

	for _, tt := range []struct {
		component string
		chunks    int
	}{
		{"echo", 4},  // a streamer: word by word
		{"whole", 1}, // no ConverseStream: the whole answer in one chunk
	} {
		t.Run(tt.component, func(t *testing.T) {
			sub := publish(t, nc, tt.component, encode(t, streamRequest(tt.component, text, 0)))
			s := readStream(t, nc, sub, 1, nil)
			require.Len(t, s.chunks, tt.chunks)
			require.Equal(t, text, content(s.chunks))
			require.Equal(t, "stop", s.chunks[len(s.chunks)-1].GetFinishReason())
			for _, c := range s.chunks[:len(s.chunks)-1] {
				require.Empty(t, c.GetFinishReason())
			}
			resp := s.final.GetResponse()
			require.NotNil(t, resp, "got %v", s.final)
			require.Len(t, resp.GetChoices(), 1)
			require.Empty(t, resp.GetChoices()[0].GetContent(), "the chunks carried the content")
			require.Equal(t, "stop", resp.GetChoices()[0].GetFinishReason())
			require.Equal(t, uint64(4), resp.GetUsage().GetCompletionTokens())
		})
	}
}

// TestStreamWaitsForCredit: with a window of 2 the worker sends two chunks, then only
// heartbeats until the router grants more.
func TestStreamWaitsForCredit(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	startWorker(t, srv, map[string]serve.Provider{"echo": echo.New()}, serve.Options{HeartbeatInterval: 5 * time.Millisecond})
	nc := natstest.Connect(t, srv)
	words := strings.Repeat("w ", 9) + "w"

	sub := publish(t, nc, "echo", encode(t, streamRequest("echo", words, 2)))
	chunks, beatsAfter := 0, 0
	var control string
	for beatsAfter < 3 {
		m, err := sub.NextMsg(20 * time.Second)
		require.NoError(t, err)
		var r providerv1.Reply
		require.NoError(t, proto.Unmarshal(m.Data, &r))
		switch {
		case r.GetChunk() != nil:
			chunks++
			require.LessOrEqual(t, chunks, 2, "a chunk beyond the window's credit")
		case r.GetHeartbeat() != nil && chunks == 2:
			beatsAfter++
		case r.GetHeartbeat() == nil:
			t.Fatalf("unexpected reply %v", &r)
		}
		control = m.Reply
	}
	// Credit for the rest, one chunk at a time.
	sendControl(t, nc, control, &providerv1.Control{Kind: &providerv1.Control_Credit{Credit: 3}})
	s := readStream(t, nc, sub, 3, func(seq uint64) uint64 { return seq + 1 })
	require.Len(t, s.chunks, 8)
	require.NotNil(t, s.final.GetResponse(), "got %v", s.final)
}

// holdingStreamer sends one chunk, then waits for its context and reports how it ended.
type holdingStreamer struct {
	ended chan error
	calls atomic.Int64
	fail  error // when set, returned after the first chunk instead of waiting
}

func (p *holdingStreamer) Converse(context.Context, *providerv1.Request) (*providerv1.Response, error) {
	return nil, errors.New("not used")
}

func (p *holdingStreamer) ConverseStream(ctx context.Context, _ *providerv1.Request, emit func(*providerv1.Chunk) error) (*providerv1.Response, error) {
	p.calls.Add(1)
	if err := emit(&providerv1.Chunk{Content: "first"}); err != nil {
		return nil, err
	}
	if p.fail != nil {
		return nil, p.fail
	}
	<-ctx.Done()
	p.ended <- context.Cause(ctx)
	return nil, ctx.Err()
}

func TestStreamCancelReachesProvider(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	p := &holdingStreamer{ended: make(chan error, 1)}
	w := startWorker(t, srv, map[string]serve.Provider{"llm": p}, serve.Options{})
	nc := natstest.Connect(t, srv)

	sub := publish(t, nc, "llm", encode(t, streamRequest("llm", "hi", 0)))
	for {
		m, err := sub.NextMsg(20 * time.Second)
		require.NoError(t, err)
		var r providerv1.Reply
		require.NoError(t, proto.Unmarshal(m.Data, &r))
		if r.GetChunk() != nil {
			sendControl(t, nc, m.Reply, &providerv1.Control{Kind: &providerv1.Control_Cancel{Cancel: true}})
			break
		}
	}
	select {
	case err := <-p.ended:
		require.ErrorContains(t, err, "cancelled by the router")
	case <-time.After(20 * time.Second):
		t.Fatal("the provider call was not cancelled")
	}
	labels := map[string]string{"component": "llm", "outcome": "cancelled"}
	require.Eventually(t, func() bool { return w.metric(t, "parley_worker_requests_total", labels) == 1 },
		5*time.Second, 10*time.Millisecond)
}

// TestStreamRetriesOnlyBeforeTheFirstChunk: a failure after a chunk went out is final,
// whatever the retry policy says.
func TestStreamRetriesOnlyBeforeTheFirstChunk(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	set := loadPolicies(t, `  policies:
    retries:
      three: {policy: constant, duration: 10ms, maxRetries: 3}
  targets:
    components:
      llm: {outbound: {retry: three}}
      flaky: {outbound: {retry: three}}
`)
	p := &holdingStreamer{ended: make(chan error, 1), fail: unavailable()}
	f := &flaky{failures: 2, fail: unavailable}
	startWorker(t, srv, map[string]serve.Provider{"llm": p, "flaky": f}, serve.Options{Resiliency: set})
	nc := natstest.Connect(t, srv)

	s := readStream(t, nc, publish(t, nc, "llm", encode(t, streamRequest("llm", "hi", 0))), 1, nil)
	require.Len(t, s.chunks, 1)
	require.Equal(t, providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, s.final.GetError().GetCode(), "got %v", s.final)
	require.Equal(t, int64(1), p.calls.Load(), "no retry once a chunk went out")

	// Failures before any chunk are retried as for a unary call.
	s = readStream(t, nc, publish(t, nc, "flaky", encode(t, streamRequest("flaky", "third time", 0))), 1, nil)
	require.Equal(t, "third time", content(s.chunks))
	require.Equal(t, int32(3), s.final.GetResponse().GetAttempts())
}
