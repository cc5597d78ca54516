package natsauth_test

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/parleyhq/parley/libs/devca"
	"github.com/parleyhq/parley/libs/natsauth"
)

var update = flag.Bool("update", false, "rewrite the dev overlay's NATS users (deploy/overlays/dev/nats)")

// devOverlay holds the dev cluster's seeds and the auth.conf its NATS reads.
var devOverlay = filepath.Join("..", "..", "deploy", "overlays", "dev", "nats")

// TestDevOverlay keeps the dev cluster's NATS configuration (deploy/) in step with
// these permissions and with the seeds its services mount: -update rewrites it.
func TestDevOverlay(t *testing.T) {
	t.Parallel()
	users := []natsauth.User{
		{Name: "router", Role: natsauth.Router},
		{Name: "cache", Role: natsauth.Cache},
		{Name: "audit", Role: natsauth.Audit},
		{Name: "provider-worker", Role: natsauth.Worker},
	}
	// The dev cluster runs a worker pool per component file (deploy/pools), each its own
	// user confined to its component.
	components, globErr := filepath.Glob(filepath.Join("..", "..", "deploy", "components", "*.yaml"))
	if globErr != nil {
		t.Fatal(globErr)
	}
	for _, f := range components {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		if name == "kustomization" {
			continue
		}
		users = append(users, natsauth.User{Name: "provider-worker-" + name, Role: natsauth.Worker, Components: []string{name}})
	}
	if !*update {
		for _, u := range users {
			if _, err := os.Stat(natsauth.SeedFile(devOverlay, u.Name)); err != nil {
				t.Fatalf("dev overlay seed of %s: %v (go test -run TestDevOverlay -update creates it)", u.Name, err)
			}
		}
	}
	users, err := natsauth.LoadOrCreate(devOverlay, users)
	if err != nil {
		t.Fatal(err)
	}
	want, err := natsauth.Config(users)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(devOverlay, "auth.conf")
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil { //nolint:gosec // a ConfigMap's source
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is out of date (go test -run TestDevOverlay -update rewrites it); want:\n%s", path, want)
	}

	// The dev NATS reads deploy/base/deps/nats/nats.conf with auth.conf beside it (a
	// projected volume): the pair parses, with JetStream on and these users.
	dir := t.TempDir()
	conf, err := os.ReadFile(filepath.Join("..", "..", "deploy", "base", "deps", "nats", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// The pod's /etc/nats is dir here; its tls/ holds a certificate as cert-manager's.
	conf = []byte(strings.ReplaceAll(string(conf), "/etc/nats/", dir+"/"))
	ca, err := devca.New("parley.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("nats", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls/tls.crt": certPEM, "tls/tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string][]byte{"nats.conf": conf, "auth.conf": got} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("the dev NATS configuration does not parse: %v", err)
	}
	if opts.TLSConfig == nil || len(opts.TLSConfig.Certificates) != 1 {
		t.Fatal("dev NATS: no TLS with the certificate of tls/")
	}
	if !opts.JetStream || len(opts.Nkeys) != len(users) || opts.NoAuthUser != "" {
		t.Fatalf("dev NATS: jetstream %v, %d users (want %d), no_auth_user %q", opts.JetStream, len(opts.Nkeys), len(users), opts.NoAuthUser)
	}
	serverUsers, err := natsauth.ServerUsers(users)
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range opts.Nkeys {
		// The parser leaves an empty allow list nil or empty depending on the order it
		// meets publish and allow_responses; the server then turns nil into "nothing"
		// for users with allow_responses, as natsauth writes it.
		if p := u.Permissions; p != nil && p.Response != nil && p.Publish != nil && p.Publish.Allow == nil {
			p.Publish.Allow = []string{}
		}
		if u.Nkey != serverUsers[i].Nkey || !reflect.DeepEqual(u.Permissions, serverUsers[i].Permissions) {
			t.Fatalf("dev NATS user %d: %+v, want %+v", i, u, serverUsers[i])
		}
	}
}

// TestClusterConfig parses the NATS configuration of deploy/nats-cluster (overlays/full) as
// nats-server reads it in the pod nats-1, with Parley's users beside it: JetStream on, the
// server named after its pod, routes to the three servers on the cluster port, the users.
func TestClusterConfig(t *testing.T) {
	dir := t.TempDir()
	conf, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats-cluster", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := os.ReadFile(filepath.Join(devOverlay, "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"nats.conf": conf, "auth.conf": auth} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("POD_NAME", "nats-1")
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("the cluster's NATS configuration does not parse: %v", err)
	}
	var routes []string
	for _, u := range opts.Routes {
		routes = append(routes, u.String())
	}
	want := []string{"nats://nats-0.nats-cluster:6222", "nats://nats-1.nats-cluster:6222", "nats://nats-2.nats-cluster:6222"}
	switch {
	case !opts.JetStream || opts.ServerName != "nats-1" || opts.Cluster.Name == "" || opts.Cluster.Port != 6222:
		t.Fatalf("cluster NATS: jetstream %v, server_name %q, cluster %q on %d", opts.JetStream, opts.ServerName, opts.Cluster.Name, opts.Cluster.Port)
	case !reflect.DeepEqual(routes, want):
		t.Fatalf("routes %v, want %v", routes, want)
	case len(opts.Nkeys) == 0 || opts.NoAuthUser != "":
		t.Fatalf("cluster NATS: %d users, no_auth_user %q", len(opts.Nkeys), opts.NoAuthUser)
	case opts.MaxPayload != 16<<20:
		t.Fatalf("max_payload %d", opts.MaxPayload)
	}
}
