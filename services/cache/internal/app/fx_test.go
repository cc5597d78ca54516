package app_test

import (
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/services/cache/internal/app"
)

func TestValidateApp(t *testing.T) {
	t.Parallel()
	require.NoError(t, fx.ValidateApp(platform.Module("cache"), app.Module))
}

func TestConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    app.Config
		wantErr []string // each must appear in the error
	}{
		{
			name: "defaults",
			env:  map[string]string{},
			want: app.Config{Bucket: "parley_cache", MaxEntryBytes: 1 << 20, MaxBucketBytes: 1 << 30, Replicas: 1, L1MaxBytes: 64 << 20, MaxLeaseTTL: 2 * time.Minute},
		},
		{
			name: "overrides",
			env: map[string]string{
				"CACHE_BUCKET": "tenant-a_cache", "CACHE_MAX_ENTRY_BYTES": "2048",
				"CACHE_MAX_BUCKET_BYTES": "1048576", "CACHE_REPLICAS": "3",
				"CACHE_L1_MAX_BYTES": "0", "CACHE_MAX_LEASE_TTL": "30s",
			},
			want: app.Config{Bucket: "tenant-a_cache", MaxEntryBytes: 2048, MaxBucketBytes: 1 << 20, Replicas: 3, MaxLeaseTTL: 30 * time.Second},
		},
		{name: "zero entry size", env: map[string]string{"CACHE_MAX_ENTRY_BYTES": "0"}, wantErr: []string{"CACHE_MAX_ENTRY_BYTES"}},
		{name: "negative bucket size", env: map[string]string{"CACHE_MAX_BUCKET_BYTES": "-1"}, wantErr: []string{"CACHE_MAX_BUCKET_BYTES"}},
		{name: "zero replicas", env: map[string]string{"CACHE_REPLICAS": "0"}, wantErr: []string{"CACHE_REPLICAS"}},
		{name: "too many replicas", env: map[string]string{"CACHE_REPLICAS": "6"}, wantErr: []string{"CACHE_REPLICAS"}},
		{name: "bucket with a dot", env: map[string]string{"CACHE_BUCKET": "a.b"}, wantErr: []string{"CACHE_BUCKET"}},
		{name: "bucket smaller than an entry", env: map[string]string{"CACHE_MAX_ENTRY_BYTES": "4096", "CACHE_MAX_BUCKET_BYTES": "1024"}, wantErr: []string{"CACHE_MAX_BUCKET_BYTES"}},
		{name: "not a number", env: map[string]string{"CACHE_REPLICAS": "two"}, wantErr: []string{"CACHE_REPLICAS"}},
		{name: "negative l1", env: map[string]string{"CACHE_L1_MAX_BYTES": "-1"}, wantErr: []string{"CACHE_L1_MAX_BYTES"}},
		{name: "lease under a second", env: map[string]string{"CACHE_MAX_LEASE_TTL": "500ms"}, wantErr: []string{"CACHE_MAX_LEASE_TTL"}},
		{name: "lease over an hour", env: map[string]string{"CACHE_MAX_LEASE_TTL": "2h"}, wantErr: []string{"CACHE_MAX_LEASE_TTL"}},
		{
			name:    "every problem at once",
			env:     map[string]string{"CACHE_MAX_ENTRY_BYTES": "-5", "CACHE_MAX_BUCKET_BYTES": "0", "CACHE_REPLICAS": "-1"},
			wantErr: []string{"CACHE_MAX_ENTRY_BYTES", "CACHE_MAX_BUCKET_BYTES", "CACHE_REPLICAS"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := config.LoadFrom[app.Config](t.Context(), envconfig.MapLookuper(tt.env))
			if len(tt.wantErr) > 0 {
				require.Error(t, err)
				for _, s := range tt.wantErr {
					require.ErrorContains(t, err, s)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
