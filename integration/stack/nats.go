package stack

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/parleyhq/parley/libs/bus"
)

// embeddedNATS is a NATS server with JetStream inside the launcher's process, on a free
// loopback port so it never collides with a system NATS on 4222.
type embeddedNATS struct{ s *server.Server }

func startNATS(storeDir string) (*embeddedNATS, error) {
	s, err := server.NewServer(&server.Options{
		ServerName: "parley-local",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   storeDir,
		MaxPayload: bus.MaxPayload,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready within 15s")
	}
	return &embeddedNATS{s: s}, nil
}

func (n *embeddedNATS) URL() string { return n.s.ClientURL() }

func (n *embeddedNATS) Stop() {
	n.s.Shutdown()
	n.s.WaitForShutdown()
}
