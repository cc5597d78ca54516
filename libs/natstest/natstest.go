// Package natstest runs an in-process NATS server with JetStream for tests.
package natstest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/freeport"
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

// Cluster is a cluster of JetStream-enabled servers on loopback, joined by routes: for
// tests of what survives the loss of a node. Servers[i] is nil while node i is stopped.
type Cluster struct {
	Servers []*server.Server
	opts    []server.Options
}

// clusterWait bounds the wait for a node to accept clients and for the cluster's
// JetStream to elect its meta leader.
const clusterWait = 30 * time.Second

// RunCluster starts a cluster of n JetStream-enabled servers on free loopback ports
// (client and route ports kept across restarts, a store each), with Parley's max_payload,
// stopped at cleanup; it returns once JetStream has a meta leader. configure, when not nil,
// changes node i's options first (users, TLS). Streams and buckets may then have up to n
// replicas.
func RunCluster(tb testing.TB, n int, configure func(i int, opts *server.Options)) *Cluster {
	tb.Helper()
	if n < 2 {
		tb.Fatalf("natstest: a cluster needs two nodes or more, got %d", n)
	}
	c := &Cluster{Servers: make([]*server.Server, n), opts: make([]server.Options, n)}
	routes := make([]string, n)
	for i := range c.opts {
		o := server.Options{
			ServerName: fmt.Sprintf("natstest-%d", i),
			Host:       "127.0.0.1",
			Port:       freePort(tb),
			JetStream:  true,
			StoreDir:   tb.TempDir(),
			MaxPayload: bus.MaxPayload,
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "natstest", Host: "127.0.0.1", Port: freePort(tb)},
		}
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Cluster.Port)
		if configure != nil {
			configure(i, &o)
		}
		c.opts[i] = o
	}
	for i := range c.opts {
		c.opts[i].Routes = server.RoutesFromStr(strings.Join(append(slices.Clone(routes[:i]), routes[i+1:]...), ","))
	}
	tb.Cleanup(func() {
		for i := range c.Servers {
			if c.Servers[i] != nil {
				c.Stop(tb, i)
			}
		}
	})
	for i := range c.Servers {
		c.Start(tb, i)
	}
	c.WaitJetStream(tb)
	return c
}

// Start starts node i (again, after Stop) on its ports and store.
func (c *Cluster) Start(tb testing.TB, i int) {
	tb.Helper()
	if c.Servers[i] != nil {
		tb.Fatalf("natstest: node %d is running", i)
	}
	opts := c.opts[i]
	s, err := server.NewServer(&opts)
	if err != nil {
		tb.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(clusterWait) {
		s.Shutdown()
		tb.Fatalf("natstest: node %d not ready within %s", i, clusterWait)
	}
	c.Servers[i] = s
}

// Stop shuts node i down, as when its machine is lost: its clients reconnect elsewhere.
func (c *Cluster) Stop(tb testing.TB, i int) {
	tb.Helper()
	if c.Servers[i] == nil {
		tb.Fatalf("natstest: node %d is not running", i)
	}
	c.Servers[i].Shutdown()
	c.Servers[i].WaitForShutdown()
	c.Servers[i] = nil
}

// WaitJetStream waits until the running nodes' JetStream has a meta leader that every
// one of them follows.
func (c *Cluster) WaitJetStream(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		leader, current := false, true
		for _, s := range c.Servers {
			if s != nil {
				leader = leader || s.JetStreamIsLeader()
				current = current && s.JetStreamIsCurrent()
			}
		}
		if leader && current {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("natstest: JetStream elected no meta leader within %s", clusterWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL lists every node's client URL, comma-separated, as nats.Connect and NATS_URL take them.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		scheme := "nats"
		if o.TLSConfig != nil {
			scheme = "tls"
		}
		urls[i] = fmt.Sprintf("%s://127.0.0.1:%d", scheme, o.Port)
	}
	return strings.Join(urls, ",")
}

// Serving is the running node that serves the client connection named name, or -1.
func (c *Cluster) Serving(name string) int {
	for i, s := range c.Servers {
		if s == nil {
			continue
		}
		cz, err := s.Connz(&server.ConnzOptions{})
		if err != nil {
			continue
		}
		for _, conn := range cz.Conns {
			if conn.Name == name {
				return i
			}
		}
	}
	return -1
}

// Connect returns a connection to the cluster (every node's URL) that reconnects
// forever, closed at cleanup; opts come after the defaults.
func (c *Cluster) Connect(tb testing.TB, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(c.URL(), append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		tb.Fatalf("natstest: connect to the cluster: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// freePort finds a free loopback port below the ephemeral range (libs/freeport).
func freePort(tb testing.TB) int {
	tb.Helper()
	p, err := freeport.Loopback()
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	return p
}
