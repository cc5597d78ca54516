package freeport_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/freeport"
)

// TestLoopback: every port handed out is below the ephemeral range and can be bound.
func TestLoopback(t *testing.T) {
	t.Parallel()
	for range 20 {
		p, err := freeport.Loopback()
		require.NoError(t, err)
		require.GreaterOrEqual(t, p, 20000)
		require.Less(t, p, 32768, "inside the kernel's ephemeral range")
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		require.NoError(t, err)
		require.NoError(t, l.Close())
	}
}
