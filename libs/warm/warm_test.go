package warm_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/warm"
)

// TestPoolReusesGoroutines counts the goroutines rounds of jobs start: as many as the
// largest round runs at once, up to the pool's maximum kept; every job runs once and its
// done follows it.
func TestPoolReusesGoroutines(t *testing.T) {
	t.Parallel()
	const maxIdle = 8
	tests := []struct {
		name    string
		rounds  []int
		started int
	}{
		{name: "one at a time", rounds: []int{1, 1, 1, 1}, started: 1},
		{name: "the same size round after round", rounds: []int{4, 4, 4}, started: 4},
		{name: "growing and shrinking", rounds: []int{2, 5, 3, 5}, started: 5},
		{name: "more than are kept", rounds: []int{maxIdle + 2, maxIdle + 2, maxIdle + 2}, started: maxIdle + 2 + 2 + 2},
		{name: "none", rounds: nil, started: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := warm.New(maxIdle)
			for _, n := range tt.rounds {
				// The round's jobs wait for one another, so all n run at once.
				var arrived, done sync.WaitGroup
				arrived.Add(n)
				done.Add(n)
				ran := make([]int, n)
				for i := range n {
					p.Go(func() {
						arrived.Done()
						arrived.Wait()
						ran[i]++
					}, done.Done)
				}
				done.Wait()
				for i, c := range ran {
					require.Equal(t, 1, c, "job %d", i)
				}
			}
			require.Equal(t, tt.started, p.Started())
		})
	}
}
