package serve_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/provider-worker/internal/serve"
	"github.com/parleyhq/parley/services/provider-worker/provider/echo"
)

func TestEchoOverNATS(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	w := startWorker(t, srv, map[string]serve.Provider{"chat": echo.New()}, serve.Options{
		WorkerID: "w-echo", TracerProvider: tp, Propagator: propagation.TraceContext{},
		GenAI: func(string) (string, string) { return "echo", "echo-1" },
	})
	nc := natstest.Connect(t, srv)

	tests := []struct {
		name  string
		give  []*providerv1.Message
		want  string
		words uint64
	}{
		{
			name: "one message",
			give: []*providerv1.Message{{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{
				{Kind: &providerv1.Part_Text{Text: "hello " + secretPrompt}},
			}}},
			want:  "hello " + secretPrompt,
			words: 2,
		},
		{
			name: "history and tool result",
			give: []*providerv1.Message{
				{Role: providerv1.Role_ROLE_SYSTEM, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "be brief"}}}},
				{Role: providerv1.Role_ROLE_TOOL, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolResult{
					ToolResult: &providerv1.ToolResult{ToolCallId: "1", Name: "clock", Content: "noon"},
				}}}},
			},
			want:  "be brief\nTool Response for tool ID '1' with name 'clock': noon",
			words: 12,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := &providerv1.Request{
				RequestId: "req-" + tt.name, Component: "chat", Messages: tt.give,
				Deadline: timestamppb.New(time.Now().Add(time.Minute)),
			}
			ctx, parent := tp.Tracer("router").Start(t.Context(), "dispatch")
			header := nats.Header{}
			propagation.TraceContext{}.Inject(ctx, bus.HeaderCarrier(header))
			a := call(t, nc, "chat", encode(t, req), header)
			parent.End()

			resp := requireResponse(t, a, tt.want)
			require.Equal(t, "w-echo", resp.GetWorkerId())
			require.NotNil(t, resp.GetProviderLatency())
			require.GreaterOrEqual(t, resp.GetProviderLatency().AsDuration(), time.Duration(0))
			require.Equal(t, tt.words, resp.GetUsage().GetPromptTokens())
			require.Equal(t, "stop", resp.GetChoices()[0].GetFinishReason())

			// The worker's span continues the router's trace; the provider call is its child,
			// with the GenAI attributes and no prompt text.
			var process, chat sdktrace.ReadOnlySpan
			require.Eventually(t, func() bool {
				for _, s := range recorder.Ended() {
					if s.Name() == "process parley.provider.chat" && s.Parent().SpanID() == parent.SpanContext().SpanID() {
						process = s
					}
				}
				for _, s := range recorder.Ended() {
					if process != nil && s.Name() == "chat echo-1" && s.Parent().SpanID() == process.SpanContext().SpanID() {
						chat = s
					}
				}
				return chat != nil
			}, 5*time.Second, 10*time.Millisecond)
			require.Equal(t, parent.SpanContext().TraceID(), process.SpanContext().TraceID())
			attrs := map[string]string{}
			for _, kv := range chat.Attributes() {
				attrs[string(kv.Key)] = kv.Value.String()
			}
			require.Equal(t, "chat", attrs["gen_ai.operation.name"])
			require.Equal(t, "echo", attrs["gen_ai.system"])
			require.Equal(t, "echo-1", attrs["gen_ai.request.model"])
			require.Equal(t, strconv.FormatUint(tt.words, 10), attrs["gen_ai.usage.input_tokens"])
			require.Equal(t, `["stop"]`, attrs["gen_ai.response.finish_reasons"])
			for _, s := range []sdktrace.ReadOnlySpan{process, chat} {
				for _, kv := range s.Attributes() {
					require.NotContains(t, kv.Value.String(), secretPrompt, "span %s attribute %s", s.Name(), kv.Key)
				}
			}
		})
	}
	t.Cleanup(func() {
		require.Eventually(t, func() bool {
			return w.metric(t, "parley_worker_requests_total", map[string]string{"component": "chat", "outcome": "ok"}) == float64(len(tests)) &&
				w.metric(t, "parley_worker_request_duration_seconds", map[string]string{"component": "chat"}) == float64(len(tests)) &&
				w.metric(t, "parley_worker_queue_wait_seconds", map[string]string{"component": "chat"}) == float64(len(tests)) &&
				w.metric(t, "gen_ai_client_operation_duration_seconds", map[string]string{"gen_ai_system": "echo", "gen_ai_request_model": "echo-1"}) == float64(len(tests)) &&
				w.metric(t, "gen_ai_client_token_usage", map[string]string{"gen_ai_token_type": "input", "gen_ai_system": "echo", "gen_ai_request_model": "echo-1"}) == float64(len(tests)) &&
				w.metric(t, "gen_ai_client_token_usage", map[string]string{"gen_ai_token_type": "output", "gen_ai_operation_name": "chat"}) == float64(len(tests)) &&
				w.metric(t, "parley_worker_tokens_total", map[string]string{"component": "chat", "type": "input"}) == float64(2+12)
		}, 5*time.Second, 10*time.Millisecond)
	})
}

func TestHeartbeatsWhileProviderRuns(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	p := newScripted()
	startWorker(t, srv, map[string]serve.Provider{"slow": p}, serve.Options{HeartbeatInterval: 20 * time.Millisecond})
	nc := natstest.Connect(t, srv)

	// The provider holds the call until the client has seen three heartbeats: however slow
	// the machine, they must keep coming while it runs, and the answer must follow.
	sub := publish(t, nc, "slow", encode(t, request("slow", "hold")))
	for range 3 {
		m, err := sub.NextMsg(20 * time.Second)
		require.NoError(t, err)
		var r providerv1.Reply
		require.NoError(t, proto.Unmarshal(m.Data, &r))
		require.NotNil(t, r.GetHeartbeat(), "a final reply before the provider returned: %v", &r)
	}
	close(p.release)
	requireResponse(t, finalReply(t, sub), "hold")
}

func TestErrorReplies(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)

	// with returns a request builder: a text request for the component, changed by edit.
	with := func(text string, edit func(*providerv1.Request)) func(*testing.T, string) []byte {
		return func(t *testing.T, comp string) []byte {
			req := request(comp, text)
			edit(req)
			return encode(t, req)
		}
	}
	same := func(*providerv1.Request) {}
	tests := []struct {
		name      string
		give      func(t *testing.T, component string) []byte
		wantCode  providerv1.ErrorCode
		wantMsg   string
		wantCalls int64
	}{
		{"garbage payload", func(*testing.T, string) []byte { return []byte("\xff\xfe not a protobuf") },
			providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "decode provider request", 0},
		{"component does not match subject", with("hello", func(r *providerv1.Request) { r.Component = "other" }),
			providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, `request for component "other"`, 0},
		{"invalid deadline", with("hello", func(r *providerv1.Request) { r.Deadline = &timestamppb.Timestamp{Seconds: 1, Nanos: -5} }),
			providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "deadline", 0},
		{"deadline already passed", with("hello", func(r *providerv1.Request) { r.Deadline = timestamppb.New(time.Now().Add(-time.Second)) }),
			providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED, "deadline passed before the call started", 0},
		// The provider blocks until its context ends; the deadline is far enough ahead that
		// the call starts before it even on a loaded machine.
		{"deadline passes during the call", with("hold", func(r *providerv1.Request) {
			r.Deadline = timestamppb.New(time.Now().Add(2 * time.Second))
		}), providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED, "deadline exceeded", 1},
		{"panic", with("panic", same), providerv1.ErrorCode_ERROR_CODE_INTERNAL, "provider panicked", 1},
		{"runtime panic", with("panic:runtime", same), providerv1.ErrorCode_ERROR_CODE_INTERNAL, "provider panicked", 1},
		{"plain error", with("fail", same), providerv1.ErrorCode_ERROR_CODE_INTERNAL, "upstream said no", 1},
		{"typed error", with("fail:unavailable", same), providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "upstream overloaded", 1},
		{"no response", with("nil", same), providerv1.ErrorCode_ERROR_CODE_INTERNAL, "provider returned no response", 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			comp := fmt.Sprintf("errors-%d", i) // one queue group per subtest
			p := newScripted()
			w := startWorker(t, srv, map[string]serve.Provider{comp: p}, serve.Options{})

			requireError(t, call(t, nc, comp, tt.give(t, comp), nil), tt.wantCode, tt.wantMsg)
			require.Equal(t, tt.wantCalls, p.calls.Load())

			// The worker keeps serving.
			requireResponse(t, call(t, nc, comp, encode(t, request(comp, "still there")), nil), "still there")
			// Metrics are recorded just after the reply goes out.
			require.Eventually(t, func() bool {
				return w.metric(t, "parley_worker_requests_total", map[string]string{"component": comp, "outcome": "ok"}) == 1 &&
					w.metric(t, "parley_worker_requests_total", map[string]string{"component": comp, "outcome": outcomeLabel(tt.wantCode)}) == 1 &&
					w.metric(t, "parley_worker_inflight", map[string]string{"component": comp}) == 0
			}, 5*time.Second, 10*time.Millisecond)
		})
	}
}

func TestRequestWithoutReplySubjectIsDropped(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	p := newScripted()
	w := startWorker(t, srv, map[string]serve.Provider{"x": p}, serve.Options{})

	require.NoError(t, nc.Publish(serve.SubjectPrefix+"x", encode(t, request("x", "nobody reads this"))))
	requireResponse(t, call(t, nc, "x", encode(t, request("x", "hello")), nil), "hello")
	require.Equal(t, int64(1), p.calls.Load())
	require.Equal(t, 1.0, w.metric(t, "parley_worker_requests_total", map[string]string{"component": "x", "outcome": "invalid_argument"}))
}

func TestPanicIsLoggedWithoutRequestText(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	w := startWorker(t, srv, map[string]serve.Provider{"x": newScripted()}, serve.Options{})

	requireError(t, call(t, nc, "x", encode(t, request("x", "panic:runtime")), nil), providerv1.ErrorCode_ERROR_CODE_INTERNAL, "provider panicked")
	require.Eventually(t, func() bool {
		return w.metric(t, "parley_worker_requests_total", map[string]string{"component": "x", "outcome": "internal"}) == 1
	}, 5*time.Second, 10*time.Millisecond)
	logs := w.logs.String()
	require.Contains(t, logs, `"msg":"request failed"`)
	require.Contains(t, logs, "assignment to entry in nil map")
	require.Contains(t, logs, `"stack":`)
	require.NotContains(t, logs, secretPrompt)
}

func TestQueueGroupSharesLoad(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	var workers []*testWorker
	for _, id := range []string{"w1", "w2"} {
		// Enough slots that the burst below is never rejected.
		workers = append(workers, startWorker(t, srv, map[string]serve.Provider{"shared": echo.New()}, serve.Options{WorkerID: id, Concurrency: 256}))
	}
	nc := natstest.Connect(t, srv)

	// One inbox for all requests, as the router has; count every final reply per request.
	prefix := nats.NewInbox() + "."
	var (
		mu     sync.Mutex
		finals = map[string]int{}
		byID   = map[string]int{}
	)
	sub, err := nc.Subscribe(prefix+"*", func(m *nats.Msg) {
		var r providerv1.Reply
		if proto.Unmarshal(m.Data, &r) != nil || r.GetHeartbeat() != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		finals[m.Subject]++
		byID[r.GetResponse().GetWorkerId()]++ // "" for an error, which fails the sum below
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	const n = 200
	for i := range n {
		msg := &nats.Msg{
			Subject: serve.SubjectPrefix + "shared", Reply: fmt.Sprintf("%s%d", prefix, i),
			Data: encode(t, request("shared", fmt.Sprintf("message %d", i))),
		}
		require.NoError(t, nc.PublishMsg(msg))
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(finals) == n
	}, 20*time.Second, 10*time.Millisecond)
	// Both workers have counted every request they handled, and the server delivered each
	// request to exactly one of them (the deliveries are final once the publisher's
	// connection is flushed), so no duplicate answer can still be on its way.
	require.Eventually(t, func() bool {
		handled := 0.0
		for _, w := range workers {
			handled += w.metric(t, "parley_worker_requests_total", map[string]string{"component": "shared", "outcome": "ok"})
		}
		return handled == n
	}, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, nc.Flush())
	subs, err := srv.Subsz(&server.SubszOptions{Subscriptions: true, Test: serve.SubjectPrefix + "shared"})
	require.NoError(t, err)
	require.Len(t, subs.Subs, 2)
	var delivered int64
	for _, s := range subs.Subs {
		require.NotEmpty(t, s.Queue, "worker subscription outside a queue group")
		delivered += s.Msgs
	}
	require.Equal(t, int64(n), delivered)

	mu.Lock()
	defer mu.Unlock()
	for subject, count := range finals {
		require.Equal(t, 1, count, "answers to %s", subject)
	}
	require.Equal(t, n, byID["w1"]+byID["w2"])
	require.Positive(t, byID["w1"], "w1 got no work")
	require.Positive(t, byID["w2"], "w2 got no work")
}

func TestSaturationRejectsInsteadOfQueueing(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	p := newScripted()
	p.started = make(chan struct{}, 8)
	w := startWorker(t, srv, map[string]serve.Provider{"busy": p}, serve.Options{
		Concurrency: 2, AdmissionWait: 50 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond,
	})

	// Fill both slots.
	hold := encode(t, request("busy", "hold"))
	held := []<-chan answer{sendAsync(nc, "busy", hold), sendAsync(nc, "busy", hold)}
	for range 2 {
		select {
		case <-p.started:
		case <-time.After(10 * time.Second):
			t.Fatal("held calls did not start")
		}
	}

	// Everything else is answered at once, not queued behind the held calls.
	const extra = 6
	quick := encode(t, request("busy", "quick"))
	answers := make([]<-chan answer, extra)
	for i := range extra {
		answers[i] = sendAsync(nc, "busy", quick)
	}
	// They are answered while the held calls still run: a request queued behind them would
	// never be answered before the release below.
	for _, ch := range answers {
		requireError(t, <-ch, providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "worker saturated")
	}
	require.Equal(t, float64(extra), w.metric(t, "parley_worker_rejected_total", map[string]string{"component": "busy"}))
	require.Equal(t, float64(extra), w.metric(t, "parley_worker_requests_total", map[string]string{"component": "busy", "outcome": "rejected"}))
	require.Equal(t, 2.0, w.metric(t, "parley_worker_inflight", map[string]string{"component": "busy"}))

	// Once the held calls finish, the worker serves again.
	close(p.release)
	for _, ch := range held {
		requireResponse(t, <-ch, "hold")
	}
	requireResponse(t, call(t, nc, "busy", encode(t, request("busy", "after")), nil), "after")
	require.Equal(t, int64(3), p.calls.Load())
}

func TestWaitingRequestGetsAFreedSlot(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	p := newScripted()
	p.started = make(chan struct{}, 1)
	w := startWorker(t, srv, map[string]serve.Provider{"one": p}, serve.Options{Concurrency: 1, AdmissionWait: 10 * time.Second})

	held := sendAsync(nc, "one", encode(t, request("one", "hold")))
	<-p.started
	// The worker takes messages of a subscription in order, and with one slot it lets one
	// request wait: once a third request has been turned away, the second one is waiting.
	waiting := publish(t, nc, "one", encode(t, request("one", "next")))
	requireError(t, call(t, nc, "one", encode(t, request("one", "third")), nil), providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "worker saturated")
	require.Equal(t, 1.0, w.metric(t, "parley_worker_waiting_requests", nil))
	require.Equal(t, 1.0, w.metric(t, "parley_worker_queue_wait_seconds", map[string]string{"component": "one"}), "the held call's wait")
	close(p.release)

	requireResponse(t, <-held, "hold")
	requireResponse(t, finalReply(t, waiting), "next")
}

func TestStop(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)

	t.Run("waits for running calls", func(t *testing.T) {
		t.Parallel()
		p := newScripted()
		p.started = make(chan struct{}, 1)
		w, err := serve.New(natstest.Connect(t, srv), map[string]serve.Provider{"drain": p}, serve.Options{
			WorkerID: "w", Concurrency: 4, HeartbeatInterval: time.Second,
		})
		require.NoError(t, err)
		require.Error(t, w.Ready(t.Context()))
		require.NoError(t, w.Start(t.Context()))
		require.NoError(t, w.Ready(t.Context()))

		got := sendAsync(nc, "drain", encode(t, request("drain", "hold")))
		<-p.started
		type stop struct {
			err          error
			afterRelease bool
		}
		var released atomic.Bool
		stopped := make(chan stop, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := w.Stop(ctx)
			stopped <- stop{err, released.Load()}
		}()
		// Stop has begun once the worker reports itself not ready; the call still runs.
		require.Eventually(t, func() bool { return w.Ready(t.Context()) != nil }, 10*time.Second, time.Millisecond)
		released.Store(true)
		close(p.release)
		s := <-stopped
		require.NoError(t, s.err)
		require.True(t, s.afterRelease, "stop returned before the running call ended")
		requireResponse(t, <-got, "hold")
		// No worker subscribes any more.
		require.True(t, call(t, nc, "drain", encode(t, request("drain", "late")), nil).noWorker)
	})

	t.Run("cancels calls past the stop deadline", func(t *testing.T) {
		t.Parallel()
		p := newScripted()
		p.started = make(chan struct{}, 1)
		w, err := serve.New(natstest.Connect(t, srv), map[string]serve.Provider{"stuck": p}, serve.Options{
			WorkerID: "w", Concurrency: 4, HeartbeatInterval: time.Second,
		})
		require.NoError(t, err)
		require.NoError(t, w.Start(t.Context()))

		got := sendAsync(nc, "stuck", encode(t, request("stuck", "hold")))
		<-p.started
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, w.Stop(ctx), context.DeadlineExceeded)
		requireError(t, <-got, providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "worker is stopping")
	})
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	good := serve.Options{WorkerID: "w", Concurrency: 1, HeartbeatInterval: time.Second}
	tests := []struct {
		name      string
		providers map[string]serve.Provider
		opts      func(serve.Options) serve.Options
		want      string
	}{
		{"no providers", nil, func(o serve.Options) serve.Options { return o }, "no components to serve"},
		{"wildcard name", map[string]serve.Provider{"a.*": echo.New()}, func(o serve.Options) serve.Options { return o }, "not a valid subject token"},
		{"nil provider", map[string]serve.Provider{"a": nil}, func(o serve.Options) serve.Options { return o }, `component "a" has no provider`},
		{"zero concurrency", map[string]serve.Provider{"a": echo.New()}, func(o serve.Options) serve.Options { o.Concurrency = 0; return o }, "concurrency must be positive"},
		{"zero heartbeat", map[string]serve.Provider{"a": echo.New()}, func(o serve.Options) serve.Options { o.HeartbeatInterval = 0; return o }, "heartbeat interval must be positive"},
		{"no worker id", map[string]serve.Provider{"a": echo.New()}, func(o serve.Options) serve.Options { o.WorkerID = ""; return o }, "worker id is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := serve.New(nc, tt.providers, tt.opts(good))
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// outcomeLabel is the outcome label the worker records for a reply code.
func outcomeLabel(code providerv1.ErrorCode) string {
	return strings.TrimPrefix(strings.ToLower(code.String()), "error_code_")
}

// publish sends data to the work subject of component from the test's goroutine, so that
// it reaches the worker before anything the test publishes next on nc, and returns the
// subscription to its reply inbox, for finalReply.
func publish(t *testing.T, nc *nats.Conn, component string, data []byte) *nats.Subscription {
	t.Helper()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.PublishMsg(&nats.Msg{Subject: serve.SubjectPrefix + component, Reply: inbox, Data: data}))
	require.NoError(t, nc.Flush())
	return sub
}

// finalReply reads the replies on sub up to the final one, counting heartbeats.
func finalReply(t *testing.T, sub *nats.Subscription) answer {
	t.Helper()
	var a answer
	for {
		m, err := sub.NextMsg(20 * time.Second)
		require.NoError(t, err, "no final reply after %d heartbeats", a.heartbeats)
		var r providerv1.Reply
		require.NoError(t, proto.Unmarshal(m.Data, &r))
		if r.GetHeartbeat() != nil {
			a.heartbeats++
			continue
		}
		a.final = &r
		return a
	}
}
