package stack

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/natsauth"
	"github.com/parleyhq/parley/libs/natstest"
)

// TestNATSAdmitsOnlyUsers: services present their seeds exactly to a server that
// requires users (one without users refuses nkeys).
func TestNATSAdmitsOnlyUsers(t *testing.T) {
	t.Parallel()
	open := natstest.RunServer(t)
	locked := natstest.RunLockedServer(t, natsauth.User{Name: "router", Role: natsauth.Router})
	for _, tc := range []struct {
		name string
		url  string
		want bool
	}{
		{"open", open.ClientURL(), false},
		{"locked", locked.ClientURL(), true},
	} {
		got, err := natsAdmitsOnlyUsers(tc.url)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, got, tc.name)
	}
	_, err := natsAdmitsOnlyUsers("nats://127.0.0.1:1")
	require.Error(t, err, "an unreachable server must fail start-up")
}

// TestNATSUserOfWorker: a worker's NATS user serves the components of its
// WORKER_COMPONENTS, or all of them when unset.
func TestNATSUserOfWorker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want []string
	}{
		{nil, nil},
		{map[string]string{"WORKER_COMPONENTS": " echo, echo-nocache ,"}, []string{"echo", "echo-nocache"}},
	}
	for _, tc := range tests {
		u, ok := natsUser("provider-worker-2", "provider-worker", tc.env)
		require.True(t, ok)
		require.Equal(t, natsauth.User{Name: "provider-worker-2", Role: natsauth.Worker, Components: tc.want}, u)
	}
	_, ok := natsUser("pii-scrubber", "pii-scrubber", nil)
	require.False(t, ok, "pii-scrubber does not use NATS")
}
