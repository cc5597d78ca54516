// Package pg builds the PostgreSQL connection pool every Parley service shares, runs embedded
// tern migrations, and ties the pool to the fx lifecycle: the pool is pinged on start, so an
// unreachable database fails start-up, and closed on stop, after everything that uses it.
package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
	"go.uber.org/fx"
)

// VersionTable is the table in which tern records the schema version.
const VersionTable = "schema_version"

// Config configures the pool. It is loaded from the environment elsewhere (libs/config);
// this package never reads the environment.
type Config struct {
	// URL is a libpq connection string, URL (postgres://...) or keyword/value form.
	URL string `env:"DATABASE_URL, required"`
	// MaxConns caps the pool size; zero keeps pgx's default.
	MaxConns int32 `env:"PG_MAX_CONNS, default=8"`
}

var _ slog.LogValuer = Config{}

// Validate reports every problem in the configuration, naming the variable at fault.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("DATABASE_URL is required"))
	} else if _, err := pgxpool.ParseConfig(c.URL); err != nil {
		// pgconn redacts passwords in ParseConfigError's text.
		errs = append(errs, fmt.Errorf("DATABASE_URL: %w", err))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("PG_MAX_CONNS must not be negative, got %d", c.MaxConns))
	}
	return errors.Join(errs...)
}

// LogValue implements slog.LogValuer so the password in URL never reaches a log.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", RedactURL(c.URL)),
		slog.Int("max_conns", int(c.MaxConns)),
	)
}

// String returns the configuration with the password masked, so fmt verbs cannot leak it
// either.
func (c Config) String() string {
	return fmt.Sprintf("{URL:%s MaxConns:%d}", RedactURL(c.URL), c.MaxConns)
}

// GoString masks the password for the %#v verb.
func (c Config) GoString() string {
	return fmt.Sprintf("pg.Config{URL:%q, MaxConns:%d}", RedactURL(c.URL), c.MaxConns)
}

// NewPool parses cfg and builds a pool. Like pgxpool.NewWithConfig it does not connect:
// call Ping (Module does, in OnStart) to find out whether the database is reachable.
func NewPool(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	if cfg.MaxConns < 0 {
		return nil, fmt.Errorf("new pool: PG_MAX_CONNS must not be negative, got %d", cfg.MaxConns)
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("new pool: parse DATABASE_URL: %w", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
		if pcfg.MinConns > pcfg.MaxConns {
			pcfg.MinConns = pcfg.MaxConns
		}
		if pcfg.MinIdleConns > pcfg.MaxConns {
			pcfg.MinIdleConns = pcfg.MaxConns
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("new pool: %w", err)
	}
	return pool, nil
}

// Migrate applies every migration in migrations (the directory holding NNN_name.sql files;
// pass fs.Sub of an embed.FS) that the database has not seen yet, recording the version in
// VersionTable. tern holds a PostgreSQL advisory lock while it migrates, so replicas that
// start together are safe: one migrates, the others wait and then find nothing to do.
func Migrate(ctx context.Context, pool *pgxpool.Pool, migrations fs.FS) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer conn.Release()

	m, err := migrate.NewMigrator(ctx, conn.Conn(), VersionTable)
	if err != nil {
		return fmt.Errorf("migrate: new migrator: %w", err)
	}
	if err := m.LoadMigrations(migrations); err != nil {
		return fmt.Errorf("migrate: load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Module provides a *pgxpool.Pool built from Config, which the service provides. The pool is
// pinged in OnStart and closed in OnStop; since the pool's hooks are appended before those
// of anything built from it, it closes last.
var Module = fx.Module("pg", fx.Provide(newPool))

func newPool(lc fx.Lifecycle, cfg Config) (*pgxpool.Pool, error) {
	// Construction runs before any request exists; NewPool does no I/O with this context.
	pool, err := NewPool(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			if err := pool.Ping(ctx); err != nil {
				return fmt.Errorf("pg: database unreachable, check DATABASE_URL (%s): %w", RedactURL(cfg.URL), err)
			}
			return nil
		},
		OnStop: func(context.Context) error {
			pool.Close()
			return nil
		},
	})
	return pool, nil
}
