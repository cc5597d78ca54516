package warm_test

import (
	"runtime"
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
					p.Go(warm.Func{F: func() {
						arrived.Done()
						arrived.Wait()
						ran[i]++
					}, Finish: done.Done})
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

// TestPoolGoexitAndClose: a job that ends its goroutine still gets its Done and the
// goroutine is replaced; after Close no goroutine is kept, and jobs still run.
func TestPoolGoexitAndClose(t *testing.T) {
	t.Parallel()
	p := warm.New(4)
	runOne := func(f func()) {
		done := make(chan struct{})
		p.Go(warm.Func{F: f, Finish: func() { close(done) }})
		<-done
	}
	ran := 0
	runOne(func() { ran++ })
	require.Equal(t, 1, p.Idle())
	runOne(runtime.Goexit)
	require.Equal(t, 0, p.Idle(), "the goroutine that ended is not kept")
	runOne(func() { ran++ })
	require.Equal(t, 2, p.Started())
	require.Equal(t, 1, p.Idle())

	p.Close()
	require.Zero(t, p.Idle())
	runOne(func() { ran++ })
	runOne(func() { ran++ })
	require.Zero(t, p.Idle(), "a closed pool keeps no goroutine")
	require.Equal(t, 4, p.Started())
	require.Equal(t, 4, ran)
}
