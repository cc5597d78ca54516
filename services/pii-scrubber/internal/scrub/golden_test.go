package scrub

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestGolden scrubs testdata/corpus.txt, Dapr's examples and the trap
// categories of pii.md §8, and compares the outputs and findings with
// testdata/corpus.golden, so behaviour changes show up in review.
func TestGolden(t *testing.T) {
	t.Parallel()
	in, err := os.Open(filepath.Join("testdata", "corpus.txt"))
	require.NoError(t, err)
	defer func() { _ = in.Close() }()

	s := mustNew(t)
	var got strings.Builder
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		line := lines.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		res, err := s.Scrub(line, nil)
		require.NoError(t, err)
		checkResult(t, s, line, nil, res)
		fmt.Fprintf(&got, "> %s\n< %s\n", line, res.Text)
		for _, f := range res.Findings {
			fmt.Fprintf(&got, "  %s %q %.2f\n", f.Entity, line[f.Start:f.End], f.Score)
		}
	}
	require.NoError(t, lines.Err())

	golden := filepath.Join("testdata", "corpus.golden")
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(got.String()), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), got.String())
}
