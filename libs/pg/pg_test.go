package pg_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/parleyhq/parley/libs/pg"
	"github.com/parleyhq/parley/libs/pgtest"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give string
		want string
	}{
		{name: "empty", give: "", want: ""},
		{name: "url no password", give: "postgres://u@h:5432/db?sslmode=disable", want: "postgres://u@h:5432/db?sslmode=disable"},
		{name: "url password", give: "postgres://u:s3cr3t@h/db", want: "postgres://u:xxxxx@h/db"},
		{name: "postgresql scheme", give: "postgresql://u:s3cr3t@h/db", want: "postgresql://u:xxxxx@h/db"},
		{name: "url query password", give: "postgres://u@h/db?password=s3cr3t&sslmode=require", want: "postgres://u@h/db?password=xxxxx&sslmode=require"},
		{name: "url sslpassword", give: "postgres://u@h/db?sslpassword=s3cr3t", want: "postgres://u@h/db?sslpassword=xxxxx"},
		{name: "url encoded query key", give: "postgres://u@h/db?pass%77ord=s3cr3t", want: "postgres://u@h/db?password=xxxxx"},
		{name: "url bad escape", give: "postgres://u:s3cr3t@h/%zz", want: "postgres://[redacted]"},
		{name: "url bad query", give: "postgres://u@h/db?password=s3cr3t%zz", want: "postgres://u@h/db?[redacted]"},
		{name: "kv no password", give: "host=h dbname=db", want: "host=h dbname=db"},
		{name: "kv password", give: "host=h password=s3cr3t dbname=db", want: "host=h password=xxxxx dbname=db"},
		{name: "kv spaces around =", give: "host = h password = s3cr3t", want: "host=h password=xxxxx"},
		{name: "kv quoted password", give: `host=h password='s3 cr\'3t' user=u`, want: "host=h password=xxxxx user=u"},
		{name: "kv escaped space", give: `password=s3\ cr3t user=u`, want: "password=xxxxx user=u"},
		{name: "kv unterminated quote", give: "host=h password='s3cr3t", want: "[redacted]"},
		{name: "kv trailing backslash", give: `password=s3cr3t\`, want: "[redacted]"},
		{name: "kv no equals", give: "s3cr3t", want: "[redacted]"},
		{name: "upper-case scheme", give: "POSTGRES://u:s3cr3t@h/db", want: "[redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := pg.RedactURL(tt.give)
			require.Equal(t, tt.want, got)
			require.NotContains(t, got, "s3cr3t")
		})
	}
}

func TestConfigNeverLogsPassword(t *testing.T) {
	t.Parallel()
	cfg := pg.Config{URL: "postgres://parley:s3cr3t@db.internal:5432/audit", MaxConns: 4}

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "pg", cfg)
	require.Contains(t, buf.String(), `"pg":{"url":"postgres://parley:xxxxx@db.internal:5432/audit","max_conns":4}`)

	for _, s := range []string{buf.String(), fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		require.NotContains(t, s, "s3cr3t")
		require.Contains(t, s, "db.internal")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		give    pg.Config
		wantErr []string
	}{
		{name: "valid", give: pg.Config{URL: "postgres://u@h/db", MaxConns: 8}},
		{name: "zero max conns keeps default", give: pg.Config{URL: "postgres://u@h/db"}},
		{name: "missing url", give: pg.Config{MaxConns: 8}, wantErr: []string{"DATABASE_URL is required"}},
		{name: "negative max conns and bad url", give: pg.Config{URL: "postgres://u:s3cr3t@h:notaport/db", MaxConns: -1},
			wantErr: []string{"DATABASE_URL", "PG_MAX_CONNS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.give.Validate()
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.wantErr {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error(), "s3cr3t")
		})
	}
}

func TestNewPool(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		give         pg.Config
		wantMaxConns int32
	}{
		{name: "max conns applied", give: pg.Config{URL: "postgres://u@127.0.0.1:1/db", MaxConns: 3}, wantMaxConns: 3},
		{name: "url pool_max_conns overridden", give: pg.Config{URL: "postgres://u@127.0.0.1:1/db?pool_max_conns=20&pool_min_conns=10", MaxConns: 5}, wantMaxConns: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Nothing listens on port 1: NewPool must not connect.
			pool, err := pg.NewPool(t.Context(), tt.give)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			require.Equal(t, tt.wantMaxConns, pool.Config().MaxConns)
			require.LessOrEqual(t, pool.Config().MinConns, pool.Config().MaxConns)
		})
	}
}

func TestNewPoolErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		give    pg.Config
		wantErr string
	}{
		{name: "unparsable url", give: pg.Config{URL: "postgres://u:s3cr3t@h:notaport/db"}, wantErr: "parse DATABASE_URL"},
		{name: "negative max conns", give: pg.Config{URL: "postgres://u@h/db", MaxConns: -1}, wantErr: "PG_MAX_CONNS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := pg.NewPool(t.Context(), tt.give)
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), "s3cr3t")
		})
	}
}

func v1Migrations() fstest.MapFS {
	return fstest.MapFS{
		"001_items.sql": {Data: []byte("CREATE TABLE items (id int PRIMARY KEY);")},
	}
}

func v2Migrations() fstest.MapFS {
	m := v1Migrations()
	m["002_items_name.sql"] = &fstest.MapFile{Data: []byte("ALTER TABLE items ADD COLUMN name text NOT NULL DEFAULT '';")}
	return m
}

func TestMigrateConcurrentReplicas(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t, v1Migrations())
	ctx := t.Context()

	// Several replicas start at once; tern's advisory lock lets one apply 002 and the rest
	// find nothing to do.
	const replicas = 4
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() { errs[i] = pg.Migrate(ctx, pool, v2Migrations()) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}

	var version int
	require.NoError(t, pool.QueryRow(ctx, "SELECT version FROM "+pg.VersionTable).Scan(&version))
	require.Equal(t, 2, version)
	_, err := pool.Exec(ctx, "INSERT INTO items (id, name) VALUES (1, 'x')")
	require.NoError(t, err)

	// Running again is a no-op.
	require.NoError(t, pg.Migrate(ctx, pool, v2Migrations()))
}

func TestMigrateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		give    fstest.MapFS
		wantErr string
	}{
		{name: "no migrations", give: fstest.MapFS{"README": {Data: []byte("x")}}, wantErr: "migrate: load migrations"},
		{name: "bad sql", give: fstest.MapFS{"002_bad.sql": {Data: []byte("CREATE TABLE (;")}, "001_items.sql": v1Migrations()["001_items.sql"]}, wantErr: "002_bad.sql"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := pgtest.NewDB(t, v1Migrations())
			require.ErrorContains(t, pg.Migrate(t.Context(), pool, tt.give), tt.wantErr)
		})
	}
}

func TestModuleLifecycle(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)

	var pool *pgxpool.Pool
	app := fxtest.New(t,
		fx.Supply(pg.Config{URL: dsn, MaxConns: 2}),
		pg.Module,
		fx.Populate(&pool),
	)
	app.RequireStart()
	var one int
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT 1").Scan(&one))
	require.Equal(t, 1, one)
	require.EqualValues(t, 2, pool.Config().MaxConns)
	app.RequireStop()

	// OnStop closed the pool.
	require.Error(t, pool.Ping(t.Context()))
}

func TestModuleUnreachableFailsStart(t *testing.T) {
	t.Parallel()
	app := fx.New(
		fx.NopLogger,
		fx.Supply(pg.Config{URL: "postgres://parley:s3cr3t@127.0.0.1:1/audit?connect_timeout=5"}),
		pg.Module,
		fx.Invoke(func(*pgxpool.Pool) {}),
	)
	require.NoError(t, app.Err())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := app.Start(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), "database unreachable")
	require.Contains(t, err.Error(), "DATABASE_URL")
	require.NotContains(t, err.Error(), "s3cr3t")
	require.NoError(t, app.Stop(ctx))
}

func TestModuleValidates(t *testing.T) {
	t.Parallel()
	require.NoError(t, fx.ValidateApp(fx.Supply(pg.Config{URL: "postgres://u@h/db"}), pg.Module,
		fx.Invoke(func(*pgxpool.Pool) {})))
}
