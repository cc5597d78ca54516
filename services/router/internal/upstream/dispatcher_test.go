package upstream_test

import (
	"context"
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

func reply(t *testing.T, nc *nats.Conn, to string, r *providerv1.Reply) {
	t.Helper()
	b, err := proto.Marshal(r)
	require.NoError(t, err)
	require.NoError(t, nc.Publish(to, b))
}

// TestDispatch runs the dispatcher against real NATS and responders that behave like
// healthy, slow, failing and dying workers.
func TestDispatch(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	worker := natstest.Connect(t, srv)
	d, err := upstream.NewDispatcher(nc, propagation.TraceContext{}, upstream.DispatcherConfig{IdleTimeout: time.Second, Attempts: 2}, prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })

	ok := &providerv1.Reply{Kind: &providerv1.Reply_Response{Response: &providerv1.Response{WorkerId: "w", Choices: []*providerv1.Choice{{Content: "done"}}}}}
	heartbeat := &providerv1.Reply{Kind: &providerv1.Reply_Heartbeat{Heartbeat: &providerv1.Heartbeat{WorkerId: "w"}}}

	// healthy answers at once.
	_, err = worker.QueueSubscribe(upstream.SubjectPrefix+"healthy", "q", func(m *nats.Msg) { reply(t, worker, m.Reply, ok) })
	require.NoError(t, err)
	// slow sends heartbeats for longer than the idle timeout (every 50ms, twenty times as
	// often as the timeout needs, which a loaded machine cannot stretch), then answers.
	_, err = worker.QueueSubscribe(upstream.SubjectPrefix+"slow", "q", func(m *nats.Msg) {
		go busyWorker(t, worker, m.Reply, 30, 50*time.Millisecond, heartbeat, ok)
	})
	require.NoError(t, err)
	// failing reports a provider error.
	_, err = worker.QueueSubscribe(upstream.SubjectPrefix+"failing", "q", func(m *nats.Msg) {
		reply(t, worker, m.Reply, &providerv1.Reply{Kind: &providerv1.Reply_Error{Error: &providerv1.Error{
			Code: providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Message: "bad temperature",
		}}})
	})
	require.NoError(t, err)
	// flaky dies silently on the first delivery and answers the retry.
	var flakyCalls atomic.Int32
	_, err = worker.QueueSubscribe(upstream.SubjectPrefix+"flaky", "q", func(m *nats.Msg) {
		if flakyCalls.Add(1) == 1 {
			return
		}
		reply(t, worker, m.Reply, ok)
	})
	require.NoError(t, err)
	// retried answers after the worker's own resiliency retries.
	_, err = worker.QueueSubscribe(upstream.SubjectPrefix+"retried", "q", func(m *nats.Msg) {
		reply(t, worker, m.Reply, &providerv1.Reply{Kind: &providerv1.Reply_Response{Response: &providerv1.Response{
			Attempts: 3, Choices: []*providerv1.Choice{{Content: "done"}},
		}}})
	})
	require.NoError(t, err)
	// dead never answers.
	_, err = worker.QueueSubscribe(upstream.SubjectPrefix+"dead", "q", func(*nats.Msg) {})
	require.NoError(t, err)
	require.NoError(t, worker.Flush())

	tests := []struct {
		component    string
		wantErr      error
		wantProvider string
		wantAttempts int
	}{
		{component: "healthy", wantAttempts: 1},
		{component: "slow", wantAttempts: 1},
		{component: "flaky", wantAttempts: 2},
		{component: "retried", wantAttempts: 3},
		{component: "failing", wantProvider: "bad temperature"},
		{component: "dead", wantErr: conversation.ErrWorkerLost},
		{component: "absent", wantErr: conversation.ErrNoWorker},
	}
	for _, tt := range tests {
		t.Run(tt.component, func(t *testing.T) {
			t.Parallel()
			got, err := d.Dispatch(t.Context(), &providerv1.Request{Component: tt.component})
			switch {
			case tt.wantErr != nil:
				require.ErrorIs(t, err, tt.wantErr)
			case tt.wantProvider != "":
				var pe *conversation.ProviderError
				require.ErrorAs(t, err, &pe)
				require.Equal(t, tt.wantProvider, pe.Message)
				require.Equal(t, providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, pe.Code)
			default:
				require.NoError(t, err)
				require.Equal(t, "done", got.Response.GetChoices()[0].GetContent())
				require.Equal(t, tt.wantAttempts, got.Attempts)
			}
		})
	}
}

// TestDispatchHeartbeatMisses shows a worker that announced its heartbeat interval and
// then went silent is presumed dead after HeartbeatMisses intervals, long before the idle
// timeout, and that the loss, the re-dispatch and the possible duplicate call are counted.
func TestDispatchHeartbeatMisses(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	worker := natstest.Connect(t, srv)
	reg := prometheus.NewRegistry()
	// The idle timeout is far longer than the test may take: only heartbeat misses can end it.
	d, err := upstream.NewDispatcher(nc, propagation.TraceContext{},
		upstream.DispatcherConfig{IdleTimeout: time.Minute, Attempts: 2, HeartbeatMisses: 3}, reg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })

	ok := &providerv1.Reply{Kind: &providerv1.Reply_Response{Response: &providerv1.Response{Choices: []*providerv1.Choice{{Content: "done"}}}}}
	hb, err := proto.Marshal(&providerv1.Reply{Kind: &providerv1.Reply_Heartbeat{Heartbeat: &providerv1.Heartbeat{WorkerId: "w"}}})
	require.NoError(t, err)
	claim := func(m *nats.Msg, interval string) {
		h := nats.Header{}
		if interval != "" {
			h.Set(bus.HeartbeatIntervalHeader, interval)
		}
		require.NoError(t, worker.PublishMsg(&nats.Msg{Subject: m.Reply, Data: hb, Header: h}))
	}
	// crashing claims every request with one heartbeat announcing 50ms, then dies.
	_, err = worker.QueueSubscribe(upstream.SubjectPrefix+"crashing", "q", func(m *nats.Msg) { claim(m, "50ms") })
	require.NoError(t, err)
	// crash-once dies after claiming the first request and answers the re-dispatch.
	var crashOnce atomic.Int32
	_, err = worker.QueueSubscribe(upstream.SubjectPrefix+"crash-once", "q", func(m *nats.Msg) {
		if crashOnce.Add(1) == 1 {
			claim(m, "50ms")
			return
		}
		reply(t, worker, m.Reply, ok)
	})
	require.NoError(t, err)
	// steady announces 50ms and keeps its promise for ten intervals before answering.
	_, err = worker.QueueSubscribe(upstream.SubjectPrefix+"steady", "q", func(m *nats.Msg) {
		go keepPromise(10, 50*time.Millisecond, func() { claim(m, "50ms") }, func() { reply(t, worker, m.Reply, ok) })
	})
	require.NoError(t, err)
	require.NoError(t, worker.Flush())

	tests := []struct {
		component    string
		wantErr      error
		wantAttempts int
		wantLost     float64
		wantRedisp   float64
	}{
		{component: "crashing", wantErr: conversation.ErrWorkerLost, wantLost: 2, wantRedisp: 1},
		{component: "crash-once", wantAttempts: 2, wantLost: 1, wantRedisp: 1},
		{component: "steady", wantAttempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.component, func(t *testing.T) {
			t.Parallel()
			got, err := d.Dispatch(t.Context(), &providerv1.Request{Component: tt.component})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
				require.Equal(t, tt.wantAttempts, got.Attempts)
			}
			lost := func(detection string) float64 {
				return gathered(t, reg, "parley_router_workers_lost_total", tt.component, detection)
			}
			require.InDelta(t, tt.wantLost, lost("heartbeat_missed"), 0)
			require.InDelta(t, 0, lost("idle_timeout"), 0, "the idle timeout never fires")
			require.InDelta(t, tt.wantRedisp, gathered(t, reg, "parley_router_redispatches_total", tt.component, ""), 0)
			// Every re-dispatch here follows a claim: the provider may have been called twice.
			require.InDelta(t, tt.wantRedisp, gathered(t, reg, "parley_router_duplicate_provider_calls_total", tt.component, ""), 0)
		})
	}
}

// gathered is the value of counter name for component (and detection, when not empty) in
// reg, zero when the series does not exist yet.
func gathered(t *testing.T, reg prometheus.Gatherer, name, component, detection string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch {
				case l.GetName() == "component" && l.GetValue() != component,
					l.GetName() == "detection" && l.GetValue() != detection:
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestDispatchWaitsForAWorker: a component that no worker serves for a moment (its
// workers reconnecting to another NATS node) is tried again for NoWorkerWait: a worker
// that subscribes meanwhile answers; with none, the request fails with ErrNoWorker once
// NoWorkerWait has passed. Each try is counted.
func TestDispatchWaitsForAWorker(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	worker := natstest.Connect(t, srv)
	reg := prometheus.NewRegistry()
	d, err := upstream.NewDispatcher(nc, propagation.TraceContext{},
		upstream.DispatcherConfig{IdleTimeout: time.Minute, Attempts: 2, NoWorkerWait: time.Minute}, reg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	retries := func(component string) float64 {
		return gathered(t, reg, "parley_router_no_worker_retries_total", component, "")
	}

	type outcome struct {
		got *conversation.Dispatched
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		got, err := d.Dispatch(context.Background(), &providerv1.Request{Component: "late"})
		done <- outcome{got, err}
	}()
	require.Eventually(t, func() bool { return retries("late") >= 2 }, 30*time.Second, 5*time.Millisecond,
		"the dispatch did not try again")
	ok := &providerv1.Reply{Kind: &providerv1.Reply_Response{Response: &providerv1.Response{Choices: []*providerv1.Choice{{Content: "done"}}}}}
	_, err = worker.QueueSubscribe(upstream.SubjectPrefix+"late", "q", func(m *nats.Msg) { reply(t, worker, m.Reply, ok) })
	require.NoError(t, err)
	require.NoError(t, worker.Flush())
	res := <-done
	require.NoError(t, res.err)
	require.Equal(t, "done", res.got.Response.GetChoices()[0].GetContent())
	require.Equal(t, 1, res.got.Attempts, "a try that found no worker called no provider")

	// With a short wait and no worker, the request fails after a few tries.
	short, err := upstream.NewDispatcher(nc, propagation.TraceContext{},
		upstream.DispatcherConfig{IdleTimeout: time.Minute, Attempts: 2, NoWorkerWait: 100 * time.Millisecond}, prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { _ = short.Close() })
	_, err = short.Dispatch(t.Context(), &providerv1.Request{Component: "absent"})
	require.ErrorIs(t, err, conversation.ErrNoWorker)
}
