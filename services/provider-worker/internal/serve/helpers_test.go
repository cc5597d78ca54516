package serve_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/provider-worker/internal/serve"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/echo"
)

// secretPrompt is prompt text that must never reach a log.
const secretPrompt = "top-secret-prompt-text"

// scripted is a test provider whose behaviour the first text part chooses; any other text is
// echoed. It counts its calls.
type scripted struct {
	calls   atomic.Int64
	release chan struct{} // "hold" waits for it to close
	started chan struct{} // "hold" signals here, when not nil
}

func newScripted() *scripted {
	return &scripted{release: make(chan struct{})}
}

func (p *scripted) Converse(ctx context.Context, req *providerv1.Request) (*providerv1.Response, error) {
	p.calls.Add(1)
	text := firstText(req)
	switch {
	case text == "panic":
		panic("provider bug near " + secretPrompt)
	case text == "panic:runtime":
		var m map[string]int
		m[secretPrompt]++ //nolint:staticcheck // deliberate runtime panic: tests assert its "assignment to entry in nil map" is logged without the request text
		return nil, nil
	case strings.HasPrefix(text, "sleep:"):
		d, err := time.ParseDuration(strings.TrimPrefix(text, "sleep:"))
		if err != nil {
			return nil, err
		}
		select {
		case <-time.After(d):
			return echo.New().Converse(ctx, req)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case text == "hold":
		if p.started != nil {
			p.started <- struct{}{}
		}
		select {
		case <-p.release:
			return echo.New().Converse(ctx, req)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case text == "fail":
		return nil, errors.New("upstream said no")
	case text == "fail:unavailable":
		return nil, &provider.Error{Code: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, Err: errors.New("upstream overloaded")}
	case text == "fail:ratelimited":
		return nil, provider.Unavailable(errors.New("upstream rate limited"), 7*time.Second)
	case text == "fail:internal-with-hint":
		return nil, &provider.Error{Code: providerv1.ErrorCode_ERROR_CODE_INTERNAL, RetryAfter: 7 * time.Second, Err: errors.New("out of credit")}
	case text == "nil":
		return nil, nil
	default:
		return echo.New().Converse(ctx, req)
	}
}

func firstText(req *providerv1.Request) string {
	for _, m := range req.GetMessages() {
		for _, p := range m.GetParts() {
			if t, ok := p.GetKind().(*providerv1.Part_Text); ok {
				return t.Text
			}
		}
	}
	return ""
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, to capture logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testWorker is a started worker with its log and metrics.
type testWorker struct {
	*serve.Worker
	logs *syncBuffer
	reg  *prometheus.Registry
}

// startWorker starts a worker on its own connection to srv and stops it at cleanup.
func startWorker(t *testing.T, srv *server.Server, ps map[string]serve.Provider, opts serve.Options) *testWorker {
	t.Helper()
	nc := natstest.Connect(t, srv)
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	if opts.WorkerID == "" {
		opts.WorkerID = "worker-" + t.Name()
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 8
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = time.Second
	}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Registerer = reg
	w, err := serve.New(nc, ps, opts)
	require.NoError(t, err)
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, w.Stop(ctx))
		require.NotContains(t, logs.String(), secretPrompt, "prompt text reached the log")
	})
	return &testWorker{Worker: w, logs: logs, reg: reg}
}

// metric returns the value of the counter or gauge name with the given labels, 0 if absent.
func (w *testWorker) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := w.reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// answer is what a client saw for one request, read the way the router reads it.
type answer struct {
	final      *providerv1.Reply
	heartbeats int
	noWorker   bool
	elapsed    time.Duration
}

// call publishes data to the work subject of component with a fresh reply inbox, then reads
// replies until the final one, as the router's dispatcher does.
func call(t *testing.T, nc *nats.Conn, component string, data []byte, header nats.Header) answer {
	t.Helper()
	a, err := send(nc, component, data, header)
	require.NoError(t, err)
	return a
}

// send is call for goroutines other than the test's: it returns failures rather than
// stopping the test.
func send(nc *nats.Conn, component string, data []byte, header nats.Header) (answer, error) {
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return answer{}, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if header == nil {
		header = nats.Header{}
	}
	start := time.Now()
	if err := nc.PublishMsg(&nats.Msg{Subject: serve.SubjectPrefix + component, Reply: inbox, Data: data, Header: header}); err != nil {
		return answer{}, err
	}
	var a answer
	for {
		m, err := sub.NextMsg(20 * time.Second)
		if errors.Is(err, nats.ErrNoResponders) { // nats.go's reading of the 503 status
			a.noWorker = true
			a.elapsed = time.Since(start)
			return a, nil
		}
		if err != nil {
			return a, fmt.Errorf("no final reply after %d heartbeats: %w", a.heartbeats, err)
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			a.noWorker = true
			a.elapsed = time.Since(start)
			return a, nil
		}
		var r providerv1.Reply
		if err := proto.Unmarshal(m.Data, &r); err != nil {
			return a, err
		}
		if r.GetHeartbeat() != nil {
			a.heartbeats++
			continue
		}
		a.final = &r
		a.elapsed = time.Since(start)
		return a, nil
	}
}

// sendAsync runs send in a goroutine owned by the caller, which must read the channel.
func sendAsync(nc *nats.Conn, component string, data []byte) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		a, _ := send(nc, component, data, nil) // a missing answer fails the caller's checks
		ch <- a
	}()
	return ch
}

// request builds a request with one user message whose deadline is in a minute.
func request(component, text string) *providerv1.Request {
	return &providerv1.Request{
		RequestId: "req-" + text,
		Component: component,
		Messages: []*providerv1.Message{{
			Role:  providerv1.Role_ROLE_USER,
			Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: text}}},
		}},
		Deadline: timestamppb.New(time.Now().Add(time.Minute)),
	}
}

func encode(t testing.TB, req *providerv1.Request) []byte {
	t.Helper()
	data, err := proto.Marshal(req)
	require.NoError(t, err)
	return data
}

// requireResponse checks that a answered with a Response whose content is want.
func requireResponse(t *testing.T, a answer, want string) *providerv1.Response {
	t.Helper()
	require.NotNil(t, a.final, "no answer (no worker: %v)", a.noWorker)
	resp := a.final.GetResponse()
	require.NotNil(t, resp, "got %v", a.final)
	require.Len(t, resp.GetChoices(), 1)
	require.Equal(t, want, resp.GetChoices()[0].GetContent())
	return resp
}

// requireError checks that a answered with an Error of code whose message contains msg.
func requireError(t *testing.T, a answer, code providerv1.ErrorCode, msg string) {
	t.Helper()
	require.NotNil(t, a.final, "no answer (no worker: %v)", a.noWorker)
	e := a.final.GetError()
	require.NotNil(t, e, "got %v", a.final)
	require.Equal(t, code, e.GetCode(), "message: %s", e.GetMessage())
	require.Contains(t, e.GetMessage(), msg)
	require.NotEmpty(t, e.GetWorkerId())
}
