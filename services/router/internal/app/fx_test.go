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
		{name: "api keys", env: map[string]string{"ROUTER_API_KEYS_FILE": "/k.yaml", "ROUTER_API_KEY_PEPPER_FILE": "/p"}},
		{name: "api keys without a pepper", env: map[string]string{"ROUTER_API_KEYS_FILE": "/k.yaml"}, wantErr: "ROUTER_API_KEYS_FILE needs ROUTER_API_KEY_PEPPER or ROUTER_API_KEY_PEPPER_FILE"},
		{name: "two peppers", env: map[string]string{"ROUTER_API_KEYS_FILE": "/k.yaml", "ROUTER_API_KEY_PEPPER": "0123456789abcdef", "ROUTER_API_KEY_PEPPER_FILE": "/p"}, wantErr: "set one of"},
		{name: "zero reload interval", env: map[string]string{"ROUTER_API_KEYS_RELOAD_INTERVAL": "0s"}, wantErr: "ROUTER_API_KEYS_RELOAD_INTERVAL must be positive"},
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
