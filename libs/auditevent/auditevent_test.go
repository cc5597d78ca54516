package auditevent_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/natstest"
)

func TestEnsureIsIdempotentAndKeepsOperatorChanges(t *testing.T) {
	t.Parallel()
	nc := natstest.Connect(t, natstest.RunServer(t))
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	s, err := auditevent.Ensure(t.Context(), js, 1)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, jetstream.DiscardNew, info.Config.Discard)

	cfg := info.Config
	cfg.MaxMsgs = 42
	_, err = js.UpdateStream(t.Context(), cfg)
	require.NoError(t, err)

	s, err = auditevent.Ensure(t.Context(), js, 1)
	require.NoError(t, err)
	info, err = s.Info(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, 42, info.Config.MaxMsgs)
}

// TestEnsureAsksAgainWhenUnanswered runs Ensure against a real JetStream through a relay
// that loses one request or one answer, as a clustered JetStream does when a request
// arrives while a leader changes: the request is made again and the stream is created
// once, with Parley's configuration.
func TestEnsureAsksAgainWhenUnanswered(t *testing.T) {
	t.Parallel()
	const (
		dropNone = iota
		dropRequest
		dropAnswer
	)
	tests := []struct {
		name string
		// lose is what the relay loses of its nth request (from 1): dropRequest never
		// reaches JetStream, dropAnswer is served and its answer lost.
		lose map[int64]int
		// requests is how many requests the scenario takes when every answer that is not
		// lost comes within an attempt.
		requests int64
	}{
		{name: "all answered", requests: 2}, // info (not found), create
		{name: "lookup unanswered", lose: map[int64]int{1: dropRequest}, requests: 3},
		{name: "create unanswered", lose: map[int64]int{2: dropRequest}, requests: 4},
		{name: "create served, answer lost", lose: map[int64]int{2: dropAnswer}, requests: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := natstest.RunServer(t)
			relay := natstest.Connect(t, s)
			var n atomic.Int64
			_, err := relay.Subscribe("relay.>", func(m *nats.Msg) {
				i := n.Add(1)
				if tt.lose[i] == dropRequest {
					return
				}
				resp, err := relay.Request(jetstream.DefaultAPIPrefix+strings.TrimPrefix(m.Subject, "relay."), m.Data, 10*time.Second)
				if err != nil || tt.lose[i] == dropAnswer {
					return
				}
				_ = m.Respond(resp.Data)
			})
			require.NoError(t, err)
			require.NoError(t, relay.Flush())

			js, err := jetstream.NewWithAPIPrefix(natstest.Connect(t, s), "relay")
			require.NoError(t, err)
			st, err := auditevent.Ensure(t.Context(), js, 1)
			require.NoError(t, err)
			require.Equal(t, auditevent.Stream, st.CachedInfo().Config.Name)
			// At least the requests the scenario needs: an answer slower than an attempt
			// on a loaded machine adds one, and is as harmless as the one lost.
			require.GreaterOrEqual(t, n.Load(), tt.requests)

			direct, err := jetstream.New(natstest.Connect(t, s))
			require.NoError(t, err)
			info, err := direct.Stream(t.Context(), auditevent.Stream)
			require.NoError(t, err)
			require.Equal(t, auditevent.StreamConfig(1).Subjects, info.CachedInfo().Config.Subjects)
			require.Equal(t, jetstream.DiscardNew, info.CachedInfo().Config.Discard)
		})
	}
}
