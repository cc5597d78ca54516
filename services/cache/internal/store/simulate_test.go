package store_test

import "time"

// The helpers in this file simulate slow parts by sleeping: the delay is the behaviour
// under test, not a wait for state. They are the only place where tests may sleep
// (.golangci.yml).

// slowModel simulates a model that takes d to answer.
func slowModel(d time.Duration) { time.Sleep(d) }
