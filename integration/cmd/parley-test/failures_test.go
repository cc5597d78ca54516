package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCopyFailures(t *testing.T) {
	long := strings.Repeat("x", maxLine+10)
	tests := []struct {
		name   string
		in     string
		failed []string
	}{
		{
			name: "all pass",
			in:   "ok  \tgithub.com/p/a\t1.0s\nok  \tgithub.com/p/b\t2.0s\n",
		},
		{
			name: "a failing test and its package",
			in: "--- FAIL: TestNATSNodeLoss (40.12s)\n    natsnodeloss_test.go:80: stream lost\n" +
				"cache | {\"msg\":\"stopped\"}\nFAIL\nFAIL\tgithub.com/p/integration\t190.190s\nok  \tgithub.com/p/b\t2.0s\n",
			failed: []string{"--- FAIL: TestNATSNodeLoss (40.12s)", "FAIL\tgithub.com/p/integration\t190.190s"},
		},
		{
			name: "a failing subtest is indented",
			in:   "--- FAIL: TestFlow (1.00s)\n    --- FAIL: TestFlow/hit (0.50s)\nFAIL\tgithub.com/p/x\t1.1s\n",
			failed: []string{"--- FAIL: TestFlow (1.00s)", "    --- FAIL: TestFlow/hit (0.50s)",
				"FAIL\tgithub.com/p/x\t1.1s"},
		},
		{
			name:   "a panic",
			in:     "panic: test timed out after 15m0s\n\trunning tests:\nFAIL\tgithub.com/p/x\t900.1s\n",
			failed: []string{"panic: test timed out after 15m0s", "FAIL\tgithub.com/p/x\t900.1s"},
		},
		{
			name: "a suite's reasons after its service logs",
			in: "---- service logs (tail) ----\naudit | stopped\n---- end of service logs ----\n" +
				"SUITE FAIL: integration: a service hit a NATS permissions violation (see the service logs)\nFAIL\tgithub.com/p/integration\t190.2s\n",
			failed: []string{"SUITE FAIL: integration: a service hit a NATS permissions violation (see the service logs)",
				"FAIL\tgithub.com/p/integration\t190.2s"},
		},
		{
			name:   "a build failure",
			in:     "FAIL\tgithub.com/p/x [build failed]\n",
			failed: []string{"FAIL\tgithub.com/p/x [build failed]"},
		},
		{
			name: "words inside a log line are not failures",
			in:   "    x_test.go:1: want --- FAIL: here\naudit | FAIL\tnot at the start\n",
		},
		{
			name:   "a line longer than the buffer is copied whole and its tail not matched",
			in:     long + "--- FAIL: TestHidden\n--- FAIL: TestSeen (0.01s)\n",
			failed: []string{"--- FAIL: TestSeen (0.01s)"},
		},
		{
			name:   "no newline at the end",
			in:     "FAIL\tgithub.com/p/x\t1.0s",
			failed: []string{"FAIL\tgithub.com/p/x\t1.0s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			failed, err := copyFailures(strings.NewReader(tt.in), &out)
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.in {
				t.Errorf("copy differs: got %d bytes, want %d", out.Len(), len(tt.in))
			}
			if strings.Join(failed, "|") != strings.Join(tt.failed, "|") {
				t.Errorf("failed = %q, want %q", failed, tt.failed)
			}
		})
	}
}
