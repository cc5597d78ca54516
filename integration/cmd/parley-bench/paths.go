package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
)

// The paths `make bench` measures, each at concurrency 1 (latency) and at -c (throughput
// and CPU per request), beside the one-hop floor measured in the same run.
const (
	pathFloor = "floor"
	// pathFloorConnect is the same echo served by connect-go on net/http, as Parley's
	// services serve: what the server library costs beside grpc-go's.
	pathFloorConnect = "floor-connect"
	// pathHop is one internal Connect call, a Scrub straight to the pii-scrubber with a
	// router's identity (over mutual TLS by default; h2c with -set INTERNAL_TLS=off).
	pathHop      = "internal-hop"
	pathMiss     = "miss"
	pathHit      = "hit"
	pathScrubbed = "scrubbed"
	pathProvider = "provider"
	// pathNative and pathOpenAI are the miss path through the other public APIs: the native
	// API (Connect, protobuf over h2c) and the OpenAI-compatible API (JSON over HTTP/1.1,
	// as OpenAI's SDKs call). Same crossings as miss; what differs is the adapter and the
	// wire format.
	pathNative = "native"
	pathOpenAI = "openai"
	// pathDirect is the fake provider called directly: subtracted from the provider path.
	pathDirect = "fake-direct"
)

var allPaths = []string{pathFloor, pathFloorConnect, pathHop, pathMiss, pathNative, pathOpenAI, pathHit, pathScrubbed, pathProvider, pathStream}

// The columns of the CPU table, in order: the load generator, the floor server, the
// constellation's processes and the fake provider.
const (
	colClient   = "bench"
	colFloor    = "floor"
	colNATS     = "nats"
	colPostgres = "postgres"
	colFake     = "fake"
)

var parleyColumns = []string{"router", "pii-scrubber", "cache", "provider-worker", "audit", colNATS, colPostgres}

// prompt is the load generator's text, about the size of a short chat turn; distinct
// prompts append a counter so that every call misses the cache.
const prompt = "What is the capital of France? Answer in one word, please."

// target is what the paths are measured against.
type target struct {
	router       *grpc.ClientConn
	floor        *grpc.ClientConn
	floorConnect *grpc.ClientConn
	// fakeURL is the fake provider's base URL; empty when the provider path is not run.
	fakeURL string
	// meter reads CPU times; nil when the processes are not this benchmark's.
	meter *meter
	// natsEmbedded is set when NATS runs inside this process (its CPU is the bench's).
	natsEmbedded bool
	// hop is one internal Connect call (pathHop); nil when the stack is not this benchmark's.
	hop func(context.Context) error
	// routerURL is the router's public URL (the native, OpenAI and stream paths) and
	// fakeStreamURL the paced streaming fake's base URL (the stream path); empty when the
	// stack is not this benchmark's.
	routerURL, fakeStreamURL string
	// streams is the concurrency of the stream path's concurrent run.
	streams int
}

type pathRun struct {
	name       string
	c1, cN     result
	cpu        map[string]time.Duration // CPU per request at -c, by column
	cpuMeasure bool
}

// benchPaths runs the chosen paths and prints the tables.
func benchPaths(ctx context.Context, t target, paths []string, d time.Duration, c int) error {
	calls := map[string]func(context.Context) error{}
	var seq atomic.Int64
	distinct := func() string { return fmt.Sprintf("%s #%d", prompt, seq.Add(1)) }
	calls[pathFloor] = viaGRPC(t.floor, "echo", distinct, false)
	calls[pathFloorConnect] = viaGRPC(t.floorConnect, "echo", distinct, false)
	calls[pathMiss] = viaGRPC(t.router, "echo", distinct, false)
	calls[pathHit] = viaGRPC(t.router, "echo", func() string { return prompt }, false)
	calls[pathScrubbed] = viaGRPC(t.router, "echo", func() string {
		// The counter stays outside the address: scrubbed, every prompt is still new.
		return fmt.Sprintf("%s #%d Mail me at user@example.com", prompt, seq.Add(1))
	}, true)
	if t.hop != nil {
		calls[pathHop] = t.hop
	}
	if t.routerURL != "" {
		calls[pathNative] = viaNativeConverse(t.routerURL, "echo", distinct)
		calls[pathOpenAI] = viaOpenAI(t.routerURL, "echo", distinct)
	}
	if t.fakeURL != "" {
		calls[pathProvider] = viaGRPC(t.router, "fake", distinct, false)
		calls[pathDirect] = fakeDirect(t.fakeURL, distinct)
	}
	var order []string
	for _, p := range paths {
		if p == pathStream {
			continue
		}
		if _, ok := calls[p]; !ok {
			fmt.Fprintf(os.Stderr, "parley-bench: path %s skipped (it needs the started stack)\n", p)
			continue
		}
		order = append(order, p)
		if p == pathProvider {
			order = append(order, pathDirect)
		}
	}
	if !slices.Contains(order, pathFloor) {
		order = append([]string{pathFloor}, order...)
	}

	fmt.Printf("parley-bench %s: %d CPUs, GOMAXPROCS %d, load average %s; %s per run, concurrency 1 and %d\n",
		time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), runtime.GOMAXPROCS(0), loadAverage(), d, c)
	var runs []pathRun
	for _, name := range order {
		call := calls[name]
		for range 200 { // warm up connections, workers and (for the hit path) the cache
			if err := call(ctx); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		r := pathRun{name: name}
		r.c1 = load(ctx, call, 1, d)
		var before sample
		var selfBefore time.Duration
		if t.meter != nil {
			before = t.meter.sample(ctx)
			selfBefore, _ = cpuTime(os.Getpid())
		}
		r.cN = load(ctx, call, c, d)
		if t.meter != nil && r.cN.n > 0 {
			used := t.meter.sample(ctx).since(before)
			self, _ := cpuTime(os.Getpid())
			used[colClient] = self - selfBefore
			r.cpu = map[string]time.Duration{}
			for col, v := range used {
				r.cpu[col] = v / time.Duration(r.cN.n)
			}
			r.cpuMeasure = true
		}
		runs = append(runs, r)
		fmt.Fprintf(os.Stderr, "%s done (load average %s)\n", name, loadAverage())
	}
	printPaths(os.Stdout, runs, c, t)
	if slices.Contains(paths, pathStream) {
		if err := benchStream(ctx, t, d, t.streams, func() int64 { return seq.Add(1) }); err != nil {
			return err
		}
	}
	fmt.Printf("load average at the end: %s\n", loadAverage())
	return nil
}

// viaGRPC calls Dapr ConverseAlpha2 on conn for component with text().
func viaGRPC(conn *grpc.ClientConn, component string, text func() string, scrub bool) func(context.Context) error {
	return func(ctx context.Context) error {
		r := &runtimev1.ConversationRequestAlpha2{
			Name: component,
			Inputs: []*runtimev1.ConversationInputAlpha2{{Messages: []*runtimev1.ConversationMessage{{
				MessageTypes: &runtimev1.ConversationMessage_OfUser{OfUser: &runtimev1.ConversationMessageOfUser{
					Content: []*runtimev1.ConversationMessageContent{{Text: text()}},
				}},
			}}}},
		}
		if scrub {
			r.Inputs[0].ScrubPii = &scrub
			r.ScrubPii = &scrub
		}
		return conn.Invoke(ctx, "/dapr.proto.runtime.v1.Dapr/ConverseAlpha2", r, &runtimev1.ConversationResponseAlpha2{})
	}
}

// viaNativeConverse calls the native API's Converse over Connect (protobuf, h2c), as a
// Connect client does.
func viaNativeConverse(base, component string, text func() string) func(context.Context) error {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	client := conversationv1connect.NewConversationServiceClient(&http.Client{Transport: &http.Transport{Protocols: p}}, base)
	return func(ctx context.Context) error {
		_, err := client.Converse(ctx, &conversationv1.ConverseRequest{
			Component: component,
			Messages:  []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: text()}},
		})
		return err
	}
}

// viaOpenAI posts a chat completion to the OpenAI-compatible API (JSON over HTTP/1.1 with
// keep-alive, as OpenAI's SDKs call) and reads the whole answer.
func viaOpenAI(base, component string, text func() string) func(context.Context) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	return func(ctx context.Context) error {
		body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}]}`, component, text())
		return postChatCompletion(ctx, client, base, body, "", "openai api")
	}
}

// fakeDirect posts an OpenAI chat completion to the fake provider, as a worker does.
func fakeDirect(base string, text func() string) func(context.Context) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	return func(ctx context.Context) error {
		body := fmt.Sprintf(`{"model":"fake-model","messages":[{"role":"user","content":%q}]}`, text())
		return postChatCompletion(ctx, client, base, body, "bench", "fake provider")
	}
}

// postChatCompletion posts body to the chat completions of the OpenAI API at base, with
// key as bearer token unless empty, and reads the answer to its end; a status other than
// 200 is an error naming what answered.
func postChatCompletion(ctx context.Context, client *http.Client, base, body, key, what string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = res.Body.Close() }()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", what, res.Status)
	}
	return nil
}

// parleyCPU is the CPU per request of the constellation's processes (not the load
// generator, the floor or the fake provider).
func parleyCPU(r pathRun) time.Duration {
	var sum time.Duration
	for _, col := range parleyColumns {
		sum += r.cpu[col]
	}
	return sum
}

// printPaths writes the path table (with each path's ratios to the floor) and the CPU
// table.
func printPaths(w io.Writer, runs []pathRun, c int, t target) {
	byName := map[string]pathRun{}
	for _, r := range runs {
		byName[r.name] = r
	}
	floor := byName[pathFloor]
	floorCPU := floor.cpu[colFloor]
	ratio := func(a, b float64) string {
		if b == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f×", a/b)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintf(tw, "path\tc=1 p50\tc=1 p99\tc=%d req/s\tc=%d p99\tCPU/req\tp50 ÷ floor\treq/s ÷ floor\tCPU ÷ floor\terrors\t\n", c, c)
	for _, r := range runs {
		p50 := r.c1.p50
		name := r.name
		cpu := parleyCPU(r)
		switch r.name {
		case pathFloor, pathFloorConnect:
			cpu = r.cpu[colFloor]
		case pathDirect:
			cpu = r.cpu[colFake]
		case pathProvider:
			if d, ok := byName[pathDirect]; ok {
				p50 -= d.c1.p50
				name = "provider (added)"
			}
		}
		cpuCell := "—"
		if r.cpuMeasure {
			cpuCell = fmtDur(cpu)
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t\n", name,
			fmtDur(p50), fmtDur(r.c1.p99), r.cN.rps, fmtDur(r.cN.p99), cpuCell,
			ratio(float64(p50), float64(floor.c1.p50)), fmt.Sprintf("%.2f", r.cN.rps/max(floor.cN.rps, 1)),
			ratio(float64(cpu), float64(floorCPU)), r.c1.errors+r.cN.errors)
	}
	_ = tw.Flush()
	if t.meter == nil {
		return
	}
	_, _ = fmt.Fprintf(w, "\nCPU per request at c=%d, by process (user + system from /proc/<pid>/stat; %s is the load generator%s):\n", c, colClient,
		map[bool]string{true: " and the embedded NATS server", false: ""}[t.natsEmbedded])
	cols := append(append([]string{colClient, colFloor}, parleyColumns...), colFake)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	var head bytes.Buffer
	head.WriteString("path\t")
	for _, col := range cols {
		head.WriteString(col + "\t")
	}
	head.WriteString("parley total\t\n")
	_, _ = tw.Write(head.Bytes())
	for _, r := range runs {
		if !r.cpuMeasure {
			continue
		}
		var line bytes.Buffer
		line.WriteString(r.name + "\t")
		for _, col := range cols {
			v, ok := r.cpu[col]
			switch {
			case col == colNATS && t.natsEmbedded:
				line.WriteString("(bench)\t")
			case !ok:
				line.WriteString("—\t")
			default:
				line.WriteString(fmtDur(v) + "\t")
			}
		}
		line.WriteString(fmtDur(parleyCPU(r)) + "\t\n")
		_, _ = tw.Write(line.Bytes())
	}
	_ = tw.Flush()
}

// dialGRPC opens one gRPC connection (all calls multiplex over it, as for every path).
func dialGRPC(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return conn, nil
}
