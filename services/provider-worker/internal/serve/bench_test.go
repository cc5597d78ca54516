package serve_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/provider-worker/internal/serve"
	"github.com/parleyhq/parley/services/provider-worker/provider/echo"
)

// BenchmarkEchoOverNATS measures one request → response round trip from a client through a
// real in-process NATS server to a worker running the echo provider, the way the router
// dispatches: a shared reply inbox, a decoded final reply.
func BenchmarkEchoOverNATS(b *testing.B) {
	srv := natstest.RunServer(b)
	w, err := serve.New(natstest.Connect(b, srv), map[string]serve.Provider{"bench": echo.New()}, serve.Options{
		WorkerID: "bench", Concurrency: 64, HeartbeatInterval: time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			b.Error(err)
		}
	})
	data := encode(b, request("bench", "Hello, how are you today? Please answer briefly."))

	b.Run("serial", func(b *testing.B) {
		nc := natstest.Connect(b, srv)
		inbox := nats.NewInbox()
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			b.Fatal(err)
		}
		msg := &nats.Msg{Subject: serve.SubjectPrefix + "bench", Reply: inbox, Data: data, Header: nats.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			if err := nc.PublishMsg(msg); err != nil {
				b.Fatal(err)
			}
			if err := readFinal(sub); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("parallel", func(b *testing.B) {
		nc := natstest.Connect(b, srv)
		var id atomic.Int64
		// Many requests in flight at once, as from a busy router, not one per CPU.
		b.SetParallelism(8)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			inbox := fmt.Sprintf("%s.%d", nats.NewInbox(), id.Add(1))
			sub, err := nc.SubscribeSync(inbox)
			if err != nil {
				b.Error(err)
				return
			}
			msg := &nats.Msg{Subject: serve.SubjectPrefix + "bench", Reply: inbox, Data: data, Header: nats.Header{}}
			for pb.Next() {
				if err := nc.PublishMsg(msg); err != nil {
					b.Error(err)
					return
				}
				if err := readFinal(sub); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// readFinal reads replies until a Response, failing on anything else.
func readFinal(sub *nats.Subscription) error {
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			return err
		}
		var r providerv1.Reply
		if err := proto.Unmarshal(m.Data, &r); err != nil {
			return err
		}
		switch {
		case r.GetHeartbeat() != nil:
			continue
		case r.GetResponse() != nil:
			return nil
		default:
			return fmt.Errorf("unexpected reply %v", &r)
		}
	}
}

// BenchmarkEchoStreamOverNATS measures a streamed request: echo answers 64 words, one
// chunk each, under the default credit window, read and credited the way the router does
// (one credit per half window). It reports the cost per chunk.
func BenchmarkEchoStreamOverNATS(b *testing.B) {
	srv := natstest.RunServer(b)
	w, err := serve.New(natstest.Connect(b, srv), map[string]serve.Provider{"bench": echo.New()}, serve.Options{
		WorkerID: "bench", Concurrency: 64, HeartbeatInterval: time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			b.Error(err)
		}
	})
	const words = 64
	req := request("bench", strings.TrimSpace(strings.Repeat("word ", words)))
	req.Stream = true
	data := encode(b, req)
	nc := natstest.Connect(b, srv)
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		b.Fatal(err)
	}
	msg := &nats.Msg{Subject: serve.SubjectPrefix + "bench", Reply: inbox, Data: data, Header: nats.Header{}}
	b.ReportAllocs()
	chunks := 0
	for b.Loop() {
		if err := nc.PublishMsg(msg); err != nil {
			b.Fatal(err)
		}
		n, err := readStreamed(nc, sub, serve.DefaultStreamWindow)
		if err != nil {
			b.Fatal(err)
		}
		chunks += n
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(1, chunks)), "ns/chunk")
}

// readStreamed reads a stream to its final Response, granting credit every half window,
// and returns the number of chunks.
func readStreamed(nc *nats.Conn, sub *nats.Subscription, window uint64) (int, error) {
	var seq, granted uint64 = 0, window
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			return 0, err
		}
		var r providerv1.Reply
		if err := proto.Unmarshal(m.Data, &r); err != nil {
			return 0, err
		}
		switch {
		case r.GetHeartbeat() != nil:
		case r.GetChunk() != nil:
			seq++
			if granted-seq <= window/2 {
				granted = seq + window
				c, _ := proto.Marshal(&providerv1.Control{Kind: &providerv1.Control_Credit{Credit: granted}})
				if err := nc.Publish(m.Reply, c); err != nil {
					return 0, err
				}
			}
		case r.GetResponse() != nil:
			return int(seq), nil
		default:
			return 0, fmt.Errorf("unexpected reply %v", &r)
		}
	}
}
