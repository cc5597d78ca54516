package upstream

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/natstest"
)

// TestAuditPublishRetriesLostAck: an event whose first ack never comes (it went with a
// NATS node, or the stream changed leader after storing it) is sent again with the same
// Nats-Msg-Id; the stream holds it once and the retry is counted.
func TestAuditPublishRetriesLostAck(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	// Until the stream exists, a plain subscriber takes the first attempt without
	// answering; it stores the event in the stream itself (so the attempt's ack is what is
	// lost, not the event) and steps aside.
	stored := make(chan error, 1)
	var sub *nats.Subscription
	sub, err = nc.Subscribe(auditevent.Subject, func(m *nats.Msg) {
		if err := sub.Unsubscribe(); err != nil {
			stored <- err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := auditevent.Ensure(ctx, js, 1); err != nil {
			stored <- err
			return
		}
		_, err := js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Data: m.Data, Header: m.Header})
		stored <- err
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	reg := prometheus.NewRegistry()
	a, err := NewAuditPublisher(js, AuditConfig{Timeout: 30 * time.Second, AttemptTimeout: 200 * time.Millisecond}, nil, nil, reg)
	require.NoError(t, err)
	require.NoError(t, a.Record(t.Context(), &auditv1.ConversationEvent{RequestId: "req-lost-ack"}))
	require.NoError(t, <-stored)
	require.GreaterOrEqual(t, testutil.ToFloat64(a.retries), 1.0, "the lost ack was not retried")

	s, err := js.Stream(t.Context(), auditevent.Stream)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs, "the event is stored once")
	m, err := s.GetLastMsgForSubject(t.Context(), auditevent.Subject)
	require.NoError(t, err)
	require.Equal(t, "req-lost-ack", m.Header.Get(jetstream.MsgIDHeader))
}

// TestAuditPublishGivesUp: without a stream the publish fails once Timeout has passed,
// after retrying.
func TestAuditPublishGivesUp(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	require.NoError(t, err)
	// A Timeout of seconds: an attempt that fails after it is not counted as a retry, and a
	// descheduled goroutine could make the first attempt end past a short one.
	a, err := NewAuditPublisher(js, AuditConfig{Timeout: 2 * time.Second, AttemptTimeout: 100 * time.Millisecond}, nil, nil, prometheus.NewRegistry())
	require.NoError(t, err)
	require.Error(t, a.Record(t.Context(), &auditv1.ConversationEvent{RequestId: "req-no-stream"}))
	require.GreaterOrEqual(t, testutil.ToFloat64(a.retries), 1.0)
}

// TestAuditAttemptFor: the wait for one attempt's ack grows with each MiB of the event
// begun, up to half of the whole publish's bound, and is never below AttemptTimeout.
func TestAuditAttemptFor(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	cfg := AuditConfig{Timeout: 5 * time.Second, AttemptTimeout: time.Second}
	tests := []struct {
		name  string
		cfg   AuditConfig
		bytes int
		want  time.Duration
	}{
		{"empty", cfg, 0, time.Second},
		{"a typical event", cfg, 1500, time.Second},
		{"one MiB", cfg, mib, time.Second},
		{"a byte past one MiB", cfg, mib + 1, 2 * time.Second},
		{"two MiB and a half", cfg, 5 * mib / 2, 2500 * time.Millisecond}, // half of Timeout
		{"eight MiB", cfg, 8 * mib, 2500 * time.Millisecond},
		{"attempt as long as the whole", AuditConfig{Timeout: time.Second, AttemptTimeout: time.Second}, 8 * mib, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.cfg.attemptFor(tt.bytes))
		})
	}
}

// TestAuditPublishLargeEventWaitsLonger: an event of 3 MiB whose ack never comes is sent
// again only after AttemptTimeout × 3 rather than every AttemptTimeout, so within one
// Timeout it is sent at most Timeout ÷ (3 × AttemptTimeout) times (rounded up), where a
// fixed wait would have sent it ten times. A busy machine can only make fewer attempts.
func TestAuditPublishLargeEventWaitsLonger(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	// No stream: a plain subscriber takes every attempt and never answers. Its channel
	// receives each message on the connection's read loop, so once a flush has come back
	// every attempt the server delivered is in it.
	attempts := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(auditevent.Subject, attempts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())

	a, err := NewAuditPublisher(js, AuditConfig{Timeout: time.Second, AttemptTimeout: 100 * time.Millisecond}, nil, nil, prometheus.NewRegistry())
	require.NoError(t, err)
	ev := &auditv1.ConversationEvent{RequestId: "req-large", ErrorMessage: strings.Repeat("x", 3<<20-100)}
	require.Error(t, a.Record(t.Context(), ev))
	require.NoError(t, nc.Flush())
	require.LessOrEqual(t, len(attempts), 4, "each attempt should wait 300 ms")
	require.GreaterOrEqual(t, len(attempts), 1)
}
