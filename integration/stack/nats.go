package stack

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/devca"
	"github.com/parleyhq/parley/libs/natsauth"
)

// AdminUser is the NATS user of operators and tests: no limits. No service runs as it.
const AdminUser = "admin"

// NATSIdentity names the embedded NATS server's certificate from the development CA.
const NATSIdentity = "nats"

// defaultTrustDomain is the development CA's trust domain unless Options says otherwise.
const defaultTrustDomain = "parley.local"

// embeddedNATS is a NATS server with JetStream inside the launcher's process, on a free
// loopback port so it never collides with a system NATS on 4222. It admits only the
// stack's users, each with the permissions of its role, and only over TLS, with the
// certificate tls names (issued by the development CA for NATSIdentity).
type embeddedNATS struct {
	s    *server.Server
	opts server.Options
}

func startNATS(storeDir string, users []natsauth.User, tls devca.Files) (*embeddedNATS, error) {
	nkeys, err := natsauth.ServerUsers(users)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: tls.Cert, KeyFile: tls.Key})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	n := &embeddedNATS{opts: server.Options{
		ServerName: "parley-local",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   storeDir,
		MaxPayload: bus.MaxPayload,
		NoSigs:     true,
		NoLog:      true,
		Nkeys:      nkeys,
		TLS:        true,
		TLSConfig:  tlsConfig,
		TLSTimeout: 5,
	}}
	opts := n.opts
	s, err := server.NewServer(&opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready within 15s")
	}
	n.s = s
	// Reloads keep the port the server picked.
	if a, ok := s.Addr().(*net.TCPAddr); ok {
		n.opts.Port = a.Port
	}
	return n, nil
}

func (n *embeddedNATS) URL() string { return n.s.ClientURL() }

// setUsers replaces the server's users (a new instance joined the stack); callers
// serialise it (Stack.natsMu).
func (n *embeddedNATS) setUsers(users []natsauth.User) error {
	nkeys, err := natsauth.ServerUsers(users)
	if err != nil {
		return fmt.Errorf("embedded nats: %w", err)
	}
	n.opts.Nkeys = nkeys
	opts := n.opts
	if err := n.s.ReloadOptions(&opts); err != nil {
		return fmt.Errorf("embedded nats: reload users: %w", err)
	}
	return nil
}

func (n *embeddedNATS) Stop() {
	n.s.Shutdown()
	n.s.WaitForShutdown()
}

// natsUser is the NATS user process name runs as, with env its environment (before the
// credentials are added); ok is false for services that do not use NATS.
func natsUser(name, service string, env map[string]string) (natsauth.User, bool) {
	u := natsauth.User{Name: name}
	switch service {
	case "router":
		u.Role = natsauth.Router
	case "cache":
		u.Role, u.Bucket = natsauth.Cache, env["CACHE_BUCKET"]
	case "audit":
		u.Role = natsauth.Audit
	case "provider-worker":
		u.Role = natsauth.Worker
		for _, c := range strings.Split(env["WORKER_COMPONENTS"], ",") {
			if c = strings.TrimSpace(c); c != "" {
				u.Components = append(u.Components, c)
			}
		}
	default:
		return natsauth.User{}, false
	}
	return u, true
}

// natsAuthDir holds the users' seeds.
func (s *Stack) natsAuthDir() string { return s.opts.DataDir + "/nats-auth" }

// NATSSeedFile is the nkey seed file of the NATS user named name: a service or instance
// name, or AdminUser.
func (s *Stack) NATSSeedFile(name string) string { return natsauth.SeedFile(s.natsAuthDir(), name) }

// NATSEnv is what a process needs to reach NATS as user name: NATS_URL, NATS_TLS_CA_FILE
// when the server serves TLS and, when the server admits only known users,
// NATS_NKEY_SEED_FILE.
func (s *Stack) NATSEnv(name string) []string {
	env := []string{"NATS_URL=" + s.NATSURL}
	if s.natsCA != "" {
		env = append(env, "NATS_TLS_CA_FILE="+s.natsCA)
	}
	if s.natsLocked {
		env = append(env, "NATS_NKEY_SEED_FILE="+s.NATSSeedFile(name))
	}
	return env
}

// NATSCAFile is the CA bundle the NATS server's certificate chains to: the development
// CA's for the embedded server, NATS_TLS_CA_FILE of Options.Env for an external one ("" when
// it serves no TLS).
func (s *Stack) NATSCAFile() string { return s.natsCA }

// NATSCAFileOf is the CA bundle of the NATS server StartNATS(dataDir, ...) runs.
func NATSCAFileOf(dataDir string) string {
	return devca.FilesOf(filepath.Join(dataDir, "tls"), NATSIdentity).CA
}

// tlsOption is the connection option trusting caFile, none when caFile is "".
func tlsOption(caFile string) []nats.Option {
	if caFile == "" {
		return nil
	}
	return []nats.Option{nats.RootCAs(caFile)}
}

// natsAdmitsOnlyUsers reports whether the external server at url refuses a client
// without credentials; caFile, when set, is the CA its TLS certificate chains to.
func natsAdmitsOnlyUsers(url, caFile string) (bool, error) {
	nc, err := nats.Connect(url, append(tlsOption(caFile), nats.MaxReconnects(0), nats.Timeout(5*time.Second))...)
	if errors.Is(err, nats.ErrAuthorization) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("NATS at %s: %w", url, err)
	}
	nc.Close()
	return false, nil
}

// ConnectNATS connects to the stack's NATS as user name (AdminUser for no limits).
func (s *Stack) ConnectNATS(name string, opts ...nats.Option) (*nats.Conn, error) {
	s.natsMu.Lock()
	var pub string
	for _, u := range s.natsUsers {
		if u.Name == name {
			pub = u.NKey
		}
	}
	s.natsMu.Unlock()
	if pub == "" {
		return nil, fmt.Errorf("no NATS user %q", name)
	}
	base := tlsOption(s.natsCA)
	if !s.natsLocked {
		return nats.Connect(s.NATSURL, append(base, opts...)...)
	}
	seed, err := nats.NkeyOptionFromSeed(s.NATSSeedFile(name))
	if err != nil {
		return nil, err
	}
	return nats.Connect(s.NATSURL, append(append(base, seed, nats.CustomInboxPrefix(bus.InboxPrefix(pub))), opts...)...)
}

// addNATSUser gives process name (of service) its NATS user: a seed under DataDir,
// known to the embedded server.
func (s *Stack) addNATSUser(name, service string, env map[string]string) error {
	u, ok := natsUser(name, service, env)
	if !ok {
		return nil
	}
	us, err := natsauth.LoadOrCreate(s.natsAuthDir(), []natsauth.User{u})
	if err != nil {
		return err
	}
	s.natsMu.Lock()
	defer s.natsMu.Unlock()
	users := append(slices.DeleteFunc(slices.Clone(s.natsUsers), func(o natsauth.User) bool { return o.Name == name }), us[0])
	if s.nats != nil {
		if err := s.nats.setUsers(users); err != nil {
			return err
		}
	}
	s.natsUsers = users
	return nil
}

// StackUsers are the NATS users of the stack's five services (as Start creates them),
// plus AdminUser, with their keys from dataDir/nats-auth (created when missing).
func StackUsers(dataDir string, env map[string]string) ([]natsauth.User, error) {
	users := []natsauth.User{{Name: AdminUser, Role: natsauth.Admin}}
	for _, name := range Services {
		if u, ok := natsUser(name, name, env); ok {
			users = append(users, u)
		}
	}
	return natsauth.LoadOrCreate(dataDir+"/nats-auth", users)
}
