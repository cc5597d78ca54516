package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// LocalPostgresURL is the system PostgreSQL the launcher tries when DATABASE_URL is unset.
const LocalPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// PostgresOptions say where the audit database comes from: URL if set, else the local
// server on 127.0.0.1:5432 if it answers, else a private instance under the data dir.
type PostgresOptions struct {
	// URL is DATABASE_URL.
	URL string
	// SkipLocal does not try 127.0.0.1:5432.
	SkipLocal bool
	// Database is created on a found server and used (default "parley").
	Database string
	// FreshDatabase creates a uniquely named database on the server and drops it at Stop
	// (tests).
	FreshDatabase bool
	// Install allows apt-get install postgresql when the binaries are missing and the
	// caller is root.
	Install bool
}

// Postgres is what the launcher created and must undo: a database it made, a private
// server it started, or both.
type Postgres struct {
	dataDir    string
	port       int
	bin        string
	asPostgres bool
	adminURL   string
	dropDB     string
	URL        string
}

// ResolvePostgres finds or starts PostgreSQL and returns the audit database URL.
func ResolvePostgres(ctx context.Context, opts PostgresOptions, dataDir string, progress io.Writer) (*Postgres, string, error) {
	if opts.Database == "" {
		opts.Database = "parley"
	}
	server := opts.URL
	pg := &Postgres{}
	switch {
	case server != "":
		_, _ = fmt.Fprintln(progress, "using the PostgreSQL server given (DATABASE_URL or PG_TEST_DSN)")
		if !opts.FreshDatabase {
			return nil, server, nil
		}
	case !opts.SkipLocal && ping(ctx, LocalPostgresURL) == nil:
		_, _ = fmt.Fprintln(progress, "using PostgreSQL at 127.0.0.1:5432")
		server = LocalPostgresURL
	default:
		port, err := FreePort()
		if err != nil {
			return nil, "", err
		}
		priv, err := StartPrivatePostgres(ctx, dataDir, port, opts.Install, progress)
		if err != nil {
			return nil, "", err
		}
		pg = priv
		server = priv.URL
	}
	name := opts.Database
	if opts.FreshDatabase {
		var b [4]byte
		_, _ = rand.Read(b[:])
		name = "parley_e2e_" + hex.EncodeToString(b[:])
		pg.dropDB = name
	}
	pg.adminURL = server
	dbURL, err := createDatabase(ctx, server, name)
	if err != nil {
		_ = pg.Stop(context.WithoutCancel(ctx))
		return nil, "", err
	}
	pg.URL = dbURL
	return pg, dbURL, nil
}

func ping(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }()
	return conn.Ping(ctx)
}

// createDatabase creates database name on the server of adminURL if missing and returns
// its URL.
func createDatabase(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect to postgres: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if err != nil && (!errors.As(err, &pgErr) || pgErr.Code != "42P04") {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", fmt.Errorf("parse postgres url: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// StartPrivatePostgres runs a PostgreSQL server of the system's binaries with its data in
// dataDir on 127.0.0.1:port. As root it runs the server as the postgres user, and
// installs the postgresql package with apt-get when install is set and the binaries are
// missing.
func StartPrivatePostgres(ctx context.Context, dataDir string, port int, install bool, progress io.Writer) (*Postgres, error) {
	bin, err := findPostgresBin()
	if err != nil && install && os.Geteuid() == 0 {
		_, _ = fmt.Fprintln(progress, "PostgreSQL binaries not found: apt-get install -y postgresql ...")
		if ierr := aptInstall(ctx); ierr != nil {
			return nil, ierr
		}
		bin, err = findPostgresBin()
	}
	if err != nil {
		return nil, fmt.Errorf("%w; install them with: sudo apt-get update && sudo apt-get install -y postgresql (or set DATABASE_URL)", err)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	pg := &Postgres{dataDir: abs, bin: bin, asPostgres: os.Geteuid() == 0}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", abs, err)
	}
	if pg.asPostgres {
		if err := pg.giveToPostgres(abs); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(abs, "PG_VERSION")); err != nil {
		_, _ = fmt.Fprintf(progress, "initialising a private PostgreSQL in %s ...\n", abs)
		if out, err := pg.run(ctx, "initdb", "-D", abs, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
			return nil, fmt.Errorf("initdb: %w\n%s", err, out)
		}
	}
	// A server left running by an earlier launcher that was killed is stopped first.
	_, _ = pg.run(ctx, "pg_ctl", "-D", abs, "-m", "immediate", "-w", "stop")
	pg.port = port
	if err := pg.StartServer(ctx); err != nil {
		return nil, err
	}
	pg.URL = "postgres://postgres@127.0.0.1:" + strconv.Itoa(port) + "/postgres?sslmode=disable"
	_, _ = fmt.Fprintf(progress, "started a private PostgreSQL on 127.0.0.1:%d\n", port)
	return pg, nil
}

// StartServer starts a private server stopped by StopServer again, on the same port and
// with the same data (outage tests).
func (p *Postgres) StartServer(ctx context.Context) error {
	if p.dataDir == "" {
		return errors.New("start postgres: not a private server")
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", p.port, p.dataDir)
	if out, err := p.run(ctx, "pg_ctl", "-D", p.dataDir, "-o", opts, "-l", filepath.Join(p.dataDir, "server.log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dataDir, "server.log"))
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	return nil
}

// Stop drops a database the launcher created for tests and stops a private server.
func (p *Postgres) Stop(ctx context.Context) error {
	if p == nil {
		return nil
	}
	var errs []error
	if p.dropDB != "" && p.adminURL != "" {
		if conn, err := pgx.Connect(ctx, p.adminURL); err == nil {
			_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{p.dropDB}.Sanitize()+" WITH (FORCE)")
			errs = append(errs, err)
			_ = conn.Close(ctx)
		}
	}
	if p.dataDir != "" {
		if out, err := p.run(ctx, "pg_ctl", "-D", p.dataDir, "-m", "fast", "-w", "stop"); err != nil {
			errs = append(errs, fmt.Errorf("pg_ctl stop: %w\n%s", err, out))
		}
	}
	return errors.Join(errs...)
}

// StopServer stops a private server abruptly, keeping its data (outage tests).
func (p *Postgres) StopServer(ctx context.Context) error {
	out, err := p.run(ctx, "pg_ctl", "-D", p.dataDir, "-m", "immediate", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

func (p *Postgres) run(ctx context.Context, tool string, args ...string) ([]byte, error) {
	path := filepath.Join(p.bin, tool)
	var cmd *exec.Cmd
	if p.asPostgres {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...) //nolint:gosec // system binaries
	}
	cmd.Dir = "/"
	return cmd.CombinedOutput()
}

// giveToPostgres makes dir the postgres user's and lets it reach dir through its parents.
func (p *Postgres) giveToPostgres(dir string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("look up user postgres (installed with the postgresql package): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	for d := filepath.Dir(dir); d != "/"; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("chmod %s: %w", d, err)
			}
		}
	}
	return nil
}

// findPostgresBin finds the folder of initdb and pg_ctl: the newest
// /usr/lib/postgresql/<version>/bin, else PATH.
func findPostgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found")
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func aptInstall(ctx context.Context) error { return aptInstallPackages(ctx, "postgresql") }

// aptInstallPackages runs apt-get update, then apt-get install of the packages, waiting up
// to 5 minutes for another apt-get or dpkg to finish rather than failing on its lock.
func aptInstallPackages(ctx context.Context, packages ...string) error {
	const wait = "DPkg::Lock::Timeout=300"
	for _, args := range [][]string{{"-o", wait, "update"}, append([]string{"-o", wait, "install", "-y", "--no-install-recommends"}, packages...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// PostgresServer returns the URL of a PostgreSQL server tests may create databases on:
// 127.0.0.1:5432 if it answers, else a private instance in dataDir (installed with
// apt-get when install is set and the caller is root). stop undoes what was started.
func PostgresServer(ctx context.Context, dataDir string, install bool, progress io.Writer) (dsn string, stop func(context.Context) error, err error) {
	if ping(ctx, LocalPostgresURL) == nil {
		_, _ = fmt.Fprintln(progress, "using PostgreSQL at 127.0.0.1:5432")
		return LocalPostgresURL, func(context.Context) error { return nil }, nil
	}
	port, err := FreePort()
	if err != nil {
		return "", nil, err
	}
	pg, err := StartPrivatePostgres(ctx, dataDir, port, install, progress)
	if err != nil {
		return "", nil, err
	}
	return pg.URL, pg.Stop, nil
}
