package maintenance_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/parleyhq/parley/libs/pgtest"
	"github.com/parleyhq/parley/services/audit/internal/maintenance"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var now = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func config() maintenance.Config {
	return maintenance.Config{
		Interval: time.Hour, Ahead: 2, Retention: 5 * 24 * time.Hour, UsageRetention: 30 * 24 * time.Hour,
		SearchIndexDelay: time.Hour, Now: func() time.Time { return now },
	}
}

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestJobRunsAtStartAndOnTrigger(t *testing.T) {
	t.Parallel()
	st := store.New(pgtest.NewDB(t, store.Migrations()))
	reg := prometheus.NewRegistry()
	j, err := maintenance.New(st, config(), logger(t), reg)
	require.NoError(t, err)
	require.NoError(t, j.Start(t.Context()))
	t.Cleanup(func() { require.NoError(t, j.Stop(context.WithoutCancel(t.Context()))) })

	runs := func() float64 { return counter(t, reg, "parley_audit_maintenance_runs_total", "ok") }
	require.Eventually(t, func() bool { return runs() == 1 }, 10*time.Second, 10*time.Millisecond)
	days, err := st.Partitions(t.Context())
	require.NoError(t, err)
	require.Len(t, days, 3, "today and two days ahead")
	require.InDelta(t, 3, counter(t, reg, "parley_audit_partitions_created_total", ""), 0)

	j.Trigger()
	require.Eventually(t, func() bool { return runs() == 2 }, 10*time.Second, 10*time.Millisecond)
	require.InDelta(t, 3, counter(t, reg, "parley_audit_partitions_created_total", ""), 0, "nothing new to create")
}

func TestJobStopsWhileIdleOrBeforeStart(t *testing.T) {
	t.Parallel()
	st := store.New(pgtest.NewDB(t, store.Migrations()))
	j, err := maintenance.New(st, config(), logger(t), prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, j.Stop(t.Context()), "stop before start is a no-op")
	require.NoError(t, j.Start(t.Context()))
	require.Error(t, j.Start(t.Context()), "a second start")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.NoError(t, j.Stop(ctx))
	require.NoError(t, j.Stop(ctx), "a second stop")
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*maintenance.Config)
	}{
		{name: "zero interval", modify: func(c *maintenance.Config) { c.Interval = 0 }},
		{name: "negative days ahead", modify: func(c *maintenance.Config) { c.Ahead = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := config()
			tt.modify(&cfg)
			_, err := maintenance.New(nil, cfg, logger(t), prometheus.NewRegistry())
			require.Error(t, err)
		})
	}
}

// counter returns the value of counter name; label, when not empty, is the value of its
// one label.
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}
