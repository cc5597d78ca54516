package bus_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/bus"
)

func TestCheckName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give    string
		wantErr string
	}{
		{"parley_cache", ""},
		{"parley-audit-2", ""},
		{"A", ""},
		{"", "must not be empty"},
		{"a.b", "may only contain"},
		{"a*", "may only contain"},
		{"a>", "may only contain"},
		{"a b", "may only contain"},
		{"a/b", "may only contain"},
		{"é", "may only contain"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			t.Parallel()
			err := bus.CheckName(tt.give)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}
