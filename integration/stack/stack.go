// Package stack starts Parley's whole constellation on one machine as separate processes:
// NATS with JetStream (embedded, unless a URL is given), PostgreSQL (given, found on
// 127.0.0.1:5432, or a private instance), and the five services built from this
// repository. `make up` and the end-to-end tests use it alike. Internal calls run over
// mutual TLS with certificates from a development CA kept under the data directory,
// created on first run and renewed when due.
package stack

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/parleyhq/parley/libs/devca"
	"github.com/parleyhq/parley/libs/freeport"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/natsauth"
)

// Services lists the services in start order; they stop in reverse.
var Services = []string{"audit", "cache", "pii-scrubber", "provider-worker", "router"}

// DefaultPorts are DESIGN.md's local ports.
var DefaultPorts = Ports{Router: 3500, RouterGRPC: 50001, Scrubber: 3510, Cache: 3520, Worker: 3530, Audit: 3540}

// Ports are the services' listen ports on 127.0.0.1.
type Ports struct {
	Router, RouterGRPC, Scrubber, Cache, Worker, Audit int
}

// FreePorts picks free loopback ports for every service.
func FreePorts() (Ports, error) {
	ps := make([]int, 6)
	for i := range ps {
		p, err := FreePort()
		if err != nil {
			return Ports{}, err
		}
		ps[i] = p
	}
	return Ports{Router: ps[0], RouterGRPC: ps[1], Scrubber: ps[2], Cache: ps[3], Worker: ps[4], Audit: ps[5]}, nil
}

// FreePort finds a free loopback port below the kernel's ephemeral range (libs/freeport),
// so that no client connection takes it before the service binds it.
func FreePort() (int, error) {
	return freeport.Loopback() //nolint:wrapcheck // its error says what failed
}

// Options configure Start.
type Options struct {
	// RepoRoot is the repository root (the folder with go.work).
	RepoRoot string
	// DataDir keeps the embedded NATS store, a private PostgreSQL and the binaries.
	DataDir string
	// ComponentsDir holds the Dapr component files for router and provider-worker.
	ComponentsDir string
	// Ports for the services.
	Ports Ports
	// NATSURL uses an existing NATS server instead of the embedded one (which serves
	// TLS with a certificate from the development CA). When the existing server serves
	// TLS, NATS_TLS_CA_FILE (in Env or the process environment) names the CA its
	// certificate chains to.
	NATSURL string
	// NATSNodes runs the embedded NATS as a cluster of this many nodes (each with
	// JetStream, on free loopback ports, routed to each other); 0 or 1 runs one server.
	// With three nodes or more every service's stream and bucket gets three replicas
	// (ReplicaSettings), and services get every node's URL.
	NATSNodes int
	// Postgres locates the database server.
	Postgres PostgresOptions
	// Race builds the service binaries with the race detector.
	Race bool
	// BinDir, when set, holds service binaries built already (another stack's, say:
	// filepath.Dir(other.Binary("router"))), and Start builds nothing; Race is then moot.
	BinDir string
	// Env is added to every service's environment.
	Env map[string]string
	// Log receives every service's output, each line prefixed with the service name.
	Log io.Writer
	// Progress receives one line per start-up step.
	Progress io.Writer
	// ReadyTimeout bounds the wait for every service to become ready.
	ReadyTimeout time.Duration
	// InsecureInternal runs the internal services without TLS (INTERNAL_TLS=off).
	InsecureInternal bool
	// TLSDir holds the development CA and the certificates (default DataDir/tls); stacks
	// sharing it trust each other's certificates.
	TLSDir string
	// TrustDomain of the identities (default parley.local).
	TrustDomain string
	// NATSUsers are NATS users beyond the services' and AdminUser (a benchmark's own
	// clients, each with its role's exact permissions): the embedded server admits them,
	// ConnectNATS connects as them, their seeds live under DataDir/nats-auth. An external
	// server must know them already; a server started apart with StartNATS is given the
	// same list.
	NATSUsers []natsauth.User
}

// identityModeEnv is the setting that turns internal TLS off; set in Options.Env it
// means InsecureInternal.
const identityModeEnv = "INTERNAL_TLS"

// Identities are the names the development CA issues certificates to: every service,
// and the admin identity for operators and the CLI.
var Identities = append(slices.Clone(Services), identity.Admin)

// Stack is a running constellation.
type Stack struct {
	opts        Options
	Ports       Ports
	NATSURL     string
	DatabaseURL string
	nats        *embeddedNATS
	natsMu      sync.Mutex // guards natsUsers and the embedded server's users
	natsUsers   []natsauth.User
	// natsLocked is set when the NATS server admits only known users; services then
	// present their seeds (a server without users refuses nkeys).
	natsLocked bool
	// natsCA is the CA bundle the NATS server's certificate chains to ("" for an external
	// server without TLS); services get it as NATS_TLS_CA_FILE.
	natsCA string
	pg     *Postgres
	// sealKeys are the audit seal key pair's files (EnsureSealKeys).
	sealKeys    SealKeys
	sealCreated bool
	mu          sync.Mutex
	logMu       sync.Mutex
	procs       map[string]*Process
	binDir      string
	// instances are extra processes of a service (StartInstance), in start order.
	instances []instance
}

// instance is one more process of a service, under its own name and ports.
type instance struct {
	name, service   string
	port, extraPort int
	env             map[string]string
}

// Process is one running service.
type Process struct {
	Name string
	Env  []string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *tailBuffer
}

// Start builds the services, starts the dependencies and the services, and waits until
// every service is ready. On error everything started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if opts.Env[identityModeEnv] == identity.ModeOff {
		opts.InsecureInternal = true
	}
	if opts.TLSDir == "" {
		opts.TLSDir = filepath.Join(opts.DataDir, "tls")
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = defaultTrustDomain
	}
	s := &Stack{opts: opts, Ports: opts.Ports, procs: map[string]*Process{}, binDir: filepath.Join(opts.DataDir, "bin")}
	if opts.BinDir != "" {
		s.binDir = opts.BinDir
	}
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = s.Stop(stopCtx)
		}
	}()

	if opts.BinDir == "" {
		_, _ = fmt.Fprintln(opts.Progress, "building services ...")
		if err := Build(ctx, opts.RepoRoot, s.binDir, opts.Race); err != nil {
			return s, err
		}
	}

	// The development CA issues the services' identities (unless INTERNAL_TLS=off) and
	// the embedded NATS server's certificate: NATS serves TLS either way.
	var idents []string
	if opts.InsecureInternal {
		_, _ = fmt.Fprintln(opts.Progress, "INTERNAL_TLS=off: internal calls are neither authenticated nor encrypted (NATS still serves TLS)")
	} else {
		idents = slices.Clone(Identities)
	}
	if opts.NATSURL == "" {
		idents = append(idents, NATSIdentity)
	}
	if len(idents) > 0 {
		issued, err := devca.Ensure(opts.TLSDir, opts.TrustDomain, idents)
		if err != nil {
			return s, fmt.Errorf("development CA: %w", err)
		}
		if len(issued) > 0 {
			_, _ = fmt.Fprintf(opts.Progress, "issued development certificates for %s in %s\n", strings.Join(issued, ", "), opts.TLSDir)
		}
	}

	// The routers seal the audit copies' texts no caller asked to scrub to the audit
	// service, which scrubs them (one key pair per data dir, made once).
	if s.sealKeys, s.sealCreated, err = EnsureSealKeys(filepath.Join(opts.DataDir, "seal")); err != nil {
		return s, err
	}
	if s.sealCreated {
		_, _ = fmt.Fprintf(opts.Progress, "generated the audit seal key pair in %s\n", filepath.Dir(s.sealKeys.Private))
	}

	// Every service that uses NATS has its own user (libs/natsauth), seeds under
	// DataDir/nats-auth. The embedded server admits only them; an external server
	// enforces them once configured with `parley-up -print-nats-config`.
	if s.natsUsers, err = StackUsers(opts.DataDir, opts.Env, opts.NATSUsers...); err != nil {
		return s, err
	}
	if opts.NATSURL != "" {
		// Services inherit the process environment, so a CA exported there counts too.
		s.NATSURL, s.natsCA = opts.NATSURL, cmp.Or(opts.Env["NATS_TLS_CA_FILE"], os.Getenv("NATS_TLS_CA_FILE"))
		if s.natsLocked, err = natsAdmitsOnlyUsers(s.NATSURL, s.natsCA); err != nil {
			return s, err
		}
		_, _ = fmt.Fprintf(opts.Progress, "using NATS at %s\n", s.NATSURL)
		if !s.natsLocked {
			_, _ = fmt.Fprintf(opts.Progress, "warning: NATS at %s admits any client; `parley-up -print-nats-config` prints the users and permissions to give it\n", s.NATSURL)
		}
	} else {
		f := s.Files(NATSIdentity)
		n, err := startNATS(filepath.Join(opts.DataDir, "nats"), s.natsUsers, f, opts.NATSNodes)
		if err != nil {
			return s, err
		}
		s.nats, s.natsLocked, s.natsCA = n, true, f.CA
		s.NATSURL = n.URL()
		if len(n.nodes) > 1 {
			_, _ = fmt.Fprintf(opts.Progress, "started an embedded NATS cluster of %d nodes with JetStream and TLS at %s\n", len(n.nodes), s.NATSURL)
		} else {
			_, _ = fmt.Fprintf(opts.Progress, "started embedded NATS with JetStream and TLS at %s\n", s.NATSURL)
		}
	}

	pg, dbURL, err := ResolvePostgres(ctx, opts.Postgres, filepath.Join(opts.DataDir, "postgres"), opts.Progress)
	if err != nil {
		return s, err
	}
	s.pg, s.DatabaseURL = pg, dbURL

	for _, name := range Services {
		if err := s.StartService(ctx, name); err != nil {
			return s, err
		}
	}
	for _, name := range Services {
		if err := s.WaitReady(ctx, name, opts.ReadyTimeout); err != nil {
			return s, err
		}
	}
	return s, nil
}

// Build compiles the five services into binDir.
func Build(ctx context.Context, repoRoot, binDir string, race bool) error {
	args := []string{"build", "-o", binDir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	for _, name := range Services {
		args = append(args, "./services/"+name+"/cmd/"+name)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build services: %w\n%s", err, out)
	}
	return nil
}

// Binary is the path of service name's built binary.
func (s *Stack) Binary(name string) string { return filepath.Join(s.binDir, name) }

// URL is the base URL of service name: https:// for the internal services under
// mutual TLS, http:// for the router's public port.
func (s *Stack) URL(name string) string {
	scheme := "https"
	if s.opts.InsecureInternal || s.serviceOf(name) == "router" {
		scheme = "http"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, s.port(name))
}

// serviceOf is the service an instance or service name runs.
func (s *Stack) serviceOf(name string) string {
	if inst, ok := s.instance(name); ok {
		return inst.service
	}
	return name
}

// SealKeys are the files of the audit seal key pair the routers and the audit service
// get (Options.Env can set ROUTER_AUDIT_SEAL_KEY_FILE to "" for routers that scrub audit
// copies themselves).
func (s *Stack) SealKeys() SealKeys { return s.sealKeys }

// TLSDir is the folder of the development CA and certificates.
func (s *Stack) TLSDir() string { return s.opts.TLSDir }

// InsecureInternal reports whether the internal services run without TLS
// (Options.InsecureInternal, or INTERNAL_TLS=off in Options.Env).
func (s *Stack) InsecureInternal() bool { return s.opts.InsecureInternal }

// TrustDomain is the trust domain of the stack's identities.
func (s *Stack) TrustDomain() string { return s.opts.TrustDomain }

// Files are the certificate files of identity name (a service or "admin").
func (s *Stack) Files(name string) devca.Files { return devca.FilesOf(s.opts.TLSDir, name) }

// Client is an HTTP client (HTTP/2 over TLS by ALPN, HTTP/1.1 for http:// URLs) that
// trusts the development CA and presents identity as's certificate; with as empty it
// presents none, as a probe, a scraper or an outsider would.
func (s *Stack) Client(as string) (*http.Client, error) {
	cfg, err := s.TLSConfig(as)
	if err != nil {
		return nil, err
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Protocols: protocols}}, nil
}

// TLSConfig is the client TLS configuration of a caller of the internal services: TLS
// 1.3, trusting the development CA, presenting identity as's certificate (none with as
// empty).
func (s *Stack) TLSConfig(as string) (*tls.Config, error) {
	ca, err := os.ReadFile(s.Files(as).CA)
	if err != nil && !s.opts.InsecureInternal {
		return nil, fmt.Errorf("read the development CA: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}
	if as != "" {
		f := s.Files(as)
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("certificate of %s: %w", as, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// RouterGRPCAddr is the router's Dapr gRPC address (host:port).
func (s *Stack) RouterGRPCAddr() string {
	return fmt.Sprintf("127.0.0.1:%d", s.Ports.RouterGRPC)
}

func (s *Stack) port(name string) int {
	if inst, ok := s.instance(name); ok {
		return inst.port
	}
	switch name {
	case "router":
		return s.Ports.Router
	case "pii-scrubber":
		return s.Ports.Scrubber
	case "cache":
		return s.Ports.Cache
	case "provider-worker":
		return s.Ports.Worker
	case "audit":
		return s.Ports.Audit
	}
	return 0
}

// ServiceEnv is the environment service name gets.
func (s *Stack) ServiceEnv(name string) []string {
	var env map[string]string
	if inst, ok := s.instance(name); ok {
		env = s.serviceEnv(inst.service)
		env["RPC_ADDR"] = fmt.Sprintf("127.0.0.1:%d", inst.port)
		if inst.service == "router" {
			env["RPC_GRPC_ADDRS"] = fmt.Sprintf("127.0.0.1:%d", inst.extraPort)
		}
		if _, ok := env["NATS_NKEY_SEED_FILE"]; ok {
			env["NATS_NKEY_SEED_FILE"] = s.NATSSeedFile(name)
		}
		for k, v := range inst.env {
			env[k] = v
		}
	} else {
		env = s.serviceEnv(name)
	}
	out := os.Environ()
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// serviceEnv is the environment of service name, without the process environment.
func (s *Stack) serviceEnv(name string) map[string]string {
	env := map[string]string{
		"LOG_LEVEL": "info",
		"RPC_ADDR":  fmt.Sprintf("127.0.0.1:%d", s.port(name)),
		"NATS_URL":  s.NATSURL,
	}
	if s.natsCA != "" {
		env["NATS_TLS_CA_FILE"] = s.natsCA
	}
	if s.opts.InsecureInternal {
		env[identityModeEnv] = identity.ModeOff
	} else {
		f := s.Files(name)
		env[identityModeEnv] = identity.ModeOn
		env["TLS_CA_FILE"], env["TLS_CERT_FILE"], env["TLS_KEY_FILE"] = f.CA, f.Cert, f.Key
		env["TLS_TRUST_DOMAIN"] = s.opts.TrustDomain
	}
	switch name {
	case "router":
		env["RPC_GRPC_ADDRS"] = s.RouterGRPCAddr()
		env["COMPONENTS_DIR"] = s.opts.ComponentsDir
		env["ROUTER_SCRUBBER_URL"] = s.URL("pii-scrubber")
		env["ROUTER_CACHE_URL"] = s.URL("cache")
		env["ROUTER_AUDIT_URL"] = s.URL("audit")
		env["ROUTER_AUDIT_SEAL_KEY_FILE"] = s.sealKeys.Public
	case "provider-worker":
		env["COMPONENTS_DIR"] = s.opts.ComponentsDir
	case "audit":
		env["DATABASE_URL"] = s.DatabaseURL
		env["AUDIT_SEAL_KEY_FILE"] = s.sealKeys.Private
		env["AUDIT_SCRUBBER_URL"] = s.URL("pii-scrubber")
	}
	if _, ok := natsUser(name, name, nil); ok && s.natsLocked {
		env["NATS_NKEY_SEED_FILE"] = s.NATSSeedFile(name)
	}
	if s.nats != nil && len(s.nats.nodes) >= clusterReplicas {
		for _, k := range ReplicaSettings() {
			env[k] = strconv.Itoa(clusterReplicas)
		}
	}
	for k, v := range s.opts.Env {
		env[k] = v
	}
	return env
}

// StartInstance starts one more process of service (a second router, say) under name,
// on free loopback ports, with env on top of the service's usual environment, and
// waits until it is ready. StartService, StopService, Process, URL and Signal accept
// name afterwards; Stop stops instances before the services.
func (s *Stack) StartInstance(ctx context.Context, service, name string, env map[string]string) error {
	if !slices.Contains(Services, service) {
		return fmt.Errorf("start instance %s: unknown service %q", name, service)
	}
	if _, ok := s.instance(name); ok || slices.Contains(Services, name) {
		return fmt.Errorf("start instance %s: the name is taken", name)
	}
	inst := instance{name: name, service: service, env: env}
	var err error
	if inst.port, err = FreePort(); err != nil {
		return err
	}
	if inst.extraPort, err = FreePort(); err != nil {
		return err
	}
	userEnv := s.serviceEnv(service)
	for k, v := range env {
		userEnv[k] = v
	}
	if err := s.addNATSUser(name, service, userEnv); err != nil {
		return fmt.Errorf("start instance %s: %w", name, err)
	}
	s.mu.Lock()
	s.instances = append(s.instances, inst)
	s.mu.Unlock()
	if err := s.StartService(ctx, name); err != nil {
		return err
	}
	return s.WaitReady(ctx, name, s.opts.ReadyTimeout)
}

// GRPCAddr is the extra (Dapr gRPC) address of a router instance.
func (s *Stack) GRPCAddr(name string) string {
	if inst, ok := s.instance(name); ok {
		return fmt.Sprintf("127.0.0.1:%d", inst.extraPort)
	}
	return s.RouterGRPCAddr()
}

func (s *Stack) instance(name string) (instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, inst := range s.instances {
		if inst.name == name {
			return inst, true
		}
	}
	return instance{}, false
}

// StartService starts (or restarts) one service process.
func (s *Stack) StartService(ctx context.Context, name string) error {
	return s.StartServiceWithEnv(ctx, name, s.ServiceEnv(name))
}

// StartServiceWithEnv starts one service process with env.
func (s *Stack) StartServiceWithEnv(_ context.Context, name string, env []string) error {
	// The process outlives any request context: it is stopped by Stop or StopService.
	binary := name
	if inst, ok := s.instance(name); ok {
		binary = inst.service
	}
	cmd := exec.Command(filepath.Join(s.binDir, binary)) //nolint:gosec // our own binary
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &Process{Name: name, Env: env, cmd: cmd, done: make(chan struct{}), log: newTailBuffer(64 << 10)}
	w := io.MultiWriter(newPrefixWriter(&s.logMu, s.opts.Log, name), p.log)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	return nil
}

// Process returns the running process of service name.
func (s *Stack) Process(name string) *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[name]
}

// WaitReady polls the service's /readyz until it answers 200.
func (s *Stack) WaitReady(ctx context.Context, name string, timeout time.Duration) error {
	p := s.Process(name)
	url := s.URL(name) + "/readyz"
	deadline := time.Now().Add(timeout)
	// Readiness is open: no certificate, as a Kubernetes probe.
	client, err := s.Client("")
	if err != nil {
		return err
	}
	client.Timeout = 2 * time.Second
	defer client.CloseIdleConnections()
	for {
		select {
		case <-p.done:
			if p.err == nil {
				return fmt.Errorf("%s exited with status 0 before it was ready:\n%s", name, p.log.String())
			}
			return fmt.Errorf("%s exited before it was ready (%w):\n%s", name, p.err, p.log.String())
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("readiness request: %w", err)
		}
		if res, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s:\n%s", name, timeout, p.log.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Signal sends sig to service name.
func (s *Stack) Signal(name string, sig syscall.Signal) error {
	p := s.Process(name)
	if p == nil {
		return fmt.Errorf("%s is not running", name)
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits until p exits or ctx ends and returns its exit error.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Log returns the tail of the process's output.
func (p *Process) Log() string { return p.log.String() }

// StopService sends SIGTERM and waits for a clean exit, killing the process if ctx ends first.
func (s *Stack) StopService(ctx context.Context, name string) error {
	p := s.Process(name)
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		var ee *exec.ExitError
		if p.err != nil && !errors.As(p.err, &ee) {
			return fmt.Errorf("%s: %w", name, p.err)
		}
		if p.err != nil {
			return fmt.Errorf("%s exited with %w after SIGTERM:\n%s", name, p.err, p.log.String())
		}
		return nil
	case <-ctx.Done():
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop in time; killed", name)
	}
}

// Stop stops the services in reverse order, then NATS and a private PostgreSQL.
func (s *Stack) Stop(ctx context.Context) error {
	var errs []error
	s.mu.Lock()
	instances := slices.Clone(s.instances)
	s.mu.Unlock()
	for i := len(instances) - 1; i >= 0; i-- {
		errs = append(errs, s.StopService(ctx, instances[i].name))
	}
	for i := len(Services) - 1; i >= 0; i-- {
		errs = append(errs, s.StopService(ctx, Services[i]))
	}
	if s.nats != nil {
		s.nats.Stop()
	}
	if s.pg != nil {
		errs = append(errs, s.pg.Stop(ctx))
	}
	return errors.Join(errs...)
}

// FindRepoRoot walks up from dir to the folder that holds go.work.
func FindRepoRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.work above %s", dir)
		}
	}
}

// prefixWriter prefixes each complete line with [name].
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func newPrefixWriter(mu *sync.Mutex, w io.Writer, name string) *prefixWriter {
	return &prefixWriter{mu: mu, w: w, prefix: fmt.Sprintf("%-16s| ", name)}
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			break
		}
		p.mu.Lock()
		_, _ = io.WriteString(p.w, p.prefix+string(p.buf[:i+1]))
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, b...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// RepoRoot is the repository root above the working directory.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return FindRepoRoot(wd)
}

// SmallMachineGOMAXPROCS is the GOMAXPROCS make up (and make bench) gives every process on
// a machine of cpus CPUs when the environment sets none (set: its GOMAXPROCS): 1 on two
// CPUs or fewer, where the whole constellation shares them and a second P per process buys
// more scheduler switches than parallelism (docs/benchmarks.md, GOMAXPROCS); otherwise
// none, and each process keeps Go's default (the CPUs, or the container's CPU limit).
func SmallMachineGOMAXPROCS(cpus int, set string) (string, bool) {
	if set != "" || cpus > 2 {
		return "", false
	}
	return "1", true
}
