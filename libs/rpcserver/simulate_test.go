package rpcserver_test

import "time"

// idleClient is a client that sends nothing for d: behaviour a test simulates, not a wait
// for state (docs/architecture.md, Tests).
func idleClient(d time.Duration) { time.Sleep(d) }
