package main

import (
	"os"
	"testing"
	"time"
)

// TestParseStat: utime and stime are fields 14 and 15, counted after the command name,
// which may hold spaces and parentheses.
func TestParseStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, line string
		want       time.Duration
		err        bool
	}{
		{"plain", "4242 (router) S 1 4242 4242 0 -1 4194560 1203 0 0 0 250 75 0 0 20 0 9 0 1234 0 0", 3250 * time.Millisecond, false},
		{"spaces and parentheses in the name", "7 (a b) c)) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 0 0", 70 * time.Millisecond, false},
		{"no name", "4242 router S 1", 0, true},
		{"too short", "4242 (router) S 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 4 0 0 20 0 1 0 1 0 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStat(tt.line)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCPUTimeOfThisProcess: this process's CPU time as /proc reports it grows while it
// works (polled, no clock assertion).
func TestCPUTimeOfThisProcess(t *testing.T) {
	t.Parallel()
	before, err := cpuTime(os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	x := 0
	for i := 0; ; i++ {
		x += i * i
		if i%1_000_000 == 0 {
			now, err := cpuTime(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			if now > before {
				break
			}
		}
	}
	_ = x
}
