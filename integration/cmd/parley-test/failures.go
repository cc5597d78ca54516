package main

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// maxLine bounds one line of `go test` output that the copy reads at once; a longer line
// is copied in pieces and only its first piece is looked at.
const maxLine = 1 << 20

// copyFailures copies `go test` output from r to w unchanged and returns the lines that
// name what failed: each failing test ("--- FAIL: TestX"), each failing package
// ("FAIL\tpkg"), each panic's first line and each reason a stack.Suite gives for failing
// ("SUITE FAIL: ..."). A CI log shows only its tail, and a failing package's output can
// be long (the stack's services print their logs when a test fails), so these lines are
// printed again at the end.
func copyFailures(r io.Reader, w io.Writer) ([]string, error) {
	br := bufio.NewReaderSize(r, maxLine)
	var failed []string
	atLineStart := true
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if atLineStart && namesFailure(line) {
				failed = append(failed, strings.TrimRight(string(line), "\r\n"))
			}
			if _, werr := w.Write(line); werr != nil {
				return failed, werr
			}
			atLineStart = line[len(line)-1] == '\n'
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return failed, nil
		case err != nil:
			return failed, err
		}
	}
}

// namesFailure reports whether a line of `go test` output names a failing test, a
// failing package, a panic or a failing suite.
func namesFailure(line []byte) bool {
	s := strings.TrimLeft(string(line), " \t")
	return strings.HasPrefix(s, "--- FAIL: ") ||
		strings.HasPrefix(string(line), "FAIL\t") ||
		strings.HasPrefix(string(line), "panic: ") ||
		strings.HasPrefix(string(line), "SUITE FAIL: ")
}
