package stack

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFindChromiumPath: CHROMIUM_PATH wins when it names an executable and is refused when it
// does not; nothing is installed for it.
func TestFindChromiumPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "browser")
	require.NoError(t, os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755))
	plain := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(plain, []byte("x"), 0o644))
	tests := []struct {
		name, path, wantErr string
	}{
		{name: "executable", path: exe},
		{name: "not executable", path: plain, wantErr: "is not an executable"},
		{name: "missing", path: filepath.Join(dir, "gone"), wantErr: "is not an executable"},
		{name: "folder", path: dir, wantErr: "is not an executable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CHROMIUM_PATH", tt.path)
			got, err := FindChromium(t.Context(), true, io.Discard)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.path, got)
		})
	}
}
