package serve_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/provider-worker/internal/serve"
)

// nextPresence reads the next announcement.
func nextPresence(t *testing.T, sub *nats.Subscription) *providerv1.Presence {
	t.Helper()
	m, err := sub.NextMsg(20 * time.Second)
	require.NoError(t, err)
	var p providerv1.Presence
	require.NoError(t, proto.Unmarshal(m.Data, &p))
	require.Equal(t, bus.PresenceSubject(p.GetComponent()), m.Subject)
	return &p
}

// TestPresence: a worker announces itself on each component's presence subject at start,
// keeps announcing with its slots in use, and says goodbye when it stops.
func TestPresence(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	sub, err := nc.SubscribeSync(bus.WorkerSubjectPrefix + "*")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	p := newScripted()
	p.started = make(chan struct{}, 1)
	wc := natstest.Connect(t, srv)
	w, err := serve.New(wc, map[string]serve.Provider{"b": p, "a": p}, serve.Options{
		WorkerID: "w1", Concurrency: 2, HeartbeatInterval: time.Second, PresenceInterval: 10 * time.Millisecond,
	})
	require.NoError(t, err)
	require.NoError(t, w.Start(t.Context()))

	// At start: one announcement per component, in order.
	for _, c := range []string{"a", "b"} {
		got := nextPresence(t, sub)
		require.Equal(t, c, got.GetComponent())
		require.Equal(t, "w1", got.GetWorkerId())
		require.Equal(t, []string{"a", "b"}, got.GetComponents())
		require.Equal(t, uint32(2), got.GetSlots())
		require.Equal(t, uint32(0), got.GetSlotsInUse())
		require.Equal(t, 10*time.Millisecond, got.GetInterval().AsDuration())
		require.False(t, got.GetGoodbye())
	}

	// A running call holds a slot: a later announcement says so.
	held := sendAsync(nc, "a", encode(t, request("a", "hold")))
	<-p.started
	for seen := 0; ; seen++ {
		require.Less(t, seen, 10_000, "no announcement counts the running call")
		if nextPresence(t, sub).GetSlotsInUse() == 1 {
			break
		}
	}
	close(p.release)
	requireResponse(t, <-held, "hold")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, w.Stop(ctx))
	// The last announcements are the goodbyes, one per component; nothing follows them.
	var goodbyes []string
	for seen := 0; len(goodbyes) < 2; seen++ {
		require.Less(t, seen, 10_000, "no goodbye")
		if got := nextPresence(t, sub); got.GetGoodbye() {
			goodbyes = append(goodbyes, got.GetComponent())
		} else {
			require.Empty(t, goodbyes, "an announcement after a goodbye")
		}
	}
	require.Equal(t, []string{"a", "b"}, goodbyes)
	require.NoError(t, nc.Flush())
	_, err = sub.NextMsg(50 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "an announcement after the goodbyes")
}
