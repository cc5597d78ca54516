package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"

	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
)

// pathStream measures streaming: time to first token and per-chunk latency through Parley
// (native ConverseStream, the "fake-stream" component) against the same fake provider
// streamed directly, then many concurrent streams.
const pathStream = "stream"

// Pacing of the streaming fake provider: a chat model's 50 tokens a second.
const (
	streamTokens        = 32
	streamTokenInterval = 20 * time.Millisecond
)

// minSerial is the fewest streams of a serial run.
const minSerial = 10

// streamTiming is one stream as the client saw it.
type streamTiming struct {
	ttft   time.Duration   // request start to first content
	total  time.Duration   // request start to the end
	last   time.Duration   // request start to the last content
	gaps   []time.Duration // between consecutive content chunks
	chunks int
	err    error
}

// streamCall opens one stream and times it.
type streamCall func(ctx context.Context, text string) streamTiming

// viaNative streams through the router's native API (Connect's gRPC protocol over h2c).
func viaNative(routerURL, component string) streamCall {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	client := conversationv1connect.NewConversationServiceClient(&http.Client{Transport: &http.Transport{Protocols: p}}, routerURL, connect.WithGRPC())
	return func(ctx context.Context, text string) streamTiming {
		start := time.Now()
		var st streamTiming
		stream, err := client.ConverseStream(ctx, &conversationv1.ConverseStreamRequest{Request: &conversationv1.ConverseRequest{
			Component: component, Messages: []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: text}},
		}})
		if err != nil {
			st.err = err
			return st
		}
		defer func() { _ = stream.Close() }()
		last := time.Time{}
		for stream.Receive() {
			if stream.Msg().GetContentDelta() == "" {
				continue
			}
			st.mark(start, &last)
		}
		st.total, st.err = time.Since(start), stream.Err()
		return st
	}
}

// fakeStreamDirect streams the fake provider's chat completion directly, as a worker does.
func fakeStreamDirect(base string) streamCall {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	return func(ctx context.Context, text string) streamTiming {
		start := time.Now()
		var st streamTiming
		body := fmt.Sprintf(`{"model":"fake-model","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":%q}]}`, text)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			st.err = err
			return st
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			st.err = err
			return st
		}
		defer func() { _ = res.Body.Close() }()
		sc := bufio.NewScanner(res.Body)
		last := time.Time{}
		for sc.Scan() {
			line := sc.Bytes()
			if bytes.Contains(line, []byte(`"content":"`)) && !bytes.Contains(line, []byte(`"content":""`)) {
				st.mark(start, &last)
			}
		}
		st.total, st.err = time.Since(start), sc.Err()
		return st
	}
}

func (st *streamTiming) mark(start time.Time, last *time.Time) {
	now := time.Now()
	if st.chunks == 0 {
		st.ttft = now.Sub(start)
	} else {
		st.gaps = append(st.gaps, now.Sub(*last))
	}
	*last = now
	st.last = now.Sub(start)
	st.chunks++
}

// streamSummary is the distribution of many streams.
type streamSummary struct {
	streams, errors, chunks int
	ttft50, ttft99          time.Duration
	total50, last50         time.Duration
	gap50, gap99, gapMax    time.Duration
	firstErr                error
}

func summarize(ts []streamTiming) streamSummary {
	var s streamSummary
	var ttft, total, lasts, gaps []time.Duration
	for _, t := range ts {
		s.streams++
		if t.err != nil || t.chunks == 0 {
			s.errors++
			if s.firstErr == nil {
				s.firstErr = t.err
			}
			continue
		}
		s.chunks += t.chunks
		ttft = append(ttft, t.ttft)
		total = append(total, t.total)
		lasts = append(lasts, t.last)
		gaps = append(gaps, t.gaps...)
	}
	s.ttft50, s.ttft99 = pct(ttft, 50), pct(ttft, 99)
	s.total50, s.last50 = pct(total, 50), pct(lasts, 50)
	s.gap50, s.gap99, s.gapMax = pct(gaps, 50), pct(gaps, 99), pct(gaps, 100)
	return s
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := min(len(ds)-1, (len(ds)*p+99)/100-1)
	return ds[max(0, i)]
}

// serial runs call one stream after another for d, and at least minSerial times.
func serial(ctx context.Context, call streamCall, d time.Duration, text func() string) []streamTiming {
	var out []streamTiming
	for end := time.Now().Add(d); time.Now().Before(end) || len(out) < minSerial; {
		out = append(out, call(ctx, text()))
	}
	return out
}

// concurrent opens n streams at once and waits for all of them.
func concurrent(ctx context.Context, call streamCall, n int, text func() string) []streamTiming {
	out := make([]streamTiming, n)
	var wg sync.WaitGroup
	for i := range n {
		t := text()
		wg.Go(func() { out[i] = call(ctx, t) })
	}
	wg.Wait()
	return out
}

// rss is the resident memory of pid, from /proc.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// benchStream runs the stream path: serial streams through Parley and directly for d,
// then n concurrent streams through Parley while the router's and the worker's resident
// memory is sampled.
func benchStream(ctx context.Context, t target, d time.Duration, n int, seq func() int64) error {
	if t.routerURL == "" || t.fakeStreamURL == "" {
		return errors.New("the stream path needs the started stack")
	}
	text := func() string { return fmt.Sprintf("%s #%d", prompt, seq()) }
	parley := viaNative(t.routerURL, "fake-stream")
	direct := fakeStreamDirect(t.fakeStreamURL)
	for range 5 { // warm up connections and the worker
		if st := parley(ctx, text()); st.err != nil {
			return fmt.Errorf("stream: %w", st.err)
		}
	}
	p1 := summarize(serial(ctx, parley, d, text))
	d1 := summarize(serial(ctx, direct, d, text))

	var before, peak map[string]int64
	sampleRSS := func() map[string]int64 {
		out := map[string]int64{}
		if t.meter == nil {
			return out
		}
		for _, name := range []string{"router", "provider-worker"} {
			for _, pid := range t.meter.procs[name](ctx) {
				if v, err := rss(pid); err == nil {
					out[name] += v
				}
			}
		}
		return out
	}
	before = sampleRSS()
	peak = map[string]int64{}
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for k, v := range sampleRSS() {
					peak[k] = max(peak[k], v)
				}
			}
		}
	})
	dN := summarize(concurrent(ctx, direct, n, text))
	pN := summarize(concurrent(ctx, parley, n, text))
	close(stop)
	sampler.Wait()

	fmt.Printf("\nstreams: fake provider at %d tokens, one every %s; Parley = native ConverseStream (gRPC) on component fake-stream, no scrubbing\n",
		streamTokens, streamTokenInterval)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(w, "run\tstreams\terrors\tTTFT p50\tTTFT p99\tstream p50\tgap p50\tgap p99\tgap max\t")
	row := func(name string, s streamSummary) {
		_, _ = fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, s.streams, s.errors,
			fmtDur(s.ttft50), fmtDur(s.ttft99), fmtDur(s.total50), fmtDur(s.gap50), fmtDur(s.gap99), fmtDur(s.gapMax))
	}
	row("direct c=1", d1)
	row("parley c=1", p1)
	row(fmt.Sprintf("direct c=%d", n), dN)
	row(fmt.Sprintf("parley c=%d", n), pN)
	_ = w.Flush()
	if p1.chunks > 0 && d1.chunks > 0 {
		perChunk := ((p1.last50 - p1.ttft50) - (d1.last50 - d1.ttft50)) / max(1, streamTokens-1)
		fmt.Printf("added at c=1: time to first token %s (p50); per chunk after the first %s (p50 time from the first to the last content, per chunk); end of stream %s (p50, the audit record and the finish message)\n",
			fmtDur(p1.ttft50-d1.ttft50), fmtDur(perChunk), fmtDur((p1.total50-p1.last50)-(d1.total50-d1.last50)))
	}
	for _, name := range []string{"router", "provider-worker"} {
		if b, ok := before[name]; ok && peak[name] > 0 {
			fmt.Printf("%s resident memory: %.1f MiB before, %.1f MiB peak during %d streams: %.1f KiB per stream\n",
				name, float64(b)/(1<<20), float64(peak[name])/(1<<20), n, float64(peak[name]-b)/1024/float64(n))
		}
	}
	if pN.firstErr != nil {
		fmt.Printf("first error through Parley: %v\n", pN.firstErr)
	}
	return nil
}
