package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/upstream"
)

// streamWorker is a worker that streams n chunks under the router's credit, as
// provider-worker does; skip makes it leave out that chunk number, die makes it go silent
// after that many chunks. It records the cancels and the most chunks it had sent beyond
// what the router had taken.
type streamWorker struct {
	n, skip, die int
	cancels      atomic.Int32
	sent         atomic.Int64
	taken        atomic.Int64 // chunks the test's consumer has taken
	maxAhead     atomic.Int64
}

func (w *streamWorker) serve(t *testing.T, nc *nats.Conn, m *nats.Msg) {
	var req providerv1.Request
	require.NoError(t, proto.Unmarshal(m.Data, &req))
	require.True(t, req.GetStream())
	control := nc.NewInbox()
	credit := make(chan uint64, 64)
	sub, err := nc.Subscribe(control, func(cm *nats.Msg) {
		var c providerv1.Control
		if proto.Unmarshal(cm.Data, &c) != nil {
			return
		}
		if c.GetCancel() {
			w.cancels.Add(1)
		}
		if c.GetCredit() > 0 {
			credit <- c.GetCredit()
		}
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	// One heartbeat, announcing 500 ms: the router then allows 1.5 s of silence
	// (HeartbeatMisses 3), long enough that a goroutine descheduled on loaded cores between
	// a credit grant and the next chunk is not taken for a dead worker, short enough that
	// the "dies" case is noticed soon.
	hb, _ := proto.Marshal(&providerv1.Reply{Kind: &providerv1.Reply_Heartbeat{Heartbeat: &providerv1.Heartbeat{WorkerId: "w"}}})
	require.NoError(t, nc.PublishMsg(&nats.Msg{Subject: m.Reply, Reply: control, Data: hb, Header: nats.Header{bus.HeartbeatIntervalHeader: {"500ms"}}}))
	go func() {
		defer func() { _ = sub.Unsubscribe() }()
		granted := uint64(req.GetStreamWindow())
		for seq := uint64(1); seq <= uint64(w.n); seq++ {
			if w.die > 0 && seq > uint64(w.die) {
				return
			}
			for seq > granted {
				select {
				case g := <-credit:
					granted = max(granted, g)
				case <-time.After(10 * time.Second):
					return
				}
			}
			if int(seq) == w.skip {
				continue
			}
			b, _ := proto.Marshal(&providerv1.Reply{Kind: &providerv1.Reply_Chunk{Chunk: &providerv1.Chunk{Seq: seq, Content: fmt.Sprintf("%d ", seq)}}})
			_ = nc.PublishMsg(&nats.Msg{Subject: m.Reply, Reply: control, Data: b})
			if ahead := w.sent.Add(1) - w.taken.Load(); ahead > w.maxAhead.Load() {
				w.maxAhead.Store(ahead)
			}
		}
		b, _ := proto.Marshal(&providerv1.Reply{Kind: &providerv1.Reply_Response{Response: &providerv1.Response{
			Model: "m", Choices: []*providerv1.Choice{{FinishReason: "stop"}}, Usage: &providerv1.Usage{TotalTokens: 3},
		}}})
		_ = nc.Publish(m.Reply, b)
	}()
}

func newStreamDispatcher(t *testing.T, window int) (*upstream.Dispatcher, *nats.Conn) {
	t.Helper()
	srv := natstest.RunServer(t)
	d, err := upstream.NewDispatcher(natstest.Connect(t, srv), propagation.TraceContext{},
		upstream.DispatcherConfig{IdleTimeout: time.Minute, Attempts: 2, HeartbeatMisses: 3, StreamWindow: window}, prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	return d, natstest.Connect(t, srv)
}

func startStreamWorker(t *testing.T, nc *nats.Conn, component string, w *streamWorker) {
	t.Helper()
	_, err := nc.QueueSubscribe(upstream.SubjectPrefix+component, "q", func(m *nats.Msg) { w.serve(t, nc, m) })
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
}

func TestDispatchStreamAssemblesInOrder(t *testing.T) {
	t.Parallel()
	d, nc := newStreamDispatcher(t, 4)
	w := &streamWorker{n: 50}
	startStreamWorker(t, nc, "llm", w)
	var got []uint64
	res, err := d.DispatchStream(t.Context(), &providerv1.Request{Component: "llm"}, func(c *providerv1.Chunk) error {
		got = append(got, c.GetSeq())
		w.taken.Add(1)
		return nil
	})
	require.NoError(t, err)
	require.Len(t, got, 50)
	for i, s := range got {
		require.Equal(t, uint64(i+1), s)
	}
	resp := res.Response
	require.Len(t, resp.GetChoices(), 1)
	require.Equal(t, "stop", resp.GetChoices()[0].GetFinishReason())
	require.Contains(t, resp.GetChoices()[0].GetContent(), "1 2 3 ")
	require.Contains(t, resp.GetChoices()[0].GetContent(), "50 ")
	require.Equal(t, uint64(3), resp.GetUsage().GetTotalTokens())
	require.LessOrEqual(t, w.maxAhead.Load(), int64(4), "the worker never runs more than the window ahead")
	require.Zero(t, w.cancels.Load())
}

// TestDispatchStreamSlowReaderIsBounded: a consumer that takes one chunk and then stalls
// holds the worker at the window, however many chunks the answer has.
func TestDispatchStreamSlowReaderIsBounded(t *testing.T) {
	t.Parallel()
	d, nc := newStreamDispatcher(t, 8)
	w := &streamWorker{n: 10000}
	startStreamWorker(t, nc, "llm", w)
	release := make(chan struct{})
	stalled := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		first := true
		_, err := d.DispatchStream(context.Background(), &providerv1.Request{Component: "llm"}, func(*providerv1.Chunk) error {
			w.taken.Add(1)
			if first {
				first = false
				close(stalled)
				<-release
			}
			return nil
		})
		done <- err
	}()
	<-stalled
	// While the consumer stalls, the worker sends the rest of its window and then waits:
	// it never gets more credit than the window.
	require.Eventually(t, func() bool { return w.sent.Load() == 8 }, 10*time.Second, time.Millisecond)
	require.Never(t, func() bool { return w.sent.Load() > 8 }, 200*time.Millisecond, 10*time.Millisecond)
	close(release)
	require.NoError(t, <-done)
	require.Equal(t, int64(10000), w.sent.Load())
	require.LessOrEqual(t, w.maxAhead.Load(), int64(8))
}

func TestDispatchStreamFailures(t *testing.T) {
	t.Parallel()
	d, nc := newStreamDispatcher(t, 4)
	gap := &streamWorker{n: 10, skip: 5}
	startStreamWorker(t, nc, "gap", gap)
	dies := &streamWorker{n: 10, die: 3}
	startStreamWorker(t, nc, "dies", dies)
	slow := &streamWorker{n: 10}
	startStreamWorker(t, nc, "cancel", slow)

	var n int
	_, err := d.DispatchStream(t.Context(), &providerv1.Request{Component: "gap"}, func(*providerv1.Chunk) error { n++; return nil })
	require.ErrorContains(t, err, "chunk 6 arrived where 5 was expected")
	require.Equal(t, 4, n)
	require.Eventually(t, func() bool { return gap.cancels.Load() == 1 }, 10*time.Second, time.Millisecond, "the worker is told to stop")

	var dieCalls atomic.Int32
	_, err = d.DispatchStream(t.Context(), &providerv1.Request{Component: "dies"}, func(*providerv1.Chunk) error { dieCalls.Add(1); return nil })
	require.ErrorIs(t, err, conversation.ErrWorkerLost)
	require.ErrorContains(t, err, "mid-stream, after 3 chunks")
	require.Equal(t, int32(3), dieCalls.Load(), "no re-dispatch after the first chunk")

	stop := errors.New("client went away")
	_, err = d.DispatchStream(t.Context(), &providerv1.Request{Component: "cancel"}, func(*providerv1.Chunk) error { return stop })
	require.ErrorIs(t, err, stop)
	require.Eventually(t, func() bool { return slow.cancels.Load() == 1 }, 10*time.Second, time.Millisecond)
}

// TestDispatchStreamFromAWorkerThatAnswersWhole: a worker older than the stream protocol
// ignores the stream flag and answers whole; the answer still arrives, in one chunk.
func TestDispatchStreamFromAWorkerThatAnswersWhole(t *testing.T) {
	t.Parallel()
	d, nc := newStreamDispatcher(t, 4)
	_, err := nc.QueueSubscribe(upstream.SubjectPrefix+"old", "q", func(m *nats.Msg) {
		reply(t, nc, m.Reply, &providerv1.Reply{Kind: &providerv1.Reply_Response{Response: &providerv1.Response{
			Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "whole answer"}},
		}}})
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	var got []string
	res, err := d.DispatchStream(t.Context(), &providerv1.Request{Component: "old"}, func(c *providerv1.Chunk) error {
		got = append(got, c.GetContent())
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{"whole answer"}, got)
	require.Equal(t, "whole answer", res.Response.GetChoices()[0].GetContent())
}
