package stack

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSmallMachineGOMAXPROCS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cpus   int
		set    string
		want   string
		wantOK bool
	}{
		{cpus: 1, want: "1", wantOK: true},
		{cpus: 2, want: "1", wantOK: true},
		{cpus: 2, set: "2"},
		{cpus: 4},
		{cpus: 16, set: "1"},
	}
	for _, tt := range tests {
		got, ok := SmallMachineGOMAXPROCS(tt.cpus, tt.set)
		require.Equal(t, tt.wantOK, ok, "cpus %d set %q", tt.cpus, tt.set)
		require.Equal(t, tt.want, got, "cpus %d set %q", tt.cpus, tt.set)
	}
}
