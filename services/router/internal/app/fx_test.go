package app_test

import (
	"testing"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/services/router/internal/app"
)

func TestGraph(t *testing.T) {
	t.Parallel()
	require.NoError(t, fx.ValidateApp(platform.Module("router"), app.Module))
}

func TestConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "defaults", env: map[string]string{}},
		{name: "api token", env: map[string]string{"DAPR_API_TOKEN": "s3cret"}},
		{name: "bad audit mode", env: map[string]string{"AUDIT_MODE": "sometimes"}, wantErr: "AUDIT_MODE must be required or best-effort"},
		{name: "bad duration", env: map[string]string{"ROUTER_REQUEST_TIMEOUT": "soon"}, wantErr: "ROUTER_REQUEST_TIMEOUT"},
		{name: "zero attempts", env: map[string]string{"ROUTER_DISPATCH_ATTEMPTS": "0"}, wantErr: "ROUTER_DISPATCH_ATTEMPTS must be positive"},
		{name: "stream window too small", env: map[string]string{"ROUTER_STREAM_WINDOW": "1"}, wantErr: "ROUTER_STREAM_WINDOW must be between 2 and 1024, got 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.LoadFrom[app.Config](t.Context(), envconfig.MapLookuper(tt.env))
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}
