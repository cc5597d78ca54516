package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/parleyhq/parley/integration/stack"
)

// The scaling run (-paths scaling): do more workers of one component give more
// throughput on this machine? A component ("scaling") on a fake provider that answers
// after -scaling-latency (20 ms) is served by dedicated workers only (WORKER_COMPONENTS),
// each with WORKER_CONCURRENCY -scaling-slots (4); the stack's own worker serves the other
// components. With 1, 2, then 4 such workers, the load keeps the pool saturated: twice
// as many requests in flight as the pool has slots (every slot busy, as many waiting for
// one), so a pool of N workers is offered 2 × slots × N concurrent requests. Each run
// prints answered requests per second, p50 and p99, errors ("worker saturated" when the
// queue group dealt one worker more than it holds), and CPU: the share of the machine the
// benchmark's processes used and the whole machine's busy share (/proc/stat), which shows
// when the cores, not the pool, are the bottleneck.
const (
	pathScaling      = "scaling"
	scalingComponent = "scaling"
	colScaling       = "scaling workers"
)

// scalingCounts are the pool sizes of the scaling run.
var scalingCounts = []int{1, 2, 4}

type scalingRun struct {
	workers, c int
	res        result
	// share is the CPU the benchmark's processes (every column of the meter, the load
	// generator and the embedded NATS included) used, as a share of all cores; busy is the
	// whole machine's.
	share, busy float64
}

// writeScalingComponent adds the scaling component to the components directory.
func writeScalingComponent(dir, fakeAddr string) error {
	return os.WriteFile(filepath.Join(dir, scalingComponent+".yaml"), []byte(openAIComponent(scalingComponent, fakeAddr)), 0o600)
}

// benchScaling starts the dedicated workers one pool size after the other and loads the
// scaling component through the router at t.
func benchScaling(ctx context.Context, s *stack.Stack, t target, d time.Duration, slots int) ([]scalingRun, error) {
	var names []string
	if t.meter != nil {
		t.meter.procs[colScaling] = func(context.Context) []int {
			pids := make([]int, 0, len(names))
			for _, n := range names {
				if p := s.Process(n); p != nil {
					pids = append(pids, p.PID())
				}
			}
			return pids
		}
	}
	var seq atomic.Int64
	call := viaGRPC(t.router, scalingComponent, func() string { return fmt.Sprintf("%s #scaling %d", prompt, seq.Add(1)) }, false)
	env := map[string]string{"WORKER_COMPONENTS": scalingComponent, "WORKER_CONCURRENCY": strconv.Itoa(slots)}
	var runs []scalingRun
	for _, n := range scalingCounts {
		for len(names) < n {
			name := fmt.Sprintf("provider-worker-scaling-%d", len(names)+1)
			if err := s.StartInstance(ctx, "provider-worker", name, env); err != nil {
				return nil, err
			}
			names = append(names, name)
		}
		c := 2 * slots * n
		for range 100 { // warm up the new workers' connections
			_ = call(ctx)
		}
		r := scalingRun{workers: n, c: c}
		var before sample
		if t.meter != nil {
			before = t.meter.sample(ctx)
		}
		selfBefore, _ := cpuTime(os.Getpid())
		machineBefore, _ := machineCPU()
		start := time.Now()
		r.res = load(ctx, call, c, d)
		wall := time.Since(start)
		machineAfter, _ := machineCPU()
		self, _ := cpuTime(os.Getpid())
		used := self - selfBefore
		if t.meter != nil {
			for _, v := range t.meter.sample(ctx).since(before) {
				used += v
			}
		}
		r.share = used.Seconds() / (wall.Seconds() * float64(runtime.NumCPU()))
		r.busy = machineAfter.since(machineBefore)
		runs = append(runs, r)
		fmt.Fprintf(os.Stderr, "scaling: %d workers done (load average %s)\n", n, loadAverage())
	}
	return runs, nil
}

// printScaling writes the scaling table: throughput relative to one worker, and the
// pool's ideal (slots × workers per provider latency).
func printScaling(w io.Writer, runs []scalingRun, slots int, latency time.Duration) {
	if len(runs) == 0 {
		return
	}
	_, _ = fmt.Fprintf(w, "\nscaling: component %q on a fake provider answering after %s, WORKER_CONCURRENCY %d per worker, "+
		"%d requests in flight per worker (every slot busy, as many waiting); %d CPUs\n",
		scalingComponent, latency, slots, 2*slots, runtime.NumCPU())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintf(tw, "workers\tconcurrency\treq/s\t× 1 worker\tpool ideal req/s\tp50\tp99\terrors\tbenchmark CPU share\tmachine busy\t\n")
	answered := func(r scalingRun) float64 {
		return float64(r.res.n-r.res.errors) / max(float64(r.res.n), 1) * r.res.rps
	}
	base := answered(runs[0])
	for _, r := range runs {
		ok := answered(r)
		ideal := float64(slots*r.workers) / latency.Seconds()
		_, _ = fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.2f×\t%.0f\t%s\t%s\t%d\t%.0f%%\t%.0f%%\t\n", r.workers, r.c, ok, ok/max(base, 1), ideal,
			fmtDur(r.res.p50), fmtDur(r.res.p99), r.res.errors, 100*r.share, 100*r.busy)
	}
	_ = tw.Flush()
}

// cpuTotals are the machine's CPU times from the first line of /proc/stat, in ticks.
type cpuTotals struct{ busy, total uint64 }

func machineCPU() (cpuTotals, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTotals{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPULine(line)
}

// parseCPULine reads the "cpu" line of /proc/stat: user nice system idle iowait irq
// softirq steal ...; idle and iowait are not busy.
func parseCPULine(line string) (cpuTotals, error) {
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTotals{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var t cpuTotals
	// guest and guest_nice (fields 9 and 10) are already counted in user and nice.
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTotals{}, fmt.Errorf("/proc/stat: %q: %w", s, err)
		}
		t.total += v
		if i != 3 && i != 4 {
			t.busy += v
		}
	}
	return t, nil
}

// since is the busy share of the machine between before and t.
func (t cpuTotals) since(before cpuTotals) float64 {
	if t.total <= before.total {
		return 0
	}
	return float64(t.busy-before.busy) / float64(t.total-before.total)
}
