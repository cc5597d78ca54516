// Command parley-up runs the whole Parley constellation locally (`make up`): embedded
// NATS with JetStream unless NATS_URL is set, PostgreSQL from DATABASE_URL or
// 127.0.0.1:5432 or a private instance under .data/, and the five services with
// prefixed logs. Ctrl-C stops everything. Each service connects to NATS as its own user
// (nkey seeds under .data/nats-auth); -print-nats-config prints the server configuration
// that gives an external NATS those users and their permissions. -workers (make up
// WORKERS=...) adds provider-worker processes dedicated to one component each.
// Internal calls run over mutual TLS with a development CA and certificates under
// .data/tls (created on first run, renewed when due), unless INTERNAL_TLS=off. The
// routers seal the audit copies' texts to the audit service with the key pair under
// .data/seal (created on first run; docs/security.md, "The sealed audit copy"). -traces
// (make up TRACES=1) receives the services' traces in this process and prints each as a
// tree (integration/otlpsink).
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/parleyhq/parley/integration/otlpsink"
	"github.com/parleyhq/parley/integration/stack"
	"github.com/parleyhq/parley/libs/natsauth"
)

// traceQuiet is how long a trace must go without a new span before -traces prints it:
// longer than the services' export delay (OTEL_BSP_SCHEDULE_DELAY) plus the audit
// service's batch wait, so a conversation's spans print together.
const traceQuiet = 1500 * time.Millisecond

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "parley-up:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := stack.RepoRoot()
	if err != nil {
		return err
	}
	components := flag.String("components", filepath.Join(root, "deploy", "components"), "directory of Dapr component files")
	data := flag.String("data", filepath.Join(root, ".data"), "directory for the NATS store, a private PostgreSQL and binaries")
	race := flag.Bool("race", false, "build the services with the race detector")
	printNATS := flag.Bool("print-nats-config", false, "print the NATS server configuration (users and permissions) for an external NATS_URL and exit")
	workersFlag := flag.String("workers", "", "extra workers by component, `component=N,...`: N provider-worker processes serving only that "+
		"component (WORKER_COMPONENTS), each as its own NATS user, besides the one serving all (with NATS_URL, give your server their users)")
	traces := flag.Bool("traces", false, "receive the services' traces in this process (OTLP/HTTP on a loopback port) and print each "+
		"conversation's trace as a tree: service, span, start and duration (make up TRACES=1)")
	natsNodes := flag.Int("nats-nodes", 1, "run the embedded NATS as a cluster of this many nodes (JetStream on each, routes on loopback); "+
		"with 3 or more the audit stream and the cache bucket get 3 replicas")
	sealKeys := flag.String("seal-keys", "", "write a new audit seal key pair to `DIR` (audit.key, private, 0600; audit.pub) "+
		"for the Secrets parley-audit-seal and parley-audit-seal-public (docs/deploy.md) and exit; an existing pair is kept")
	flag.Parse()
	if *sealKeys != "" {
		keys, created, err := stack.EnsureSealKeys(*sealKeys)
		if err != nil {
			return err
		}
		if !created {
			fmt.Printf("kept the existing pair: %s, %s\n", keys.Private, keys.Public)
			return nil
		}
		fmt.Printf("wrote %s (private: the audit service only) and %s (public: the routers)\n", keys.Private, keys.Public)
		return nil
	}
	if *natsNodes < 1 {
		return fmt.Errorf("-nats-nodes must be at least 1, got %d", *natsNodes)
	}
	if *natsNodes > 1 && os.Getenv("NATS_URL") != "" {
		return fmt.Errorf("-nats-nodes %d runs an embedded cluster; it does not apply with NATS_URL (an external server)", *natsNodes)
	}
	workers, err := parseWorkers(*workersFlag)
	if err != nil {
		return fmt.Errorf("-workers: %w", err)
	}

	if *printNATS {
		return printNATSConfig(*data)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	abs, err := filepath.Abs(*components)
	if err != nil {
		return err
	}
	env := map[string]string{}
	procsNote := cmp.Or(os.Getenv("GOMAXPROCS"), "Go's default (the CPUs, or the container's CPU limit)")
	if v, ok := stack.SmallMachineGOMAXPROCS(runtime.NumCPU(), os.Getenv("GOMAXPROCS")); ok {
		env["GOMAXPROCS"] = v
		procsNote = fmt.Sprintf("%s for every service on this %d-CPU machine (GOMAXPROCS=n make up sets another)", v, runtime.NumCPU())
	}
	traceNote := "off (make up TRACES=1 prints each conversation's trace)"
	if *traces {
		sink, err := otlpsink.Start("127.0.0.1:0")
		if err != nil {
			return err
		}
		defer func() { _ = sink.Close(context.WithoutCancel(ctx)) }()
		env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.Endpoint()
		// Spans reach the terminal a fifth of a second after they end, not five seconds.
		env["OTEL_BSP_SCHEDULE_DELAY"] = "200"
		traceNote = "printed here, a tree per trace (OTLP receiver " + sink.Endpoint() + ")"
		go sink.Print(ctx, os.Stdout, traceQuiet)
	}
	s, err := stack.Start(ctx, stack.Options{
		RepoRoot:      root,
		DataDir:       *data,
		ComponentsDir: abs,
		Ports:         stack.DefaultPorts,
		NATSURL:       os.Getenv("NATS_URL"),
		NATSNodes:     *natsNodes,
		Postgres:      stack.PostgresOptions{URL: os.Getenv("DATABASE_URL"), Install: true},
		Race:          *race,
		// INTERNAL_TLS=off make up: plaintext inside, with a warning.
		InsecureInternal: os.Getenv("INTERNAL_TLS") == "off",
		Env:              env,
		Log:              os.Stdout,
		Progress:         os.Stdout,
		ReadyTimeout:     90 * time.Second,
	})
	if err != nil {
		return err
	}
	var extra strings.Builder
	for _, w := range workers {
		for i := 1; i <= w.count; i++ {
			name := fmt.Sprintf("provider-worker-%s-%d", w.component, i)
			if err := s.StartInstance(ctx, "provider-worker", name, map[string]string{"WORKER_COMPONENTS": w.component}); err != nil {
				return errors.Join(err, s.Stop(context.WithoutCancel(ctx)))
			}
			fmt.Fprintf(&extra, "  %-13s %s   (only %s)\n", "worker", s.URL(name), w.component)
		}
	}
	r := s.URL("router")
	fmt.Printf(`
Parley is up.

  router        %s   (Dapr HTTP, Connect, gRPC, gRPC-Web)
  router gRPC   %s        (Dapr SDKs: DAPR_GRPC_ENDPOINT=%s)
  pii-scrubber  %s
  cache         %s
  worker        %s   (health, metrics)
%s  audit         %s
  NATS          %s   (TLS, CA %s; each service its own user; seeds in %s)
  components    %s
  internal TLS  %s
  audit seal    %s   (routers seal audit copies to the audit service, which scrubs them)
  traces        %s
  GOMAXPROCS    %s


Try:

  curl -s %s/v1.0-alpha2/conversation/echo/converse \
    -H 'Content-Type: application/json' \
    -d '{"inputs":[{"messages":[{"ofUser":{"content":[{"text":"my email is test@test.com"}]}}]}],"scrubPii":true}'

or, after make install (docs/cli.md):

  parley components
  parley converse -c echo -scrub inputs "my email is test@test.com"
  parley audit list

or open the web console (docs/console.md): %s/console/

Ctrl-C stops everything.
`, r, s.RouterGRPCAddr(), s.RouterGRPCAddr(), s.URL("pii-scrubber"), s.URL("cache"), s.URL("provider-worker"), extra.String(), s.URL("audit"), s.NATSURL, cmp.Or(s.NATSCAFile(), "none"), filepath.Join(*data, "nats-auth"), abs, tlsNote(s), filepath.Dir(s.SealKeys().Private), traceNote, procsNote, r, r)

	<-ctx.Done()
	fmt.Println("\nstopping ...")
	stopCtx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := s.Stop(stopCtx); err != nil {
		return err
	}
	fmt.Println("stopped")
	return nil
}

// printNATSConfig prints the authorization block of the stack's NATS users, creating
// their seeds under data/nats-auth when missing, so an external server (NATS_URL) can
// admit the services `make up` starts.
func printNATSConfig(data string) error {
	users, err := stack.StackUsers(data, nil)
	if err != nil {
		return err
	}
	conf, err := natsauth.Config(users)
	if err != nil {
		return err
	}
	fmt.Printf("# Include in the NATS server's configuration; the services' seeds are in %s.\n%s",
		filepath.Join(data, "nats-auth"), conf)
	return nil
}

// tlsNote says how internal calls are secured and where the operator's certificate is.
func tlsNote(s *stack.Stack) string {
	if s.InsecureInternal() {
		return "OFF (INTERNAL_TLS=off): internal services accept anyone who reaches them"
	}
	admin := s.Files("admin")
	return fmt.Sprintf(`mutual TLS, development CA in %s
                admin certificate for operators: %s, %s
                (e.g. buf curl --cacert %s --cert %s --key %s \
                   %s/parley.cache.v1.CacheService/Purge -d '{"tenant":"default"}')`,
		s.TLSDir(), admin.Cert, admin.Key, admin.CA, admin.Cert, admin.Key, s.URL("cache"))
}

// workerPool is one entry of -workers: count extra workers serving component only.
type workerPool struct {
	component string
	count     int
}

// parseWorkers reads -workers, "component=N,..."; empty means none.
func parseWorkers(v string) ([]workerPool, error) {
	var out []workerPool
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	for item := range strings.SplitSeq(v, ",") {
		c, n, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || c == "" {
			return nil, fmt.Errorf("%q is not component=N", item)
		}
		if strings.ContainsAny(c, " .*>") {
			return nil, fmt.Errorf("%q is not a component name", c)
		}
		count, err := strconv.Atoi(n)
		if err != nil || count < 1 {
			return nil, fmt.Errorf("%q: the count must be a positive number", item)
		}
		if slices.ContainsFunc(out, func(p workerPool) bool { return p.component == c }) {
			return nil, fmt.Errorf("component %s is listed twice", c)
		}
		out = append(out, workerPool{component: c, count: count})
	}
	return out, nil
}
