// Package freeport finds free loopback ports for processes that must be told their port
// before they bind it (test stacks, cluster nodes restarted on the same port).
//
// The ports lie below the kernel's ephemeral range (Linux's default starts at 32768): a port
// the kernel picks for port 0 is also what it picks for the outgoing connections of every
// process, so one found free that way can be taken by a client's connection before the
// service binds it, and the service fails to start with "address already in use".
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

const (
	low  = 20000
	high = 32767
)

// Loopback returns a port that was free on 127.0.0.1 a moment ago, chosen at random below
// the ephemeral range so that stacks started at the same time rarely pick alike.
func Loopback() (int, error) {
	var last error
	for range 200 {
		p := low + rand.IntN(high-low+1) //nolint:gosec // a port, not a secret
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			last = err
			continue
		}
		_ = l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("find a free loopback port: %w", last)
}
