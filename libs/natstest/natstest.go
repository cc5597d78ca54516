// Package natstest runs an in-process NATS server with JetStream for tests.
package natstest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/natsauth"
)

// RunServer starts a JetStream-enabled server on a free loopback port, with Parley's
// max_payload (bus.MaxPayload), stopped at cleanup. It admits any client;
// RunLockedServer admits only Parley's users.
func RunServer(tb testing.TB) *server.Server {
	tb.Helper()
	return run(tb, &server.Options{})
}

// RunServerWith is RunServer with configure applied to the server's options first.
func RunServerWith(tb testing.TB, configure func(*server.Options)) *server.Server {
	tb.Helper()
	opts := &server.Options{}
	return run(tb, opts, configure)
}

// Locked is a server that admits only the users it was started with, each with the
// permissions of its role (libs/natsauth).
type Locked struct {
	*server.Server
	// Dir holds each user's seed at natsauth.SeedFile(Dir, name).
	Dir string
	// Users are the users with their public keys.
	Users []natsauth.User
}

// RunLockedServer starts a JetStream-enabled server that admits only users (their NKey
// is filled in from seeds created under a temporary directory), stopped at cleanup. The
// users are given to the server as options, as an embedded server does.
func RunLockedServer(tb testing.TB, users ...natsauth.User) *Locked {
	tb.Helper()
	dir := tb.TempDir()
	users, err := natsauth.LoadOrCreate(dir, users)
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	nkeys, err := natsauth.ServerUsers(users)
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	return &Locked{Server: run(tb, &server.Options{Nkeys: nkeys}), Dir: dir, Users: users}
}

// RunConfiguredServer is RunLockedServer with the users given to the server as the
// configuration file natsauth.Config writes, as an external server reads them.
func RunConfiguredServer(tb testing.TB, users ...natsauth.User) *Locked {
	tb.Helper()
	dir := tb.TempDir()
	users, err := natsauth.LoadOrCreate(dir, users)
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	conf, err := natsauth.Config(users)
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		tb.Fatalf("natstest: parse the generated configuration: %v\n%s", err, conf)
	}
	return &Locked{Server: run(tb, opts), Dir: dir, Users: users}
}

// SeedFile is the seed file of the user named name.
func (l *Locked) SeedFile(name string) string { return natsauth.SeedFile(l.Dir, name) }

// ConnectAs returns a connection as the user named name, closed at cleanup. Permission
// errors go to errs when it is not nil.
func (l *Locked) ConnectAs(tb testing.TB, name string, errs chan<- error) *nats.Conn {
	tb.Helper()
	seed := l.SeedFile(name)
	opt, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	var pub string
	for _, u := range l.Users {
		if u.Name == name {
			pub = u.NKey
		}
	}
	opts := []nats.Option{opt, nats.CustomInboxPrefix(bus.InboxPrefix(pub))}
	if errs != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	}
	nc, err := nats.Connect(l.ClientURL(), opts...)
	if err != nil {
		tb.Fatalf("natstest: connect as %s: %v", name, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

func run(tb testing.TB, opts *server.Options, configure ...func(*server.Options)) *server.Server {
	tb.Helper()
	opts.Host = "127.0.0.1"
	opts.Port = -1
	opts.JetStream = true
	opts.StoreDir = tb.TempDir()
	opts.MaxPayload = bus.MaxPayload
	opts.NoLog = true
	opts.NoSigs = true
	for _, c := range configure {
		if c != nil {
			c(opts)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("natstest: server not ready within 10s")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect returns a connection to s, closed at cleanup.
func Connect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
