package integration_test

import "time"

// The helpers in this file simulate faults that last a while by sleeping: the duration is
// the behaviour under test, not a wait for state. They are the only place where tests may
// sleep (.golangci.yml).

// holdOutage keeps a stopped dependency down for d: the caller stopped it and starts it
// again after.
func holdOutage(d time.Duration) { time.Sleep(d) }
