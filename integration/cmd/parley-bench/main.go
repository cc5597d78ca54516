// Command parley-bench (`make bench`) measures what Parley's hops cost: it starts the
// constellation (or uses a running router), drives Dapr ConverseAlpha2 over gRPC at
// concurrency 1 and 32, and prints requests per second and p50/p99 latency next to the
// same figures for a direct, in-process call to the echo provider and, when it started
// the stack, for one internal Connect hop (a Scrub call straight to the pii-scrubber with a
// router's identity: over mutual TLS by default, h2c with -set INTERNAL_TLS=off).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/integration/stack"
	"github.com/parleyhq/parley/services/provider-worker/provider/echo"
)

const components = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: echo
spec:
  type: conversation.echo
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: echo-cached
spec:
  type: conversation.echo
  metadata:
  - name: responseCacheTTL
    value: 10m
`

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "parley-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	duration := flag.Duration("duration", 5*time.Second, "how long each scenario runs")
	addr := flag.String("addr", "", "Dapr gRPC address of a running router (default: start the stack)")
	env := envFlag{}
	flag.Var(env, "set", "KEY=VALUE environment for every service of the started stack (repeatable), e.g. -set ROUTER_AUDIT_SCRUB=false")
	flag.Parse()
	ctx := context.Background()

	target := *addr
	var hop func(context.Context) error
	if target == "" {
		s, stop, err := startStack(ctx, env)
		if err != nil {
			return err
		}
		defer stop()
		target = s.RouterGRPCAddr()
		if hop, err = internalHop(s); err != nil {
			return err
		}
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial %s: %w", target, err)
	}
	defer func() { _ = conn.Close() }()

	request := func(component string, scrub bool) *runtimev1.ConversationRequestAlpha2 {
		r := &runtimev1.ConversationRequestAlpha2{
			Name: component,
			Inputs: []*runtimev1.ConversationInputAlpha2{{Messages: []*runtimev1.ConversationMessage{{
				MessageTypes: &runtimev1.ConversationMessage_OfUser{OfUser: &runtimev1.ConversationMessageOfUser{
					Content: []*runtimev1.ConversationMessageContent{{Text: "What is the capital of France? Answer in one word, please."}},
				}},
			}}}},
		}
		if scrub {
			r.Inputs[0].ScrubPii = &scrub
			r.ScrubPii = &scrub
		}
		return r
	}
	viaRouter := func(component string, scrub bool) func(context.Context) error {
		req := request(component, scrub)
		return func(ctx context.Context) error {
			return conn.Invoke(ctx, "/dapr.proto.runtime.v1.Dapr/ConverseAlpha2", req, &runtimev1.ConversationResponseAlpha2{})
		}
	}
	e := echo.New()
	direct := func(ctx context.Context) error {
		_, err := e.Converse(ctx, &providerv1.Request{Messages: []*providerv1.Message{{
			Role:  providerv1.Role_ROLE_USER,
			Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "What is the capital of France? Answer in one word, please."}}},
		}}})
		return err
	}
	scenarios := []struct {
		name string
		call func(context.Context) error
	}{
		{"echo in process (direct call)", direct},
		{"router → worker (alpha2 gRPC)", viaRouter("echo", false)},
		{"router → scrubber → worker (scrubPii)", viaRouter("echo", true)},
		{"router → cache hit", viaRouter("echo-cached", false)},
	}
	if hop != nil {
		scenarios = append(scenarios[:1:1], append([]struct {
			name string
			call func(context.Context) error
		}{{"one internal hop (Scrub, as router)", hop}}, scenarios[1:]...)...)
	}
	// Warm up connections and the cache.
	for _, sc := range scenarios {
		for range 200 {
			if err := sc.call(ctx); err != nil {
				return fmt.Errorf("%s: %w", sc.name, err)
			}
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "scenario\tconcurrency\trequests\treq/s\tp50\tp99\terrors\t")
	for _, sc := range scenarios {
		for _, c := range []int{1, 32} {
			r := load(ctx, sc.call, c, *duration)
			_, _ = fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%d\t\n", sc.name, c, r.n, r.rps, fmtDur(r.p50), fmtDur(r.p99), r.errors)
		}
	}
	return tw.Flush()
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

func startStack(ctx context.Context, env envFlag) (*stack.Stack, func(), error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, nil, err
	}
	root, err := stack.FindRepoRoot(wd)
	if err != nil {
		return nil, nil, err
	}
	data, err := os.MkdirTemp("", "parley-bench-")
	if err != nil {
		return nil, nil, err
	}
	comps := filepath.Join(data, "components")
	if err := os.MkdirAll(comps, 0o755); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(comps, "echo.yaml"), []byte(components), 0o644); err != nil {
		return nil, nil, err
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
		NATSURL:  os.Getenv("NATS_URL"),
		Postgres: stack.PostgresOptions{URL: os.Getenv("DATABASE_URL"), FreshDatabase: true, Install: true},
		Env:      withDefaults(env),
		Log:      log, Progress: os.Stderr,
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

// internalHop calls the pii-scrubber directly with the router's certificate, the way
// router does: one Connect call over one reused connection.
func internalHop(s *stack.Stack) (func(context.Context) error, error) {
	url := s.URL("pii-scrubber")
	var client *http.Client
	if strings.HasPrefix(url, "https://") {
		c, err := s.Client("router")
		if err != nil {
			return nil, err
		}
		client = c
	} else {
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		client = &http.Client{Transport: &http.Transport{Protocols: p}}
	}
	scrubber := piiv1connect.NewScrubberServiceClient(client, url)
	req := &piiv1.ScrubRequest{Texts: []string{"What is the capital of France? Answer in one word, please."}}
	return func(ctx context.Context) error {
		_, err := scrubber.Scrub(ctx, req)
		return err
	}, nil
}
