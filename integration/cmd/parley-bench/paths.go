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
	pathHop = "internal-hop"
	// pathConnectMTLS is the floor of an internal Connect call: the echo on connect-go with
	// mutual TLS and the services' identity checks, served as a service serves it
	// (parley-floor -server connect-mtls), called with the router's identity and client
	// (rpcclient.RPC: gRPC on grpc-go's transport at both ends). Unlike internal-hop, no
	// service work is behind it.
	pathConnectMTLS = "connect-mtls"
	// pathNATSRR is the floor of the worker dispatch: a NATS request from a router's user
	// to a responder in another process (parley-floor -server nats, a worker's user, in its
	// queue group) that answers with the payload, over the stack's NATS with TLS.
	pathNATSRR = "nats-rr"
	// pathJSPublish is the floor of the audit publish: a ~1 KB JetStream publish with
	// Nats-Msg-Id, awaited for its ack, to a file-backed stream configured like
	// PARLEY_AUDIT (floorStream, which the audit service does not read).
	pathJSPublish = "js-publish"
	// pathKeptHit and pathKeptProvider are the crossings the hit and the provider path
	// must keep, made by one grpc-go server in one process with nothing else to do
	// (parley-floor -server kept): the client's call, answered after a js-publish
	// (kept-hit), after a nats-rr and a js-publish (kept-provider), each event then read
	// back from the stream and stored in PostgreSQL once (one COPY and one ack per batch),
	// as the audit log must. What the sums of the floors estimate, measured: the lowest a
	// path that keeps them can reach.
	pathKeptHit      = "kept-hit"
	pathKeptProvider = "kept-provider"
	pathMiss         = "miss"
	pathHit          = "hit"
	pathScrubbed     = "scrubbed"
	pathProvider     = "provider"
	// pathNative and pathOpenAI are the miss path through the other public APIs: the native
	// API (Connect, protobuf over h2c) and the OpenAI-compatible API (JSON over HTTP/1.1,
	// as OpenAI's SDKs call). Same crossings as miss; what differs is the adapter and the
	// wire format.
	pathNative = "native"
	pathOpenAI = "openai"
	// pathDirect is the fake provider called directly: subtracted from the provider path.
	pathDirect = "fake-direct"
)

var allPaths = []string{pathFloor, pathFloorConnect, pathHop, pathConnectMTLS, pathNATSRR, pathJSPublish, pathKeptHit, pathKeptProvider,
	pathMiss, pathNative, pathOpenAI, pathHit, pathScrubbed, pathProvider, pathStream}

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
	// procs is the services' GOMAXPROCS, for the header.
	procs        string
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
	// natsRR, jsPublish and connectMTLS are the floors of the internal crossings
	// (crossingFloors); nil when the stack is not this benchmark's (connectMTLS also with
	// INTERNAL_TLS=off).
	natsRR, jsPublish, connectMTLS func(context.Context) error
	// keptHit and keptProvider are the kept crossings in one process (parley-floor -server
	// kept); nil when the NATS floors do not run.
	keptHit, keptProvider func(context.Context) error
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
	for name, call := range map[string]func(context.Context) error{
		pathHop: t.hop, pathNATSRR: t.natsRR, pathJSPublish: t.jsPublish, pathConnectMTLS: t.connectMTLS,
		pathKeptHit: t.keptHit, pathKeptProvider: t.keptProvider,
	} {
		if call != nil {
			calls[name] = call
		}
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
	order = withKeptFloors(order, func(p string) bool { _, ok := calls[p]; return ok })

	fmt.Printf("parley-bench %s: %d CPUs, GOMAXPROCS %d (the benchmark's; the services' %s), load average %s; %s per run, concurrency 1 and %d\n",
		time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), runtime.GOMAXPROCS(0), t.procs, loadAverage(), d, c)
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
		r := daprRequest(component, text(), scrub)
		return conn.Invoke(ctx, "/dapr.proto.runtime.v1.Dapr/ConverseAlpha2", r, &runtimev1.ConversationResponseAlpha2{})
	}
}

// daprRequest is a ConverseAlpha2 request for component with one user message, text,
// scrubbed when scrub is set.
func daprRequest(component, text string, scrub bool) *runtimev1.ConversationRequestAlpha2 {
	r := &runtimev1.ConversationRequestAlpha2{
		Name: component,
		Inputs: []*runtimev1.ConversationInputAlpha2{{Messages: []*runtimev1.ConversationMessage{{
			MessageTypes: &runtimev1.ConversationMessage_OfUser{OfUser: &runtimev1.ConversationMessageOfUser{
				Content: []*runtimev1.ConversationMessageContent{{Text: text}},
			}},
		}}}},
	}
	if scrub {
		r.Inputs[0].ScrubPii = &scrub
		r.ScrubPii = &scrub
	}
	return r
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

// floorColumns are, for the rows that measure a floor rather than Parley, the CPU
// columns of the processes that serve it: the floor server, NATS for the NATS floors
// (the responder and the server in between; the server alone for a publish), PostgreSQL
// for the kept rows (their events' storage), the fake provider for fake-direct. The
// caller's side runs in the load generator (bench).
var floorColumns = map[string][]string{
	pathFloor:        {colFloor},
	pathFloorConnect: {colFloor},
	pathConnectMTLS:  {colFloor},
	pathNATSRR:       {colFloor, colNATS},
	pathJSPublish:    {colNATS},
	pathKeptHit:      {colFloor, colNATS, colPostgres},
	pathKeptProvider: {colFloor, colNATS, colPostgres},
	pathDirect:       {colFake},
}

// rowCPU is the CPU per request a row reports: its floorColumns for a floor, else every
// Parley process's (parleyCPU). ok is false when a column it needs was not measured (NATS
// embedded in the load generator, or no meter).
func rowCPU(r pathRun) (cpu time.Duration, ok bool) {
	if !r.cpuMeasure {
		return 0, false
	}
	cols, isFloor := floorColumns[r.name]
	if !isFloor {
		return parleyCPU(r), true
	}
	for _, col := range cols {
		v, measured := r.cpu[col]
		if !measured {
			return 0, false
		}
		cpu += v
	}
	return cpu, true
}

// latency is the c=1 p50 a row is compared by: for the provider path, what it adds to the
// fake provider called directly (when fake-direct ran).
func latency(r pathRun, byName map[string]pathRun) time.Duration {
	if d, ok := byName[pathDirect]; ok && r.name == pathProvider {
		return r.c1.p50 - d.c1.p50
	}
	return r.c1.p50
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
	// The Connect floor (connect-go, the server library of Parley's services and of its
	// public APIs) gives a second set of ratios where it ran: issue 12 describes the floor
	// both as "a gRPC server in another process whose handler only echoes" (grpc-go here,
	// the stricter) and as "a trivial Connect echo service in another process".
	cfloor, withConnect := byName[pathFloorConnect]
	cfloorCPU := cfloor.cpu[colFloor]
	header := "path\tc=1 p50\tc=1 p99\tc=%d req/s\tc=%d p99\tCPU/req\tp50 ÷ floor\treq/s ÷ floor\tCPU ÷ floor\terrors\t"
	if withConnect {
		header += "p50 ÷ Connect floor\treq/s ÷ Connect floor\tCPU ÷ Connect floor\t"
	}
	_, _ = fmt.Fprintf(tw, header+"\n", c, c)
	for _, r := range runs {
		p50 := latency(r, byName)
		name := r.name
		if _, ok := byName[pathDirect]; ok && r.name == pathProvider {
			name = "provider (added)"
		}
		cpu, measured := rowCPU(r)
		cpuCell, cpuRatio := "—", "—"
		if measured {
			cpuCell, cpuRatio = fmtDur(cpu), ratio(float64(cpu), float64(floorCPU))
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t", name,
			fmtDur(p50), fmtDur(r.c1.p99), r.cN.rps, fmtDur(r.cN.p99), cpuCell,
			ratio(float64(p50), float64(floor.c1.p50)), fmt.Sprintf("%.2f", r.cN.rps/max(floor.cN.rps, 1)),
			cpuRatio, r.c1.errors+r.cN.errors)
		if withConnect {
			cCPU := "—"
			if measured {
				cCPU = ratio(float64(cpu), float64(cfloorCPU))
			}
			_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t", ratio(float64(p50), float64(cfloor.c1.p50)),
				fmt.Sprintf("%.2f", r.cN.rps/max(cfloor.cN.rps, 1)), cCPU)
		}
		_, _ = fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	printKept(w, runs)
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

// keptCrossing is one crossing a path keeps under issue 12's Keep list, measured by the
// floor row of its kind.
type keptCrossing struct {
	floor string // the row whose c=1 p50 and CPU per request stand for it
	what  string // the crossing and why it stays
}

// keptPath is a path of the crossing budget (docs/architecture.md#crossing-budget) with
// the crossings it must keep: separate services over Connect and NATS, the audit event
// stored before the reply, single flight across routers, the internal wire's security.
type keptPath struct {
	name string
	// row is the measured path it is compared with.
	row string
	// p50Target is issue 12's target for the row's c=1 p50 ÷ the floor's.
	p50Target float64
	crossings []keptCrossing
	// afterReply are the crossings every request of the path causes after its reply (the
	// answer's Put): their CPU counts, every request paying it, their latency does not.
	afterReply []keptCrossing
	// composed is the row that makes the same crossings in one process (parley-floor
	// -server kept), measured rather than summed; empty when none does.
	composed string
	// batched, when set, is what is left of the path's crossings with its cache calls
	// batched (issue 12's "batching of internal calls under load").
	batched *batchedKept
}

// batchedKept is what a path keeps when many conversations' calls to the cache share one
// call: the batch's call costs each conversation nothing as batches grow, so what remains
// is the composed row, measured in one process, and the crossings' floors that batching
// does not remove, made once per conversation.
type batchedKept struct {
	composed  string
	crossings []keptCrossing
	// afterReply, as keptPath's, once per conversation in a batch too.
	afterReply []keptCrossing
	what       string
}

// keptPaths is the one list of the crossings each path must keep. The audit copy's
// scrubbing is not in it: issue 12 allows moving it into the audit service (the raw copy
// encrypted in the stream); kept on the request path it adds one connect-mtls.
var keptPaths = []keptPath{
	{name: "miss", row: pathMiss, p50Target: 5, crossings: []keptCrossing{
		{pathFloor, "client → router"},
		{pathConnectMTLS, "router → cache: Lookup, the answer or a lease (single flight across routers)"},
		{pathJSPublish, "cache → its JetStream bucket: the read and the lease in one write"},
		{pathNATSRR, "router → NATS → worker → NATS → router: the provider call"},
		{pathJSPublish, "router → JetStream: the audit event, stored before the reply"},
	}, afterReply: []keptCrossing{
		{pathConnectMTLS, "router → cache: Put, the answer stored for the next caller"},
		{pathJSPublish, "cache → its JetStream bucket: the Put's write, which ends the lease"},
	}, batched: &batchedKept{
		what:     "the router → cache Lookup and Put shared by batches of conversations, their calls' cost per conversation taken as nothing",
		composed: pathKeptProvider,
		crossings: []keptCrossing{
			{pathJSPublish, "cache → its JetStream bucket: each key's read and lease, one write per key in a batch too (single flight across routers)"},
		},
		afterReply: []keptCrossing{
			{pathJSPublish, "cache → its JetStream bucket: each key's Put, one write per key in a batch too"},
		},
	}},
	{name: "hit (near cache)", row: pathHit, p50Target: 2.5, composed: pathKeptHit, crossings: []keptCrossing{
		{pathFloor, "client → router"},
		{pathJSPublish, "router → JetStream: the audit event, stored before the reply"},
	}},
	{name: "provider (added)", row: pathProvider, p50Target: 4, composed: pathKeptProvider, crossings: []keptCrossing{
		{pathFloor, "client → router"},
		{pathNATSRR, "router → NATS → worker → NATS → router (the provider call itself is subtracted, as in the provider row)"},
		{pathJSPublish, "router → JetStream: the audit event, stored before the reply"},
	}},
}

// withKeptFloors is order with the floor first and, after it, the floor rows that the
// kept paths of order's rows need and order lacks (their crossings' floors, then the row
// composing them; those that can run, by runnable), so that the kept-crossings block is
// measured in the same run.
func withKeptFloors(order []string, runnable func(string) bool) []string {
	floors := []string{pathFloor}
	add := func(row string) {
		if row != "" && !slices.Contains(floors, row) && !slices.Contains(order, row) && runnable(row) {
			floors = append(floors, row)
		}
	}
	for _, k := range keptPaths {
		if !slices.Contains(order, k.row) {
			continue
		}
		for _, c := range slices.Concat(k.crossings, k.afterReply) {
			add(c.floor)
		}
	}
	for _, k := range keptPaths {
		if slices.Contains(order, k.row) {
			add(k.composed)
			if k.batched != nil {
				add(k.batched.composed)
			}
		}
	}
	return append(floors, slices.DeleteFunc(slices.Clone(order), func(p string) bool { return p == pathFloor })...)
}

// keptSum is a keptPath's floors summed, against the floor and the measured path.
type keptSum struct {
	// p50 is the sum of the crossings' floors' c=1 p50, p50Ratio its ratio to the floor's.
	p50      time.Duration
	p50Ratio float64
	// cpu is the CPU per request at -c of the crossings' floors: the floor server's for
	// the client's hop (the client is not Parley), the serving processes' and the
	// caller's (the load generator, the router in Parley) for an internal crossing.
	// cpuRatio is its ratio to the floor server's; cpuOK is false when a column was not
	// measured.
	cpu      time.Duration
	cpuRatio float64
	cpuOK    bool
	// rpsRatio bounds the path's throughput at -c: cpus CPU-seconds a second shared by
	// requests that each cost at least cpu plus the load generator's CPU per floor call,
	// over the floor's measured req/s (0 when a column was not measured). No path that
	// keeps these crossings unbatched can sustain more on this machine.
	rpsRatio float64
	// measuredP50Ratio, measuredCPURatio and measuredRPSRatio are the row's own ratios (0:
	// not run or not measured).
	measuredP50Ratio, measuredCPURatio, measuredRPSRatio float64
	// composedP50Ratio and composedCPURatio are the composed row's ratios: the same
	// crossings made by one process, measured (0: not run or not measured).
	composedP50Ratio, composedCPURatio float64
	// batchedCPU is the CPU per request of what the path keeps with its cache calls
	// batched (keptPath.batched): the composed row's plus its crossings' floors', like
	// cpu; batchedCPURatio its ratio to the floor server's, batchedRPSRatio the req/s
	// bound it leaves, as rpsRatio (0: not measured).
	batchedCPU                       time.Duration
	batchedCPURatio, batchedRPSRatio float64
	// missing are floor rows the sum needs that did not run.
	missing []string
}

// sumKept adds up k's floors from the runs by name, on a machine of cpus CPUs.
func sumKept(k keptPath, byName map[string]pathRun, cpus int) keptSum {
	out := keptSum{cpuOK: true}
	floor, ok := byName[pathFloor]
	floorCPU, floorCPUOK := rowCPU(floor)
	// crossingCPU is a crossing's CPU per request: its floor row's, plus the caller's
	// (the load generator standing for the router or the cache) for an internal one.
	crossingCPU := func(c keptCrossing) (time.Duration, bool) {
		r := byName[c.floor]
		cpu, measured := rowCPU(r)
		if c.floor != pathFloor {
			caller, callerMeasured := r.cpu[colClient]
			cpu, measured = cpu+caller, measured && callerMeasured
		}
		return cpu, measured
	}
	// The crossings after the reply cost CPU, not latency.
	for i, c := range slices.Concat(k.crossings, k.afterReply) {
		r, ran := byName[c.floor]
		if !ran {
			if !slices.Contains(out.missing, c.floor) {
				out.missing = append(out.missing, c.floor)
			}
			continue
		}
		if i < len(k.crossings) {
			out.p50 += r.c1.p50
		}
		cpu, measured := crossingCPU(c)
		out.cpu += cpu
		out.cpuOK = out.cpuOK && measured
	}
	if len(out.missing) > 0 || !ok || floor.c1.p50 <= 0 {
		return keptSum{missing: out.missing}
	}
	out.p50Ratio = float64(out.p50) / float64(floor.c1.p50)
	out.cpuOK = out.cpuOK && floorCPUOK && floorCPU > 0
	floorClient, floorClientOK := floor.cpu[colClient]
	// bound is the req/s ÷ floor that cpus CPUs allow requests costing cpu each, with
	// the load generator's CPU per floor call.
	bound := func(cpu time.Duration) float64 {
		if !floorClientOK || floor.cN.rps <= 0 {
			return 0
		}
		return float64(cpus) / (cpu + floorClient).Seconds() / floor.cN.rps
	}
	if out.cpuOK {
		out.cpuRatio = float64(out.cpu) / float64(floorCPU)
		out.rpsRatio = bound(out.cpu)
	}
	if b := k.batched; b != nil && floorCPUOK && floorCPU > 0 {
		// A row that did not run is not measured (rowCPU of the zero pathRun).
		cpu, measured := rowCPU(byName[b.composed])
		for _, c := range slices.Concat(b.crossings, b.afterReply) {
			v, m := crossingCPU(c)
			cpu, measured = cpu+v, measured && m
		}
		if measured {
			out.batchedCPU = cpu
			out.batchedCPURatio = float64(cpu) / float64(floorCPU)
			out.batchedRPSRatio = bound(cpu)
		}
	}
	if r, ran := byName[k.composed]; ran && k.composed != "" {
		out.composedP50Ratio = float64(r.c1.p50) / float64(floor.c1.p50)
		if cpu, measured := rowCPU(r); measured && floorCPUOK && floorCPU > 0 {
			out.composedCPURatio = float64(cpu) / float64(floorCPU)
		}
	}
	if r, ran := byName[k.row]; ran {
		out.measuredP50Ratio = float64(latency(r, byName)) / float64(floor.c1.p50)
		if cpu, measured := rowCPU(r); measured && floorCPUOK && floorCPU > 0 {
			out.measuredCPURatio = float64(cpu) / float64(floorCPU)
		}
		if floor.cN.rps > 0 {
			out.measuredRPSRatio = r.cN.rps / floor.cN.rps
		}
	}
	return out
}

// printKept writes the kept-crossings block: for each path of keptPaths, the sum of its
// crossings' floors as latency and CPU, and their ratios to the floor, beside the
// path's measured ratios and issue 12's latency target. A path is left out when neither
// it nor all of its floors ran, and named with the floors it lacks when it ran.
func printKept(w io.Writer, runs []pathRun) {
	byName := map[string]pathRun{}
	for _, r := range runs {
		byName[r.name] = r
	}
	_, _ = fmt.Fprintf(w, "\nKept crossings: the floors of the crossings each path must keep, summed (the lowest ratios the path could reach with no work inside the services;\n"+
		"crossings after the reply (the answer's Put) count in the CPU sum and the req/s bound, not in the p50 sum;\n"+
		"req/s bound: the %d CPUs shared by requests costing at least the CPU sum and the load generator's CPU per floor call, ÷ the floor's req/s, both at -c;\n"+
		"one process: the same crossings made by one grpc-go server with nothing else to do, its events stored in PostgreSQL once each, measured, p50 and CPU ÷ the floor's):\n", runtime.NumCPU())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintf(tw, "path\tcrossings\tp50 sum\tp50 ÷ floor\tone process\ttarget\tmeasured\tCPU sum\tCPU ÷ floor\tone process\tmeasured\treq/s bound ÷ floor\tmeasured\t\n")
	times := func(x float64) string {
		if x == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f×", x)
	}
	rate := func(x float64) string {
		if x == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f", x)
	}
	type shownPath struct {
		k   keptPath
		sum keptSum
	}
	var shown []shownPath
	for _, k := range keptPaths {
		crossings := strings.Join(floorRows(k.crossings), " + ")
		if len(k.afterReply) > 0 {
			crossings += " (after the reply: " + strings.Join(floorRows(k.afterReply), " + ") + ")"
		}
		sum := sumKept(k, byName, runtime.NumCPU())
		if _, ran := byName[k.row]; !ran && len(sum.missing) > 0 {
			continue
		}
		shown = append(shown, shownPath{k, sum})
		if len(sum.missing) > 0 {
			_, _ = fmt.Fprintf(tw, "%s\t%s\t(needs %s)\t\t\t\t\t\t\t\t\t\t\t\n", k.name, crossings, strings.Join(sum.missing, ", "))
			continue
		}
		cpu := "—"
		if sum.cpuOK {
			cpu = fmtDur(sum.cpu)
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t≤ %.1f×\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", k.name, crossings,
			fmtDur(sum.p50), times(sum.p50Ratio), times(sum.composedP50Ratio), k.p50Target, times(sum.measuredP50Ratio),
			cpu, times(sum.cpuRatio), times(sum.composedCPURatio), times(sum.measuredCPURatio),
			rate(sum.rpsRatio), rate(sum.measuredRPSRatio))
	}
	_ = tw.Flush()
	for _, p := range shown {
		k, sum := p.k, p.sum
		_, _ = fmt.Fprintf(w, "  %s:\n", k.name)
		listCrossings(w, "    ", k.crossings, k.afterReply)
		if k.composed != "" {
			_, _ = fmt.Fprintf(w, "    %-13s one process: the client's call answered by grpc-go after the crossings above; the events stored in PostgreSQL\n", k.composed)
		}
		if b := k.batched; b != nil {
			floors := append([]string{b.composed + " (one process)"}, floorRows(b.crossings)...)
			for _, c := range b.afterReply {
				floors = append(floors, c.floor+" (after the reply)")
			}
			if sum.batchedCPU == 0 {
				_, _ = fmt.Fprintf(w, "    batched: %s; not measured in this run (needs %s)\n", b.what, strings.Join(floors, ", "))
				continue
			}
			_, _ = fmt.Fprintf(w, "    batched: %s: %s = CPU %s (%.1f× the floor's), req/s bound %.2f ÷ floor\n",
				b.what, strings.Join(floors, " + "), fmtDur(sum.batchedCPU), sum.batchedCPURatio, sum.batchedRPSRatio)
			listCrossings(w, "      ", b.crossings, b.afterReply)
		}
	}
}

// listCrossings writes a line per crossing, those after the reply marked, each at indent.
func listCrossings(w io.Writer, indent string, crossings, afterReply []keptCrossing) {
	for _, c := range crossings {
		_, _ = fmt.Fprintf(w, "%s%-13s %s\n", indent, c.floor, c.what)
	}
	for _, c := range afterReply {
		_, _ = fmt.Fprintf(w, "%s%-13s after the reply: %s\n", indent, c.floor, c.what)
	}
}

// floorRows are the floor rows of cs, in order.
func floorRows(cs []keptCrossing) []string {
	rows := make([]string, len(cs))
	for i, c := range cs {
		rows[i] = c.floor
	}
	return rows
}
