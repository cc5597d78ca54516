package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/parleyhq/parley/integration/stack"
)

// helpers are the benchmark's own processes beside the constellation.
type helpers struct {
	dir                             string
	floor, floorConnect, fake, nats *helper
	// fakeStream is a second fake provider that paces its streamed tokens (the stream path).
	fakeStream *helper
	// slowFake answers after -scaling-latency, for the scaling path.
	slowFake *helper
	// natsFloor and mtlsFloor serve the nats-rr and connect-mtls floors, keptFloor the
	// kept-hit and kept-provider rows (crossingFloors).
	natsFloor, mtlsFloor, keptFloor *helper
}

// startHelpers builds parley-floor and fakeprovider and starts the floor (grpc-go's
// server, the cheapest), the same echo on connect-go and, when the stack is started too,
// the fake provider (no delay: the provider path is Parley's cost).
func startHelpers(ctx context.Context, root string, withFake bool) (_ *helpers, err error) {
	dir, err := os.MkdirTemp("", "parley-bench-helpers-")
	if err != nil {
		return nil, err
	}
	h := &helpers{dir: dir}
	defer func() {
		if err != nil {
			h.stop()
		}
	}()
	if err := buildHelpers(ctx, root, dir); err != nil {
		return nil, err
	}
	if h.floor, err = startHelper("floor", filepath.Join(dir, "parley-floor"), "listening on ", "-server", "grpc"); err != nil {
		return nil, err
	}
	if h.floorConnect, err = startHelper("floor", filepath.Join(dir, "parley-floor"), "listening on ", "-server", "connect"); err != nil {
		return nil, err
	}
	if withFake {
		if h.fake, err = startHelper("fake provider", filepath.Join(dir, "fakeprovider"), "listening on http://", "-addr", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		if h.fakeStream, err = startHelper("fake provider", filepath.Join(dir, "fakeprovider"), "listening on http://", "-addr", "127.0.0.1:0",
			"-tokens", strconv.Itoa(streamTokens), "-token-interval", streamTokenInterval.String()); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *helpers) stop() {
	// The NATS floor before NATS, so that it does not see its server go.
	for _, p := range []*helper{h.keptFloor, h.natsFloor, h.mtlsFloor, h.floor, h.floorConnect, h.fake, h.fakeStream, h.nats, h.slowFake} {
		if p != nil {
			p.stop()
		}
	}
	_ = os.RemoveAll(h.dir)
}

// writeComponents writes make up's echo component (deploy/components/echo.yaml, cached)
// and conversation.openai components named fake and fake-stream for the fake providers at
// fakeAddr and fakeStreamAddr.
func writeComponents(root, dir, fakeAddr, fakeStreamAddr string) error {
	echo, err := os.ReadFile(filepath.Join(root, "deploy", "components", "echo.yaml"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "echo.yaml"), echo, 0o600); err != nil {
		return err
	}
	for name, addr := range map[string]string{"fake": fakeAddr, "fake-stream": fakeStreamAddr} {
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(openAIComponent(name, addr)), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// openAIComponent is a conversation.openai component named name for the fake at addr.
func openAIComponent(name, addr string) string {
	return stack.OpenAIComponent(name, "http://"+addr, "bench", "fake-model")
}

// newMeter reads the CPU time of every process of the run: the services, NATS (when a
// process of its own), PostgreSQL's backends for the stack's database, the floor and the
// fake provider.
func newMeter(ctx context.Context, s *stack.Stack, h *helpers) (*meter, error) {
	m := &meter{procs: map[string]func(context.Context) []int{
		// Every floor server in one column: one of them works at a time.
		colFloor: func(context.Context) []int {
			var pids []int
			for _, f := range []*helper{h.floor, h.floorConnect, h.natsFloor, h.mtlsFloor, h.keptFloor} {
				if f != nil {
					pids = append(pids, f.pid())
				}
			}
			return pids
		},
		colFake: fixed(h.fake.pid()),
	}}
	for _, name := range stack.Services {
		p := s.Process(name)
		if p == nil {
			return nil, fmt.Errorf("%s is not running", name)
		}
		m.procs[name] = fixed(p.PID())
	}
	if h.nats != nil {
		m.procs[colNATS] = fixed(h.nats.pid())
	}
	pg, closePG, err := pgBackends(ctx, s.DatabaseURL)
	if err != nil {
		return nil, err
	}
	m.procs[colPostgres] = pg
	m.close = closePG
	return m, nil
}
