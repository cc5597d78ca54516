package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseWorkers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []workerPool
		wantErr string
	}{
		{in: "", want: nil},
		{in: "echo=2", want: []workerPool{{"echo", 2}}},
		{in: "echo=1, gpt-4o=4", want: []workerPool{{"echo", 1}, {"gpt-4o", 4}}},
		{in: "echo", wantErr: "is not component=N"},
		{in: "=2", wantErr: "is not component=N"},
		{in: "echo=0", wantErr: "positive"},
		{in: "echo=two", wantErr: "positive"},
		{in: "parley.*=1", wantErr: "not a component name"},
		{in: "echo=1,echo=2", wantErr: "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := parseWorkers(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
