package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/libs/pgtest"
	"github.com/parleyhq/parley/services/audit/internal/ingest"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

const (
	waitFor = 30 * time.Second
	tick    = 10 * time.Millisecond
)

// testConfig is the default configuration with a short batch wait.
func testConfig() ingest.Config {
	return ingest.Config{
		Consumer:       "parley-audit",
		MaxRows:        500,
		MaxBytes:       4 << 20,
		MaxWait:        50 * time.Millisecond,
		MaxDeliver:     5,
		AckWait:        30 * time.Second,
		StreamReplicas: 1,
	}
}

// env is one test's NATS server, database and metrics registry.
type env struct {
	srv  *server.Server
	js   jetstream.JetStream
	pool *pgxpool.Pool
	reg  *prometheus.Registry
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	// NATS's default max_payload, 1 MiB, which the byte-batching cases are sized for.
	srv := natstest.RunServerWith(tb, func(o *server.Options) { o.MaxPayload = 1 << 20 })
	js, err := jetstream.New(natstest.Connect(tb, srv))
	require.NoError(tb, err)
	_, err = auditevent.Ensure(tb.Context(), js, 1)
	require.NoError(tb, err)
	return &env{srv: srv, js: js, pool: pgtest.NewDB(tb, store.Migrations()), reg: prometheus.NewRegistry()}
}

// start runs an Ingester on e until the test ends.
func (e *env) start(tb testing.TB, cfg ingest.Config) *ingest.Ingester {
	tb.Helper()
	return e.startWith(tb, cfg, e.reg)
}

// startWith runs an Ingester on e, its metrics registered with reg, until the test ends.
func (e *env) startWith(tb testing.TB, cfg ingest.Config, reg prometheus.Registerer) *ingest.Ingester {
	tb.Helper()
	in, err := ingest.New(e.js, store.New(e.pool), cfg, testLogger(tb), reg)
	require.NoError(tb, err)
	require.NoError(tb, in.Start(tb.Context()))
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(tb, in.Stop(ctx))
	})
	return in
}

func testLogger(tb testing.TB) *slog.Logger {
	if _, ok := tb.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// event returns a valid event of tenant; size pads the request JSON.
func event(tb testing.TB, tenant string, i, size int) *auditv1.ConversationEvent {
	tb.Helper()
	id, err := uuid.NewV7()
	require.NoError(tb, err)
	return &auditv1.ConversationEvent{
		RequestId:       id.String(),
		Tenant:          tenant,
		Api:             auditv1.Api_API_ALPHA2,
		Component:       "openai",
		Provider:        "conversation.openai",
		Model:           "gpt-4o-mini",
		ContextId:       fmt.Sprintf("ctx-%d", i%7),
		RequestJson:     fmt.Appendf(nil, `{"inputs":[{"content":%q,"role":"user"}],"temperature":0.5}`, fmt.Sprintf("hello %d ", i)+strings.Repeat("x", size)),
		ResponseJson:    []byte(`{"outputs":[{"result":"hi <REDACTED>"}]}`),
		FinishReason:    "stop",
		Status:          auditv1.Status_STATUS_OK,
		Usage:           &auditv1.TokenUsage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15},
		PiiFindings:     map[string]int64{"EMAIL_ADDRESS": 1},
		Attempts:        1,
		WorkerId:        "worker-1",
		Latency:         durationpb.New(1500 * time.Microsecond),
		ProviderLatency: durationpb.New(1200 * time.Microsecond),
		CreatedAt:       timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)),
	}
}

// newEvents returns n valid events of tenant, numbered from first.
func newEvents(tb testing.TB, tenant string, first, n int) []*auditv1.ConversationEvent {
	tb.Helper()
	evs := make([]*auditv1.ConversationEvent, n)
	for i := range evs {
		evs[i] = event(tb, tenant, first+i, 0)
	}
	return evs
}

func encode(tb testing.TB, ev *auditv1.ConversationEvent) []byte {
	tb.Helper()
	b, err := proto.Marshal(ev)
	require.NoError(tb, err)
	return b
}

// publish stores data on the audit subject with Nats-Msg-Id msgID, as router does, and
// returns its stream sequence.
func (e *env) publish(tb testing.TB, data []byte, msgID string) uint64 {
	tb.Helper()
	ack, err := e.js.PublishMsg(tb.Context(), &nats.Msg{
		Subject: auditevent.Subject,
		Data:    data,
		Header:  nats.Header{jetstream.MsgIDHeader: []string{msgID}},
	})
	require.NoError(tb, err)
	require.False(tb, ack.Duplicate, "message id %s was deduplicated", msgID)
	return ack.Sequence
}

// publishAll publishes every event once, asynchronously, and waits for the stream's acks.
func (e *env) publishAll(tb testing.TB, events []*auditv1.ConversationEvent) {
	tb.Helper()
	for _, ev := range events {
		_, err := e.js.PublishMsgAsync(&nats.Msg{
			Subject: auditevent.Subject,
			Data:    encode(tb, ev),
			Header:  nats.Header{jetstream.MsgIDHeader: []string{ev.GetRequestId()}},
		})
		require.NoError(tb, err)
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(waitFor):
		tb.Fatal("async publishes not acknowledged")
	}
}

// rows returns the number of rows and of distinct request ids in the table.
func (e *env) rows(tb testing.TB) (total, distinct int) {
	tb.Helper()
	require.NoError(tb, e.pool.QueryRow(tb.Context(),
		"SELECT count(*), count(DISTINCT request_id) FROM conversations").Scan(&total, &distinct))
	return total, distinct
}

// consumerState returns the consumer's undelivered and unacknowledged message counts.
func (e *env) consumerState(tb testing.TB, name string) (pending uint64, ackPending int) {
	tb.Helper()
	c, err := e.js.Consumer(tb.Context(), auditevent.Stream, name)
	require.NoError(tb, err)
	info, err := c.Info(tb.Context())
	require.NoError(tb, err)
	return info.NumPending, info.NumAckPending
}

// requireDrained waits until the consumer has nothing pending or unacknowledged.
func (e *env) requireDrained(tb testing.TB, name string) {
	tb.Helper()
	s, err := e.js.Stream(tb.Context(), auditevent.Stream)
	require.NoError(tb, err)
	require.Eventually(tb, func() bool {
		// The consumer's counts can read zero an instant after a publish, before it has
		// accounted for the new message: drained also means its ack floor has reached the
		// last event published (unless that event is gone, purged below the ack floor).
		last, err := s.GetLastMsgForSubject(tb.Context(), auditevent.Subject)
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			require.NoError(tb, err)
		}
		c, err := e.js.Consumer(tb.Context(), auditevent.Stream, name)
		require.NoError(tb, err)
		info, err := c.Info(tb.Context())
		require.NoError(tb, err)
		caughtUp := last == nil || info.AckFloor.Stream >= last.Sequence
		return info.NumPending == 0 && info.NumAckPending == 0 && caughtUp
	}, waitFor, tick)
}

// deadLetters reads every message on the dead-letter subject.
func (e *env) deadLetters(tb testing.TB) []jetstream.Msg {
	tb.Helper()
	c, err := e.js.OrderedConsumer(tb.Context(), auditevent.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{auditevent.DeadLetterSubject},
	})
	require.NoError(tb, err)
	batch, err := c.FetchNoWait(1000)
	require.NoError(tb, err)
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	require.NoError(tb, batch.Error())
	return msgs
}

// metric returns the value of the counter, gauge or histogram sample count name whose
// labels include labels (name=value pairs).
func metric(tb testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	require.NoError(tb, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
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
	}
	tb.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
