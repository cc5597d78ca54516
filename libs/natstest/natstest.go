// Package natstest runs an in-process NATS server with JetStream for tests.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/parleyhq/parley/libs/bus"
)

// RunServer starts a JetStream-enabled server on a free loopback port, with Parley's
// max_payload (bus.MaxPayload), stopped at cleanup.
func RunServer(tb testing.TB) *server.Server {
	tb.Helper()
	return RunServerWith(tb, nil)
}

// RunServerWith is RunServer with configure applied to the server's options first.
func RunServerWith(tb testing.TB, configure func(*server.Options)) *server.Server {
	tb.Helper()
	opts := &server.Options{
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		MaxPayload: bus.MaxPayload,
		NoLog:      true,
		NoSigs:     true,
	}
	if configure != nil {
		configure(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("natstest: server not ready within 10s")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect returns a connection to s, closed at cleanup.
func Connect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
