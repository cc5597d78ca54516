package serve_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives the tests: every goroutine the worker
// starts must end by Stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
