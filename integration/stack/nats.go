package stack

import (
	"crypto/rand"
	"encoding/hex"
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

// embeddedNATS is NATS with JetStream inside the launcher's process, on free loopback
// ports so it never collides with a system NATS on 4222: one server, or a cluster of
// nodes joined by routes on loopback (each with JetStream and its own store). It admits
// only the stack's users, each with the permissions of its role, and only over TLS, with
// the certificate tls names (issued by the development CA for NATSIdentity). The routes
// between nodes authenticate with a password made up for this run.
type embeddedNATS struct {
	nodes []*natsNode
}

// natsNode is one server of the embedded NATS; s is nil while it is stopped.
type natsNode struct {
	opts server.Options
	s    *server.Server
}

// natsClusterName names the embedded cluster and prefixes its servers' names.
const natsClusterName = "parley-local"

// natsReadyWait bounds the wait for a server to accept clients and for a cluster's
// JetStream to elect its meta leader.
const natsReadyWait = 30 * time.Second

func startNATS(storeDir string, users []natsauth.User, tls devca.Files, nodes int) (*embeddedNATS, error) {
	nkeys, err := natsauth.ServerUsers(users)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: tls.Cert, KeyFile: tls.Key})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	base := server.Options{
		ServerName: natsClusterName,
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
	}
	n := &embeddedNATS{}
	if nodes <= 1 {
		n.nodes = []*natsNode{{opts: base}}
	} else if n.nodes, err = clusterNodes(base, nodes); err != nil {
		return nil, err
	}
	for i := range n.nodes {
		if err := n.StartNode(i); err != nil {
			n.Stop()
			return nil, err
		}
	}
	if len(n.nodes) > 1 {
		if err := n.waitJetStream(); err != nil {
			n.Stop()
			return nil, err
		}
	}
	return n, nil
}

// clusterNodes are the options of a cluster of count servers like base: each with a
// client port, a route port and a store of its own, routed to all the others.
func clusterNodes(base server.Options, count int) ([]*natsNode, error) {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("embedded nats: route password: %w", err)
	}
	const routeUser = "route"
	password := hex.EncodeToString(secret)
	nodes := make([]*natsNode, count)
	routes := make([]string, count)
	for i := range nodes {
		client, err := FreePort()
		if err != nil {
			return nil, err
		}
		cluster, err := FreePort()
		if err != nil {
			return nil, err
		}
		opts := base
		opts.ServerName = fmt.Sprintf("%s-%d", natsClusterName, i)
		opts.Port = client
		opts.StoreDir = filepath.Join(base.StoreDir, fmt.Sprintf("node-%d", i))
		opts.Cluster = server.ClusterOpts{Name: natsClusterName, Host: "127.0.0.1", Port: cluster, Username: routeUser, Password: password}
		nodes[i] = &natsNode{opts: opts}
		routes[i] = fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", routeUser, password, cluster)
	}
	for i, node := range nodes {
		node.opts.Routes = server.RoutesFromStr(strings.Join(append(slices.Clone(routes[:i]), routes[i+1:]...), ","))
	}
	return nodes, nil
}

// StartNode starts node i (again, after StopNode) with the options it last had, on the
// same ports and store.
func (n *embeddedNATS) StartNode(i int) error {
	node := n.nodes[i]
	if node.s != nil {
		return fmt.Errorf("embedded nats: node %d is running", i)
	}
	opts := node.opts
	s, err := server.NewServer(&opts)
	if err != nil {
		return fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(natsReadyWait) {
		s.Shutdown()
		return fmt.Errorf("embedded nats: node %d not ready within %s", i, natsReadyWait)
	}
	node.s = s
	// A restart and reloads keep the port the server picked.
	if a, ok := s.Addr().(*net.TCPAddr); ok {
		node.opts.Port = a.Port
	}
	return nil
}

// StopNode shuts node i down: its clients lose their connection, as when a machine goes.
func (n *embeddedNATS) StopNode(i int) error {
	node := n.nodes[i]
	if node.s == nil {
		return fmt.Errorf("embedded nats: node %d is not running", i)
	}
	node.s.Shutdown()
	node.s.WaitForShutdown()
	node.s = nil
	return nil
}

// waitJetStream waits until the running nodes' JetStream has a meta leader that every
// one of them follows: streams and buckets can be created then.
func (n *embeddedNATS) waitJetStream() error {
	deadline := time.Now().Add(natsReadyWait)
	for {
		leader, current := false, true
		for _, node := range n.nodes {
			if node.s == nil {
				continue
			}
			leader = leader || node.s.JetStreamIsLeader()
			current = current && node.s.JetStreamIsCurrent()
		}
		if leader && current {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("embedded nats: JetStream elected no meta leader within %s", natsReadyWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL lists every node's client URL, comma-separated, as NATS_URL takes them.
func (n *embeddedNATS) URL() string {
	urls := make([]string, len(n.nodes))
	for i, node := range n.nodes {
		urls[i] = fmt.Sprintf("tls://127.0.0.1:%d", node.opts.Port)
	}
	return strings.Join(urls, ",")
}

// nodeServing is the index of the running node that serves a client connection named
// name, or -1.
func (n *embeddedNATS) nodeServing(name string) int {
	for i, node := range n.nodes {
		if node.s == nil {
			continue
		}
		cz, err := node.s.Connz(&server.ConnzOptions{})
		if err != nil {
			continue
		}
		for _, c := range cz.Conns {
			if c.Name == name {
				return i
			}
		}
	}
	return -1
}

// setUsers replaces the servers' users (a new instance joined the stack); callers
// serialise it (Stack.natsMu). A stopped node gets them when it starts again.
func (n *embeddedNATS) setUsers(users []natsauth.User) error {
	nkeys, err := natsauth.ServerUsers(users)
	if err != nil {
		return fmt.Errorf("embedded nats: %w", err)
	}
	for _, node := range n.nodes {
		node.opts.Nkeys = nkeys
		if node.s == nil {
			continue
		}
		opts := node.opts
		if err := node.s.ReloadOptions(&opts); err != nil {
			return fmt.Errorf("embedded nats: reload users: %w", err)
		}
	}
	return nil
}

// Stop shuts every running node down.
func (n *embeddedNATS) Stop() {
	for _, node := range n.nodes {
		if node.s != nil {
			node.s.Shutdown()
		}
	}
	for _, node := range n.nodes {
		if node.s != nil {
			node.s.WaitForShutdown()
			node.s = nil
		}
	}
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
// plus AdminUser and extra (Options.NATSUsers), with their keys from dataDir/nats-auth
// (created when missing).
func StackUsers(dataDir string, env map[string]string, extra ...natsauth.User) ([]natsauth.User, error) {
	users := []natsauth.User{{Name: AdminUser, Role: natsauth.Admin}}
	for _, name := range Services {
		if u, ok := natsUser(name, name, env); ok {
			users = append(users, u)
		}
	}
	return natsauth.LoadOrCreate(dataDir+"/nats-auth", append(users, extra...))
}

// ReplicaSettings are the services' settings of JetStream replicas: every stream and
// key-value bucket a service creates has one. A stack on an embedded cluster of three
// nodes or more sets each to three (Options.Env still has the last word); a new stream or
// bucket adds its setting here.
func ReplicaSettings() []string {
	return []string{"AUDIT_STREAM_REPLICAS", "CACHE_REPLICAS", "ROUTER_LIMITS_REPLICAS"}
}

// clusterReplicas is the replica count of streams and buckets on an embedded cluster.
const clusterReplicas = 3

// NATSNodes is the number of nodes of the embedded NATS (0 for an external server).
func (s *Stack) NATSNodes() int {
	if s.nats == nil {
		return 0
	}
	return len(s.nats.nodes)
}

// StopNATSNode shuts node i of the embedded NATS down, as when its machine is lost: its
// clients lose their connection and reconnect to another node.
func (s *Stack) StopNATSNode(i int) error {
	if s.nats == nil || i < 0 || i >= len(s.nats.nodes) {
		return fmt.Errorf("no embedded NATS node %d", i)
	}
	s.natsMu.Lock()
	defer s.natsMu.Unlock()
	return s.nats.StopNode(i)
}

// StartNATSNode starts node i of the embedded NATS again, on its ports and store, with
// the stack's current users.
func (s *Stack) StartNATSNode(i int) error {
	if s.nats == nil || i < 0 || i >= len(s.nats.nodes) {
		return fmt.Errorf("no embedded NATS node %d", i)
	}
	s.natsMu.Lock()
	defer s.natsMu.Unlock()
	return s.nats.StartNode(i)
}

// NATSNodeOf is the embedded NATS node that serves process name's connection (services
// name theirs "parley-<service>"), or -1 when none does.
func (s *Stack) NATSNodeOf(name string) int {
	if s.nats == nil {
		return -1
	}
	s.natsMu.Lock()
	defer s.natsMu.Unlock()
	return s.nats.nodeServing("parley-" + s.serviceOf(name))
}
