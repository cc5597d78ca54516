package cachepurge

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNotice(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		n      Notice
		covers map[[2]string]bool
	}{
		{"tenant", Notice{Tenant: "t"}, map[[2]string]bool{{"t", "a"}: true, {"t", "b"}: true, {"u", "a"}: false}},
		{"component", Notice{Component: "a"}, map[[2]string]bool{{"t", "a"}: true, {"u", "a"}: true, {"t", "b"}: false}},
		{"both", Notice{Tenant: "t", Component: "a"}, map[[2]string]bool{{"t", "a"}: true, {"u", "a"}: false, {"t", "b"}: false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := tt.n.Encode()
			require.NoError(t, err)
			got, err := Decode(b)
			require.NoError(t, err)
			require.Equal(t, tt.n, got)
			for e, want := range tt.covers {
				require.Equal(t, want, got.Covers(e[0], e[1]), "%v", e)
			}
		})
	}
	_, err := Notice{}.Encode()
	require.ErrorIs(t, err, ErrEmpty)
	_, err = Decode([]byte(`{}`))
	require.ErrorIs(t, err, ErrEmpty)
	_, err = Decode([]byte(`not json`))
	require.Error(t, err)
}
