// Package pgtest gives each test its own freshly migrated PostgreSQL database. It is for
// _test.go files only.
//
// The server comes from PG_TEST_DSN. Under -short every database test skips (the unit tier
// needs nothing external); otherwise a missing or unreachable server fails the test, so CI
// cannot go quietly green without a database.
//
// NewDB clones a template database rather than migrating each test database: the first call
// for a set of migrations builds and migrates pgtest_tpl_<hash>, where hash covers the content
// of every migration file, and later calls, in this process or any other, clone it with
// CREATE DATABASE ... TEMPLATE, which takes a few tens of milliseconds. Editing a migration
// changes the hash, so a stale template is never reused.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/libs/pg"
)

// EnvDSN names the environment variable that holds the test server's connection string.
const EnvDSN = "PG_TEST_DSN"

const (
	setupTimeout   = 2 * time.Minute
	cleanupTimeout = 30 * time.Second
	// hashSalt is mixed into the template hash; bump it when the way templates are built
	// changes, so old templates are not reused.
	hashSalt = "pgtest/v1 " + pg.VersionTable
)

// DSN returns PG_TEST_DSN after checking that the server answers. Under -short it skips the
// test; otherwise it fails the test when the variable is unset or the server unreachable.
func DSN(tb testing.TB) string {
	tb.Helper()
	dsn := lookupDSN(tb)
	ctx, cancel := context.WithTimeout(tb.Context(), setupTimeout)
	defer cancel()
	conn := connectAdmin(ctx, tb, dsn)
	closeConn(tb, conn)
	return dsn
}

// NewDB creates a uniquely named database on the PG_TEST_DSN server with migrations applied
// (a directory of tern NNN_name.sql files, as passed to pg.Migrate) and returns a pool
// connected to it. Cleanup closes the pool and drops the database. Safe for parallel tests.
func NewDB(tb testing.TB, migrations fs.FS) *pgxpool.Pool {
	tb.Helper()
	dsn := lookupDSN(tb)
	ctx, cancel := context.WithTimeout(tb.Context(), setupTimeout)
	defer cancel()

	admin := connectAdmin(ctx, tb, dsn)
	defer closeConn(tb, admin)

	tpl, err := ensureTemplate(ctx, admin, dsn, migrations)
	if err != nil {
		tb.Fatalf("pgtest: build template database: %v", err)
	}

	name, err := randomName()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(tpl)); err != nil {
		tb.Fatalf("pgtest: create database %s from %s: %v", name, tpl, err)
	}
	// Registered before the pool's Close, so it runs after it (cleanups run last-in first-out).
	tb.Cleanup(func() { dropDatabase(tb, dsn, name) })

	pool, err := openPool(ctx, dsn, name)
	if err != nil {
		tb.Fatalf("pgtest: open database %s: %v", name, err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

func lookupDSN(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("pgtest: database test skipped under -short")
	}
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		tb.Fatalf("pgtest: %s is not set; point it at a PostgreSQL server, e.g. "+
			"%s=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable, or run with -short to skip database tests",
			EnvDSN, EnvDSN)
	}
	return dsn
}

func connectAdmin(ctx context.Context, tb testing.TB, dsn string) *pgx.Conn {
	tb.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		tb.Fatalf("pgtest: parse %s: %v", EnvDSN, err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		tb.Fatalf("pgtest: PostgreSQL at %s (%s) is unreachable: %v", EnvDSN, pg.RedactURL(dsn), err)
	}
	return conn
}

func closeConn(tb testing.TB, conn *pgx.Conn) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := conn.Close(ctx); err != nil {
		tb.Logf("pgtest: close admin connection: %v", err)
	}
}

// openPool opens a pool on database name of the server that dsn points at.
func openPool(ctx context.Context, dsn, name string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	cfg.ConnConfig.Database = name
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("new pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping: %w", err)
	}
	return pool, nil
}

// ensureTemplate returns the name of a migrated template database for migrations, building
// it if no process has yet. Builders serialise on an advisory lock in the admin database, and
// a template only gets its final name once fully migrated, so a template that exists is
// complete.
func ensureTemplate(ctx context.Context, admin *pgx.Conn, dsn string, migrations fs.FS) (string, error) {
	sum, err := hashMigrations(migrations)
	if err != nil {
		return "", err
	}
	name := "pgtest_tpl_" + hex.EncodeToString(sum[:8])

	ok, err := templateExists(ctx, admin, name)
	if err != nil || ok {
		return name, err
	}

	lockKey := int64(binary.BigEndian.Uint64(sum[8:16])) //nolint:gosec // any 64 bits make a lock key
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return "", fmt.Errorf("lock: %w", err)
	}
	defer func() {
		// On a failed build the connection may be unusable; closing it releases the lock too.
		_, _ = admin.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey)
	}()

	if ok, err := templateExists(ctx, admin, name); err != nil || ok {
		return name, err
	}
	if err := buildTemplate(ctx, admin, dsn, name, migrations); err != nil {
		return "", err
	}
	return name, nil
}

func templateExists(ctx context.Context, admin *pgx.Conn, name string) (bool, error) {
	var ok bool
	err := admin.QueryRow(ctx,
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)", name).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up template %s: %w", name, err)
	}
	return ok, nil
}

func buildTemplate(ctx context.Context, admin *pgx.Conn, dsn, name string, migrations fs.FS) error {
	build := name + "_build"
	// A builder that died mid-way leaves its build database, or a renamed one not yet marked
	// as a template, behind. We hold the lock, and nobody clones a database not marked as a
	// template, so neither is in use.
	for _, stale := range []string{build, name} {
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(stale)+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop stale %s: %w", stale, err)
		}
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident(build)); err != nil {
		return fmt.Errorf("create %s: %w", build, err)
	}
	if err := migrateDatabase(ctx, dsn, build, migrations); err != nil {
		_, _ = admin.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+ident(build)+" WITH (FORCE)")
		return err
	}
	// RENAME waits (up to 5 s, in the server) for the migration connection to go away.
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+ident(build)+" RENAME TO "+ident(name)); err != nil {
		return fmt.Errorf("rename %s: %w", build, err)
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+ident(name)+" IS_TEMPLATE true"); err != nil {
		return fmt.Errorf("mark %s as template: %w", name, err)
	}
	return nil
}

func migrateDatabase(ctx context.Context, dsn, name string, migrations fs.FS) error {
	pool, err := openPool(ctx, dsn, name)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer pool.Close()
	if err := pg.Migrate(ctx, pool, migrations); err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	return nil
}

// hashMigrations hashes the path and content of every file in migrations.
func hashMigrations(migrations fs.FS) ([sha256.Size]byte, error) {
	h := sha256.New()
	h.Write([]byte(hashSalt))
	n := 0
	err := fs.WalkDir(migrations, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		body, err := fs.ReadFile(migrations, path)
		if err != nil {
			return err
		}
		n++
		var lens [16]byte
		binary.BigEndian.PutUint64(lens[:8], uint64(len(path)))
		binary.BigEndian.PutUint64(lens[8:], uint64(len(body)))
		h.Write(lens[:])
		h.Write([]byte(path))
		h.Write(body)
		return nil
	})
	var sum [sha256.Size]byte
	if err != nil {
		return sum, fmt.Errorf("read migrations: %w", err)
	}
	if n == 0 {
		return sum, errors.New("read migrations: no files")
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

func randomName() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random database name: %w", err)
	}
	return "pgtest_" + hex.EncodeToString(b[:]), nil
}

func dropDatabase(tb testing.TB, dsn, name string) {
	tb.Helper()
	// The test's context is already cancelled when cleanups run.
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		tb.Errorf("pgtest: drop database %s: %v", name, err)
		return
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		tb.Errorf("pgtest: drop database %s: %v", name, err)
		return
	}
	defer closeConn(tb, conn)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
		tb.Errorf("pgtest: drop database %s: %v", name, err)
	}
}

func ident(name string) string {
	return pgx.Identifier{name}.Sanitize()
}
