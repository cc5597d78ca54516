// Command parley-bench (`make bench`) measures what Parley's paths cost against the
// one-hop floor in the same run: it starts the constellation (or uses a running router),
// the floor (parley-floor, an echo in a process of its own) and the fake provider, drives
// Dapr ConverseAlpha2 over gRPC at concurrency 1 and -c (16), and prints each path's
// latency, throughput and CPU per request per process with its ratio to the floor's.
// Beside them it measures the floors of the internal crossings (connect-mtls, nats-rr,
// js-publish) and sums, per path, the floors of the crossings the path must keep
// (keptPaths): the lowest ratio to the floor the path could reach (docs/benchmarks.md).
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/integration/otlpsink"
	"github.com/parleyhq/parley/integration/stack"
	"github.com/parleyhq/parley/libs/identity"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "parley-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	duration := flag.Duration("duration", 4*time.Second, "how long each load run lasts (every path runs at concurrency 1 and at -c)")
	addr := flag.String("addr", "", "Dapr gRPC address of a running router (default: start the stack); its echo component must cache, as make up's")
	env := envFlag{}
	flag.Var(env, "set", "KEY=VALUE environment for every service of the started stack (repeatable), e.g. -set ROUTER_AUDIT_SCRUB=false")
	pathsFlag := flag.String("paths", strings.Join(allPaths, ","), "comma-separated paths to measure: floor (always), floor-connect, internal-hop, connect-mtls, nats-rr, js-publish, miss, native, openai, hit, scrubbed, provider, stream; "+
		"scaling (not by default) runs 1, 2 and 4 workers of one component on a slow fake provider")
	streams := flag.Int("streams", 500, "concurrent streams of the stream path")
	conc := flag.Int("c", 16, "concurrency of the throughput and CPU run")
	keys := flag.Bool("keys", false, "start the router with API keys: every router path presents a key with (unreached) limits, shared through NATS (docs/tenants.md)")
	natsMode := flag.String("nats", "process", "where the started stack's NATS server runs: process (its own, so its CPU is measured apart) or embedded (in this process, as make up)")
	natsChild := flag.String(natsChildFlag, "", "internal: run only the stack's NATS server, for a stack with this data directory")
	traces := flag.Bool("traces", false, "turn tracing on in the started stack: every service exports its spans to an OTLP receiver in this process, "+
		"which counts and drops them (the cost of telemetry on the hot path; compare with a run without)")
	scalingLatency := flag.Duration("scaling-latency", 20*time.Millisecond, "provider latency of the scaling path's fake provider")
	scalingSlots := flag.Int("scaling-slots", 4, "WORKER_CONCURRENCY of each worker of the scaling path")
	flag.Parse()
	if *natsChild != "" {
		return runNATSChild(*natsChild, env)
	}
	if _, set := env["WORKER_CONCURRENCY"]; !set && slices.Contains(strings.Split(*pathsFlag, ","), pathStream) {
		// Every concurrent stream holds a worker slot for its whole length.
		env["WORKER_CONCURRENCY"] = strconv.Itoa(max(64, *streams+16))
	}
	if *natsMode != "process" && *natsMode != "embedded" {
		return fmt.Errorf("-nats must be process or embedded, got %q", *natsMode)
	}
	paths := strings.Split(*pathsFlag, ",")
	scaling := slices.Contains(paths, pathScaling)
	if scaling {
		paths = slices.DeleteFunc(paths, func(p string) bool { return p == pathScaling })
		switch {
		case *addr != "":
			return fmt.Errorf("-paths %s starts workers of its own: it needs the started stack, not -addr", pathScaling)
		case os.Getenv("NATS_URL") != "":
			return fmt.Errorf("-paths %s starts workers as new NATS users: it needs the embedded NATS, not NATS_URL", pathScaling)
		case *scalingSlots < 1 || *scalingLatency <= 0:
			return fmt.Errorf("-scaling-slots and -scaling-latency must be positive")
		}
		// The scaling workers join as NATS users of their own, which only the embedded
		// server learns of while it runs.
		*natsMode = "embedded"
		if _, ok := env["WORKER_COMPONENTS"]; !ok {
			// The stack's own worker leaves the scaling component to the dedicated ones.
			env["WORKER_COMPONENTS"] = "echo,fake"
		}
	}
	// As make up: on a machine of two CPUs or fewer every process gets one P unless the
	// environment sets GOMAXPROCS — the services (-set GOMAXPROCS=n sets theirs), and the
	// floors, the fake provider, NATS and this load generator, which inherit it, so that
	// the floor stays the cheapest crossing the machine allows.
	if v, ok := stack.SmallMachineGOMAXPROCS(runtime.NumCPU(), os.Getenv("GOMAXPROCS")); ok {
		if err := os.Setenv("GOMAXPROCS", v); err != nil {
			return err
		}
		n, _ := strconv.Atoi(v)
		runtime.GOMAXPROCS(n)
	}
	ctx := context.Background()
	root, err := stack.RepoRoot()
	if err != nil {
		return err
	}
	h, err := startHelpers(ctx, root, *addr == "")
	if err != nil {
		return err
	}
	defer h.stop()
	if scaling {
		if h.slowFake, err = startHelper("slow fake provider", filepath.Join(h.dir, "fakeprovider"), "listening on http://",
			"-addr", "127.0.0.1:0", "-latency", scalingLatency.String()); err != nil {
			return err
		}
	}

	if *traces {
		sink, err := otlpsink.Start("127.0.0.1:0")
		if err != nil {
			return err
		}
		sink.Discard()
		defer func() {
			fmt.Printf("traces: %d spans received\n", sink.Received())
			_ = sink.Close(ctx)
		}()
		env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.Endpoint()
	}
	t := target{natsEmbedded: *natsMode == "embedded", streams: *streams,
		procs: cmp.Or(env["GOMAXPROCS"], os.Getenv("GOMAXPROCS"), "Go's default")}
	if *addr != "" {
		t.procs = "unknown (-addr: a running stack)"
	}
	var own *stack.Stack
	routerAddr := *addr
	var apiKey string
	if routerAddr == "" {
		data, err := os.MkdirTemp("", "parley-bench-")
		if err != nil {
			return err
		}
		if *keys {
			if apiKey, err = benchKeys(env, data); err != nil {
				return err
			}
		}
		// NATS_URL, else a NATS child of this benchmark, else (-nats embedded) the stack's own.
		natsURL := os.Getenv("NATS_URL")
		if !t.natsEmbedded && natsURL == "" {
			if h.nats, err = startNATSChild(data, env); err != nil {
				return err
			}
			natsURL = h.nats.addr
		}
		s, stop, err := startStack(ctx, root, env, natsURL, h.nats != nil, h, data)
		if err != nil {
			return err
		}
		defer stop()
		own = s
		routerAddr = s.RouterGRPCAddr()
		t.routerURL = s.URL("router")
		t.fakeURL = "http://" + h.fake.addr
		t.fakeStreamURL = "http://" + h.fakeStream.addr
		var closeHop func()
		t.hop, closeHop, err = internalHop(ctx, s)
		defer closeHop()
		if err != nil {
			return err
		}
		ownNATS := os.Getenv("NATS_URL") == ""
		if !ownNATS {
			fmt.Fprintf(os.Stderr, "parley-bench: paths %s and %s skipped (their NATS users are known to the benchmark's own NATS only: unset NATS_URL)\n",
				pathNATSRR, pathJSPublish)
		}
		closeFloors, err := crossingFloors(ctx, s, h, &t, ownNATS)
		defer closeFloors()
		if err != nil {
			return err
		}
		if t.meter, err = newMeter(ctx, s, h); err != nil {
			return err
		}
		defer t.meter.close()
	}
	var routerOpts []grpc.DialOption
	if apiKey != "" {
		routerOpts = append(routerOpts, withKey(apiKey))
	}
	if t.router, err = dialGRPC(routerAddr, routerOpts...); err != nil {
		return err
	}
	defer func() { _ = t.router.Close() }()
	if t.floor, err = dialGRPC(h.floor.addr); err != nil {
		return err
	}
	defer func() { _ = t.floor.Close() }()
	if t.floorConnect, err = dialGRPC(h.floorConnect.addr); err != nil {
		return err
	}
	defer func() { _ = t.floorConnect.Close() }()
	if err := benchPaths(ctx, t, paths, *duration, *conc); err != nil {
		return err
	}
	if !scaling {
		return nil
	}
	runs, err := benchScaling(ctx, own, t, *duration, *scalingSlots)
	if err != nil {
		return err
	}
	printScaling(os.Stdout, runs, *scalingSlots, *scalingLatency)
	fmt.Printf("load average at the end: %s\n", loadAverage())
	return nil
}

type result struct {
	n, errors int
	rps       float64
	p50, p99  time.Duration
}

// load runs call from c goroutines for d and collects every latency.
func load(ctx context.Context, call func(context.Context) error, c int, d time.Duration) result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			local := make([]time.Duration, 0, 1<<14)
			localErrs := 0
			for ctx.Err() == nil {
				t := time.Now()
				err := call(context.WithoutCancel(ctx))
				local = append(local, time.Since(t))
				if err != nil {
					localErrs++
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += localErrs
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	return result{n: len(lat), errors: errs, rps: float64(len(lat)) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99)}
}

func fmtDur(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.0fµs", float64(d.Nanoseconds())/1e3)
	}
	return fmt.Sprintf("%.2fms", float64(d.Nanoseconds())/1e6)
}

func withDefaults(env envFlag) map[string]string {
	out := map[string]string{"LOG_LEVEL": "warn"}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// envFlag collects -set KEY=VALUE flags.
type envFlag map[string]string

func (e envFlag) String() string { return fmt.Sprint(map[string]string(e)) }

func (e envFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	e[k] = val
	return nil
}

// startStack starts the constellation of the repository at root with data as its data
// directory (removed at stop), on the NATS at natsURL (childNATS: this benchmark's child),
// with components for h's fake providers.
func startStack(ctx context.Context, root string, env envFlag, natsURL string, childNATS bool, h *helpers, data string) (*stack.Stack, func(), error) {
	comps := filepath.Join(data, "components")
	if err := os.MkdirAll(comps, 0o755); err != nil {
		return nil, nil, err
	}
	if err := writeComponents(root, comps, h.fake.addr, h.fakeStream.addr); err != nil {
		return nil, nil, err
	}
	if h.slowFake != nil {
		if err := writeScalingComponent(comps, h.slowFake.addr); err != nil {
			return nil, nil, err
		}
	}
	ports, err := stack.FreePorts()
	if err != nil {
		return nil, nil, err
	}
	log, err := os.Create(filepath.Join(data, "services.log"))
	if err != nil {
		return nil, nil, err
	}
	s, err := stack.Start(ctx, stack.Options{
		RepoRoot: root, DataDir: data, ComponentsDir: comps, Ports: ports,
		NATSURL:  natsURL,
		Postgres: stack.PostgresOptions{URL: os.Getenv("DATABASE_URL"), FreshDatabase: true, Install: true},
		Env:      stackEnv(env, childNATS, data),
		// The NATS floors' users (an external NATS_URL does not know them: see run).
		NATSUsers: benchNATSUsers(),
		Log:       log, Progress: os.Stderr,
	})
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(os.Stderr, "stack up (logs: %s)\n", log.Name())
	return s, func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = s.Stop(stopCtx)
		_ = log.Close()
		_ = os.RemoveAll(data)
	}, nil
}

// internalHop calls the pii-scrubber directly with the router's identity and client
// (rpcclient.RPC), the way the router does: one call over one reused connection. The
// function it returns closes the connection.
func internalHop(ctx context.Context, s *stack.Stack) (func(context.Context) error, func(), error) {
	clients, err := routerClients(ctx, s)
	if err != nil {
		return nil, func() {}, fmt.Errorf("internal-hop: %w", err)
	}
	scrubber := piiv1connect.NewScrubberServiceClient(clients.RPC(identity.Scrubber), s.URL("pii-scrubber"), clients.Options()...)
	req := &piiv1.ScrubRequest{Texts: []string{"What is the capital of France? Answer in one word, please."}}
	return func(ctx context.Context) error {
		_, err := scrubber.Scrub(ctx, req)
		return err
	}, clients.CloseIdleConnections, nil
}

// stackEnv is the stack's environment: env with defaults, and the CA of the NATS child
// (childNATS) that serves TLS with a certificate from the development CA under data.
func stackEnv(env envFlag, childNATS bool, data string) map[string]string {
	out := withDefaults(env)
	if childNATS {
		out["NATS_TLS_CA_FILE"] = stack.NATSCAFileOf(data)
	}
	return out
}
