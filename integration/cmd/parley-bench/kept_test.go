package main

import (
	"slices"
	"testing"
	"time"
)

// measured is a row: its c=1 p50 and, when cpu is not nil, its CPU per request at -c
// by column.
func measured(name string, p50 time.Duration, cpu map[string]time.Duration) pathRun {
	return pathRun{name: name, c1: result{p50: p50}, cpu: cpu, cpuMeasure: cpu != nil}
}

// TestRowCPU: a floor row counts the processes that serve it (NATS included for the NATS
// floors, PostgreSQL for the kept rows, which store their events), a path row every
// Parley process, and a row whose column was not measured (NATS embedded in the load
// generator) reports nothing.
func TestRowCPU(t *testing.T) {
	t.Parallel()
	all := map[string]time.Duration{colClient: 7, colFloor: 10, colNATS: 20, colFake: 30, "router": 100, "cache": 50, colPostgres: 5}
	noNATS := map[string]time.Duration{colClient: 7, colFloor: 10, "router": 100}
	tests := []struct {
		row  pathRun
		want time.Duration
		ok   bool
	}{
		{measured(pathFloor, 0, all), 10, true},
		{measured(pathFloorConnect, 0, all), 10, true},
		{measured(pathConnectMTLS, 0, all), 10, true},
		{measured(pathNATSRR, 0, all), 30, true},
		{measured(pathJSPublish, 0, all), 20, true},
		{measured(pathKeptHit, 0, all), 35, true}, // floor + nats + postgres (its events' storage)
		{measured(pathKeptProvider, 0, all), 35, true},
		{measured(pathDirect, 0, all), 30, true},
		{measured(pathMiss, 0, all), 175, true}, // router + cache + nats + postgres
		{measured(pathNATSRR, 0, noNATS), 0, false},
		{measured(pathJSPublish, 0, noNATS), 0, false},
		{measured(pathHit, 0, noNATS), 100, true},
		{measured(pathFloor, 0, nil), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.row.name, func(t *testing.T) {
			t.Parallel()
			got, ok := rowCPU(tt.row)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("rowCPU = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestSumKept: a path's kept floors add up their p50 and CPU (the floor server's for the
// client's hop; server and caller for an internal crossing, a floor counted as often as
// the path crosses it), divided by the floor's; the CPU sum bounds the throughput; the
// measured row's own ratios stand beside them, the provider's as added over the fake; a
// missing floor row is named.
func TestSumKept(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond
	runs := map[string]pathRun{}
	for _, r := range []pathRun{
		measured(pathFloor, 2*ms, map[string]time.Duration{colClient: 9 * ms, colFloor: 4 * ms}),
		measured(pathConnectMTLS, 5*ms, map[string]time.Duration{colClient: 3 * ms, colFloor: 6 * ms}),
		measured(pathNATSRR, 3*ms, map[string]time.Duration{colClient: 1 * ms, colFloor: 2 * ms, colNATS: 5 * ms}),
		measured(pathJSPublish, 1*ms, map[string]time.Duration{colClient: 1 * ms, colNATS: 3 * ms}),
		measured(pathKeptHit, 4*ms, map[string]time.Duration{colClient: 9 * ms, colFloor: 5 * ms, colNATS: 3 * ms, colPostgres: 2 * ms}),
		measured(pathKeptProvider, 5*ms, map[string]time.Duration{colClient: 9 * ms, colFloor: 6 * ms, colNATS: 4 * ms, colPostgres: 2 * ms}),
		measured(pathMiss, 30*ms, map[string]time.Duration{"router": 40 * ms, colNATS: 20 * ms}),
		measured(pathHit, 6*ms, map[string]time.Duration{"router": 10 * ms}),
		measured(pathProvider, 20*ms, map[string]time.Duration{"router": 16 * ms}),
		measured(pathDirect, 4*ms, map[string]time.Duration{colFake: ms}),
	} {
		runs[r.name] = r
	}
	// c=16 throughput: the floor's 100 req/s, the paths' 10.
	for name, r := range runs {
		r.cN.rps = 10
		if name == pathFloor {
			r.cN.rps = 100
		}
		runs[name] = r
	}
	without := func(names ...string) map[string]pathRun {
		out := map[string]pathRun{}
		for k, v := range runs {
			if !slices.Contains(names, k) {
				out[k] = v
			}
		}
		return out
	}
	noNATSColumn := without()
	for _, name := range []string{pathNATSRR, pathJSPublish, pathKeptHit} {
		r := noNATSColumn[name]
		cpu := map[string]time.Duration{}
		for k, v := range r.cpu {
			if k != colNATS {
				cpu[k] = v
			}
		}
		r.cpu = cpu
		noNATSColumn[name] = r
	}
	path := func(name string) keptPath {
		i := slices.IndexFunc(keptPaths, func(k keptPath) bool { return k.row == name })
		if i < 0 {
			t.Fatalf("no kept path for %s", name)
		}
		return keptPaths[i]
	}
	tests := []struct {
		name string
		path keptPath
		runs map[string]pathRun
		want keptSum
	}{
		{
			// Before the reply: floor 2 + connect-mtls 5 + js-publish 1 + nats-rr 3 +
			// js-publish 1 = 12 ms; the Put after it (connect-mtls + js-publish) adds no
			// latency. CPU 4 + (6+3) + (3+1) + (2+5+1) + (3+1) = 29 ms, and the Put's (6+3)
			// + (3+1) = 13 ms: 42 ms; with the load generator's 9 ms per floor call, 2 CPUs
			// serve at most 2 / 51 ms = 39.2 req/s, 0.392 of the floor's 100. Its cache
			// calls batched: kept-provider 6 + 4 + 2, the lease's js-publish 3 + 1 and the
			// Put's 3 + 1 = 20 ms, 5× the floor's 4, bound 2 / (20 + 9) ms = 69 req/s.
			"miss", path(pathMiss), runs,
			keptSum{p50: 12 * ms, p50Ratio: 6, cpu: 42 * ms, cpuRatio: 10.5, cpuOK: true, measuredP50Ratio: 15, measuredCPURatio: 15,
				rpsRatio: 2.0 / 0.051 / 100, measuredRPSRatio: 0.1,
				batchedCPU: 20 * ms, batchedCPURatio: 5, batchedRPSRatio: 2.0 / 0.029 / 100},
		},
		{
			"miss without kept-provider", path(pathMiss), without(pathKeptProvider),
			keptSum{p50: 12 * ms, p50Ratio: 6, cpu: 42 * ms, cpuRatio: 10.5, cpuOK: true, measuredP50Ratio: 15, measuredCPURatio: 15,
				rpsRatio: 2.0 / 0.051 / 100, measuredRPSRatio: 0.1},
		},
		{
			// kept-hit, the same crossings in one process: p50 4 / 2, CPU (5 + 3 + 2) / 4
			// (its server, NATS, PostgreSQL storing its events; the load generator's not
			// counted, as for the floor).
			"hit", path(pathHit), runs,
			keptSum{p50: 3 * ms, p50Ratio: 1.5, cpu: 8 * ms, cpuRatio: 2, cpuOK: true, measuredP50Ratio: 3, measuredCPURatio: 2.5,
				rpsRatio: 2.0 / 0.017 / 100, measuredRPSRatio: 0.1, composedP50Ratio: 2, composedCPURatio: 2.5},
		},
		{
			// The provider row's p50 is what it adds to fake-direct: (20 - 4) / 2.
			"provider", path(pathProvider), runs,
			keptSum{p50: 6 * ms, p50Ratio: 3, cpu: 16 * ms, cpuRatio: 4, cpuOK: true, measuredP50Ratio: 8, measuredCPURatio: 4,
				rpsRatio: 2.0 / 0.025 / 100, measuredRPSRatio: 0.1, composedP50Ratio: 2.5, composedCPURatio: 3},
		},
		{
			"provider without fake-direct", path(pathProvider), without(pathDirect),
			keptSum{p50: 6 * ms, p50Ratio: 3, cpu: 16 * ms, cpuRatio: 4, cpuOK: true, measuredP50Ratio: 10, measuredCPURatio: 4,
				rpsRatio: 2.0 / 0.025 / 100, measuredRPSRatio: 0.1, composedP50Ratio: 2.5, composedCPURatio: 3},
		},
		{
			"measured row not run", path(pathHit), without(pathHit),
			keptSum{p50: 3 * ms, p50Ratio: 1.5, cpu: 8 * ms, cpuRatio: 2, cpuOK: true, rpsRatio: 2.0 / 0.017 / 100, composedP50Ratio: 2, composedCPURatio: 2.5},
		},
		{
			"NATS's CPU not measured", path(pathHit), noNATSColumn,
			keptSum{p50: 3 * ms, p50Ratio: 1.5, cpu: 5 * ms, measuredP50Ratio: 3, measuredCPURatio: 2.5, measuredRPSRatio: 0.1, composedP50Ratio: 2},
		},
		{
			"floors missing", path(pathMiss), without(pathConnectMTLS, pathJSPublish),
			keptSum{missing: []string{pathConnectMTLS, pathJSPublish}},
		},
		{
			"floor after the reply missing",
			keptPath{name: "x", row: pathHit, crossings: []keptCrossing{{pathFloor, "client"}}, afterReply: []keptCrossing{{pathNATSRR, "later"}}},
			without(pathNATSRR),
			keptSum{missing: []string{pathNATSRR}},
		},
		{
			"no floor", path(pathHit), without(pathFloor),
			keptSum{missing: []string{pathFloor}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := sumKept(tt.path, tt.runs, 2)
			if !slices.Equal(got.missing, tt.want.missing) {
				t.Fatalf("missing = %v, want %v", got.missing, tt.want.missing)
			}
			got.missing, tt.want.missing = nil, nil
			if got.cpuOK != tt.want.cpuOK {
				t.Fatalf("cpuOK = %v, want %v", got.cpuOK, tt.want.cpuOK)
			}
			if !tt.want.cpuOK {
				// The CPU sum of what was measured is not reported.
				got.cpu, tt.want.cpu = 0, 0
			}
			if !equalSums(got, tt.want) {
				t.Fatalf("sumKept = %+v\nwant        %+v", got, tt.want)
			}
		})
	}
}

func equalSums(a, b keptSum) bool {
	near := func(x, y float64) bool { return x-y < 1e-9 && y-x < 1e-9 }
	return a.p50 == b.p50 && a.cpu == b.cpu && a.cpuOK == b.cpuOK &&
		near(a.p50Ratio, b.p50Ratio) && near(a.cpuRatio, b.cpuRatio) &&
		near(a.measuredP50Ratio, b.measuredP50Ratio) && near(a.measuredCPURatio, b.measuredCPURatio) &&
		near(a.rpsRatio, b.rpsRatio) && near(a.measuredRPSRatio, b.measuredRPSRatio) &&
		near(a.composedP50Ratio, b.composedP50Ratio) && near(a.composedCPURatio, b.composedCPURatio) &&
		a.batchedCPU == b.batchedCPU && near(a.batchedCPURatio, b.batchedCPURatio) && near(a.batchedRPSRatio, b.batchedRPSRatio)
}

// TestKeptPathsUseFloorRows: every kept crossing is measured by a floor row the benchmark
// runs by default, and every kept path is compared with a path it runs.
func TestKeptPathsUseFloorRows(t *testing.T) {
	t.Parallel()
	for _, k := range keptPaths {
		if !slices.Contains(allPaths, k.row) {
			t.Errorf("%s: row %s is not a path", k.name, k.row)
		}
		if len(k.crossings) == 0 || k.crossings[0].floor != pathFloor {
			t.Errorf("%s: the first crossing must be the client's hop, the floor", k.name)
		}
		for _, c := range slices.Concat(k.crossings, k.afterReply) {
			if _, ok := floorColumns[c.floor]; !ok || !slices.Contains(allPaths, c.floor) {
				t.Errorf("%s: %s is not a floor row of the default paths", k.name, c.floor)
			}
		}
		if _, ok := floorColumns[k.composed]; k.composed != "" && (!ok || !slices.Contains(allPaths, k.composed)) {
			t.Errorf("%s: %s is not a floor row of the default paths", k.name, k.composed)
		}
		if b := k.batched; b != nil {
			rows := append([]string{b.composed}, floorRows(slices.Concat(b.crossings, b.afterReply))...)
			for _, row := range rows {
				if _, ok := floorColumns[row]; !ok || !slices.Contains(allPaths, row) {
					t.Errorf("%s batched: %s is not a floor row of the default paths", k.name, row)
				}
			}
		}
	}
}

// TestWithKeptFloors: the floor runs first; a kept path's floor rows join the run when its
// path runs and they can (not twice, not when asked for already, in their place then).
func TestWithKeptFloors(t *testing.T) {
	t.Parallel()
	all := func(string) bool { return true }
	noMTLS := func(p string) bool { return p != pathConnectMTLS }
	tests := []struct {
		name     string
		order    []string
		runnable func(string) bool
		want     []string
	}{
		{"floor alone", []string{pathFloor}, all, []string{pathFloor}},
		{"no kept path", []string{pathScrubbed}, all, []string{pathFloor, pathScrubbed}},
		{"hit", []string{pathHit}, all, []string{pathFloor, pathJSPublish, pathKeptHit, pathHit}},
		{"miss and hit", []string{pathMiss, pathHit}, all, []string{pathFloor, pathConnectMTLS, pathJSPublish, pathNATSRR, pathKeptProvider, pathKeptHit, pathMiss, pathHit}},
		{"asked for", []string{pathNATSRR, pathFloor, pathProvider, pathDirect}, all, []string{pathFloor, pathJSPublish, pathKeptProvider, pathNATSRR, pathProvider, pathDirect}},
		{"not runnable", []string{pathMiss}, noMTLS, []string{pathFloor, pathJSPublish, pathNATSRR, pathKeptProvider, pathMiss}},
		{"composed row not runnable", []string{pathHit}, func(p string) bool { return p != pathKeptHit }, []string{pathFloor, pathJSPublish, pathHit}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := withKeptFloors(tt.order, tt.runnable); !slices.Equal(got, tt.want) {
				t.Fatalf("withKeptFloors(%v) = %v, want %v", tt.order, got, tt.want)
			}
		})
	}
}
