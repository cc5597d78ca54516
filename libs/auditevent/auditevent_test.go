package auditevent_test

import (
	"testing"

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
