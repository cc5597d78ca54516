package app_test

import (
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/services/audit/internal/app"
)

func TestValidateApp(t *testing.T) {
	t.Parallel()
	require.NoError(t, fx.ValidateApp(platform.Module("audit"), app.Module))
}

func TestConfig(t *testing.T) {
	t.Parallel()
	const dayLen = 24 * time.Hour
	defaults := app.Config{
		Consumer: "parley-audit", BatchMaxRows: 500, BatchMaxBytes: 4 << 20, BatchMaxWait: 200 * time.Millisecond,
		MaxDeliver: 5, AckWait: 30 * time.Second, StreamReplicas: 1,
		Retention: app.Period(30 * dayLen), UsageRetention: app.Period(400 * dayLen), PartitionsAhead: 7,
		MaintenanceInterval: time.Hour, SearchIndex: "sealed", SearchIndexDelay: time.Hour, PageMaxBytes: 4 << 20,
		ScrubberURL: "https://127.0.0.1:3510",
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    app.Config
		wantErr []string // each must appear in the error
	}{
		{name: "defaults", env: map[string]string{}, want: defaults},
		{
			name: "overrides",
			env: map[string]string{
				"AUDIT_CONSUMER": "audit_b-2", "AUDIT_BATCH_MAX_ROWS": "2000", "AUDIT_BATCH_MAX_BYTES": "8388608",
				"AUDIT_BATCH_MAX_WAIT": "1s", "AUDIT_MAX_DELIVER": "10", "AUDIT_ACK_WAIT": "1m", "AUDIT_STREAM_REPLICAS": "3",
				"AUDIT_RETENTION": "2160h", "AUDIT_USAGE_RETENTION": "0", "AUDIT_PARTITIONS_AHEAD": "3",
				"AUDIT_MAINTENANCE_INTERVAL": "10m", "AUDIT_SEARCH_INDEX": "live", "AUDIT_SEARCH_INDEX_DELAY": "0s",
				"AUDIT_PAGE_MAX_BYTES": "65536", "AUDIT_SEAL_KEY_FILE": "/k/seal.pem", "AUDIT_SEAL_OLD_KEY_FILES": "/k/old1.pem,/k/old2.pem",
				"AUDIT_SCRUBBER_URL": "http://scrubber:3510",
			},
			want: app.Config{
				Consumer: "audit_b-2", BatchMaxRows: 2000, BatchMaxBytes: 8 << 20, BatchMaxWait: time.Second,
				MaxDeliver: 10, AckWait: time.Minute, StreamReplicas: 3,
				Retention: app.Period(90 * dayLen), UsageRetention: 0, PartitionsAhead: 3,
				MaintenanceInterval: 10 * time.Minute, SearchIndex: "live", SearchIndexDelay: 0, PageMaxBytes: 1 << 16,
				SealKeyFile: "/k/seal.pem", SealOldKeyFiles: []string{"/k/old1.pem", "/k/old2.pem"}, ScrubberURL: "http://scrubber:3510",
			},
		},
		{name: "empty consumer", env: map[string]string{"AUDIT_CONSUMER": ""}, wantErr: []string{"AUDIT_CONSUMER"}},
		{name: "consumer with a dot", env: map[string]string{"AUDIT_CONSUMER": "a.b"}, wantErr: []string{"AUDIT_CONSUMER"}},
		{name: "zero rows", env: map[string]string{"AUDIT_BATCH_MAX_ROWS": "0"}, wantErr: []string{"AUDIT_BATCH_MAX_ROWS"}},
		{name: "too many rows", env: map[string]string{"AUDIT_BATCH_MAX_ROWS": "100001"}, wantErr: []string{"AUDIT_BATCH_MAX_ROWS"}},
		{name: "negative bytes", env: map[string]string{"AUDIT_BATCH_MAX_BYTES": "-1"}, wantErr: []string{"AUDIT_BATCH_MAX_BYTES"}},
		{name: "zero wait", env: map[string]string{"AUDIT_BATCH_MAX_WAIT": "0s"}, wantErr: []string{"AUDIT_BATCH_MAX_WAIT"}},
		{name: "wait not a duration", env: map[string]string{"AUDIT_BATCH_MAX_WAIT": "soon"}, wantErr: []string{"AUDIT_BATCH_MAX_WAIT"}},
		{name: "zero page bytes", env: map[string]string{"AUDIT_PAGE_MAX_BYTES": "0"}, wantErr: []string{"AUDIT_PAGE_MAX_BYTES"}},
		{name: "zero deliveries", env: map[string]string{"AUDIT_MAX_DELIVER": "0"}, wantErr: []string{"AUDIT_MAX_DELIVER"}},
		{name: "short ack wait", env: map[string]string{"AUDIT_ACK_WAIT": "500ms"}, wantErr: []string{"AUDIT_ACK_WAIT"}},
		{
			name:    "batch wait close to ack wait",
			env:     map[string]string{"AUDIT_BATCH_MAX_WAIT": "10s", "AUDIT_ACK_WAIT": "15s"},
			wantErr: []string{"AUDIT_BATCH_MAX_WAIT", "AUDIT_ACK_WAIT"},
		},
		{name: "zero replicas", env: map[string]string{"AUDIT_STREAM_REPLICAS": "0"}, wantErr: []string{"AUDIT_STREAM_REPLICAS"}},
		{name: "too many replicas", env: map[string]string{"AUDIT_STREAM_REPLICAS": "7"}, wantErr: []string{"AUDIT_STREAM_REPLICAS"}},
		{name: "retention in hours under a day", env: map[string]string{"AUDIT_RETENTION": "12h"}, wantErr: []string{"AUDIT_RETENTION"}},
		{name: "retention not a period", env: map[string]string{"AUDIT_RETENTION": "a month"}, wantErr: []string{"AUDIT_RETENTION"}},
		{name: "negative usage retention", env: map[string]string{"AUDIT_USAGE_RETENTION": "-24h"}, wantErr: []string{"AUDIT_USAGE_RETENTION"}},
		{name: "no partitions ahead", env: map[string]string{"AUDIT_PARTITIONS_AHEAD": "0"}, wantErr: []string{"AUDIT_PARTITIONS_AHEAD"}},
		{name: "maintenance too often", env: map[string]string{"AUDIT_MAINTENANCE_INTERVAL": "10ms"}, wantErr: []string{"AUDIT_MAINTENANCE_INTERVAL"}},
		{name: "unknown search index mode", env: map[string]string{"AUDIT_SEARCH_INDEX": "never"}, wantErr: []string{"AUDIT_SEARCH_INDEX"}},
		{name: "negative search index delay", env: map[string]string{"AUDIT_SEARCH_INDEX_DELAY": "-1s"}, wantErr: []string{"AUDIT_SEARCH_INDEX_DELAY"}},
		{name: "old keys without a current one", env: map[string]string{"AUDIT_SEAL_OLD_KEY_FILES": "/k/old.pem"}, wantErr: []string{"AUDIT_SEAL_OLD_KEY_FILES"}},
		{
			name:    "every problem at once",
			env:     map[string]string{"AUDIT_BATCH_MAX_ROWS": "-1", "AUDIT_MAX_DELIVER": "-1", "AUDIT_STREAM_REPLICAS": "9"},
			wantErr: []string{"AUDIT_BATCH_MAX_ROWS", "AUDIT_MAX_DELIVER", "AUDIT_STREAM_REPLICAS"},
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
