package upstream_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// The helpers in this file simulate slow parts by sleeping: the delay is the behaviour
// under test, not a wait for state. They are the only place where tests may sleep
// (.golangci.yml).

// busyWorker simulates a worker whose provider call lasts n heartbeat intervals: it
// replies to to with heartbeat every interval, n times, then with answer.
func busyWorker(t *testing.T, nc *nats.Conn, to string, n int, every time.Duration, heartbeat, answer *providerv1.Reply) {
	for range n {
		reply(t, nc, to, heartbeat)
		time.Sleep(every)
	}
	reply(t, nc, to, answer)
}

// keepPromise simulates a worker that keeps its heartbeat promise: beat, then one interval
// of work, n times, then done.
func keepPromise(n int, every time.Duration, beat, done func()) {
	for range n {
		beat()
		time.Sleep(every)
	}
	done()
}
