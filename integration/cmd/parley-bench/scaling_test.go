package main

import "testing"

// TestParseCPULine: busy is every field of the "cpu" line but idle and iowait; guest
// times, already inside user and nice, are not counted twice.
func TestParseCPULine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, line string
		want       cpuTotals
		err        bool
	}{
		{"full", "cpu  100 5 50 800 20 1 2 3 40 0", cpuTotals{busy: 161, total: 981}, false},
		{"old kernel, four fields", "cpu 10 0 10 80", cpuTotals{busy: 20, total: 100}, false},
		{"per-cpu line", "cpu0 1 2 3 4 5", cpuTotals{}, true},
		{"too short", "cpu 1 2", cpuTotals{}, true},
		{"not a number", "cpu 1 x 3 4 5", cpuTotals{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseCPULine(tt.line)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if share := (cpuTotals{busy: 150, total: 300}).since(cpuTotals{busy: 100, total: 200}); share != 0.5 {
		t.Fatalf("since = %v, want 0.5", share)
	}
}
