package rpcclient_test

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/identity/identitytest"
	"github.com/parleyhq/parley/libs/rpcclient"
	"github.com/parleyhq/parley/libs/telemetry"
)

func TestCheckURL(t *testing.T) {
	t.Parallel()
	off, err := identity.NewSource(identity.Config{Mode: identity.ModeOff}, "router", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	tests := []struct {
		name    string
		id      *identity.Source
		url     string
		wantErr string
	}{
		{name: "https under mTLS", id: identitytest.New(t).Source(identity.Router), url: "https://cache:3520"},
		{name: "http under mTLS", id: identitytest.New(t).Source(identity.Router), url: "http://cache:3520", wantErr: "ROUTER_CACHE_URL must be a https:// URL while INTERNAL_TLS=on"},
		{name: "http when off", id: off, url: "http://127.0.0.1:3520"},
		{name: "https when off", id: off, url: "https://127.0.0.1:3520", wantErr: "must be a http:// URL while INTERNAL_TLS=off"},
		{name: "no host", id: off, url: "http://", wantErr: "ROUTER_CACHE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tel, err := telemetry.New(t.Context(), "router", telemetry.Config{SampleRatio: 1})
			require.NoError(t, err)
			f, err := rpcclient.New(tel, tt.id)
			require.NoError(t, err)
			err = f.CheckURL("ROUTER_CACHE_URL", tt.url)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}
