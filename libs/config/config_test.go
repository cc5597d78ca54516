package config_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/config"
)

type sample struct {
	Name    string        `env:"SAMPLE_NAME, required"`
	Timeout time.Duration `env:"SAMPLE_TIMEOUT, default=2s"`
	Max     int           `env:"SAMPLE_MAX, default=3"`
}

func (s *sample) Validate() error {
	if s.Max < 1 {
		return errors.New("SAMPLE_MAX must be at least 1")
	}
	return nil
}

func TestLoadFrom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    sample
		wantErr string
	}{
		{name: "defaults", env: map[string]string{"SAMPLE_NAME": "x"}, want: sample{Name: "x", Timeout: 2 * time.Second, Max: 3}},
		{name: "set", env: map[string]string{"SAMPLE_NAME": "y", "SAMPLE_TIMEOUT": "5m", "SAMPLE_MAX": "9"}, want: sample{Name: "y", Timeout: 5 * time.Minute, Max: 9}},
		{name: "missing required names the variable", env: map[string]string{}, wantErr: "SAMPLE_NAME"},
		{name: "bad value names the variable", env: map[string]string{"SAMPLE_NAME": "x", "SAMPLE_TIMEOUT": "soon"}, wantErr: "SAMPLE_TIMEOUT"},
		{name: "validate runs", env: map[string]string{"SAMPLE_NAME": "x", "SAMPLE_MAX": "0"}, wantErr: "SAMPLE_MAX must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := config.LoadFrom[sample](t.Context(), envconfig.MapLookuper(tt.env))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
