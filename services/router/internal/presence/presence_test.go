package presence_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/router/internal/presence"
)

// clock is a test clock moved by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func announce(t testing.TB, component, worker string, slots, inUse uint32, goodbye bool) []byte {
	t.Helper()
	data, err := proto.Marshal(&providerv1.Presence{
		WorkerId: worker, Component: component, Components: []string{component},
		Slots: slots, SlotsInUse: inUse, Interval: durationpb.New(time.Second), Goodbye: goodbye,
	})
	require.NoError(t, err)
	return data
}

// step is one announcement heard (subject, data) after the clock moved by advance.
type step struct {
	advance time.Duration
	subject string
	data    []byte
}

// TestTable: workers count per component from their announcements; a goodbye removes one
// at once, silence for three intervals removes it, unknown components and bad payloads
// are ignored, and the cap bounds the table.
func TestTable(t *testing.T) {
	t.Parallel()
	echo, other := bus.PresenceSubject("echo"), bus.PresenceSubject("other")
	tests := []struct {
		name    string
		max     int
		steps   []step
		want    map[string]presence.Count
		ignored float64
	}{
		{name: "none", want: map[string]presence.Count{"echo": {}, "other": {}}},
		{
			name: "two workers, one announced twice",
			steps: []step{
				{subject: echo, data: announce(t, "echo", "w1", 4, 1, false)},
				{subject: echo, data: announce(t, "echo", "w2", 8, 0, false)},
				{subject: echo, data: announce(t, "echo", "w1", 4, 3, false)},
				{subject: other, data: announce(t, "other", "w2", 8, 0, false)},
			},
			want: map[string]presence.Count{"echo": {Workers: 2, Slots: 12, SlotsInUse: 3}, "other": {Workers: 1, Slots: 8}},
		},
		{
			name: "goodbye removes at once",
			steps: []step{
				{subject: echo, data: announce(t, "echo", "w1", 4, 0, false)},
				{subject: echo, data: announce(t, "echo", "w2", 4, 0, false)},
				{subject: echo, data: announce(t, "echo", "w1", 4, 0, true)},
			},
			want: map[string]presence.Count{"echo": {Workers: 1, Slots: 4}, "other": {}},
		},
		{
			name: "silent for three intervals is gone",
			steps: []step{
				{subject: echo, data: announce(t, "echo", "w1", 4, 0, false)},
				{advance: 2 * time.Second, subject: echo, data: announce(t, "echo", "w2", 4, 0, false)},
				{advance: time.Second}, // w1 last heard 3 s ago, w2 1 s ago
			},
			want: map[string]presence.Count{"echo": {Workers: 1, Slots: 4}, "other": {}},
		},
		{
			name: "ignored: unknown component, subject mismatch, bad payload, no worker id",
			steps: []step{
				{subject: bus.PresenceSubject("unknown"), data: announce(t, "unknown", "w1", 4, 0, false)},
				{subject: other, data: announce(t, "echo", "w1", 4, 0, false)},
				{subject: echo, data: []byte{0xff, 0xff}},
				{subject: echo, data: announce(t, "echo", "", 4, 0, false)},
				{subject: "parley.provider.echo", data: announce(t, "echo", "w1", 4, 0, false)},
			},
			want:    map[string]presence.Count{"echo": {}, "other": {}},
			ignored: 5,
		},
		{
			name: "slots in use never exceed slots",
			steps: []step{
				{subject: echo, data: announce(t, "echo", "w1", 2, 9, false)},
			},
			want: map[string]presence.Count{"echo": {Workers: 1, Slots: 2, SlotsInUse: 2}, "other": {}},
		},
		{
			name: "capped: a new worker waits for a place, known ones stay",
			max:  2,
			steps: []step{
				{subject: echo, data: announce(t, "echo", "w1", 1, 0, false)},
				{subject: echo, data: announce(t, "echo", "w2", 1, 0, false)},
				{subject: echo, data: announce(t, "echo", "w3", 1, 0, false)},
				{subject: echo, data: announce(t, "echo", "w1", 1, 1, false)},
				{subject: other, data: announce(t, "other", "w1", 1, 0, false)},
			},
			want:    map[string]presence.Count{"echo": {Workers: 2, Slots: 2, SlotsInUse: 1}, "other": {}},
			ignored: 2,
		},
		{
			name: "capped: an expired worker makes room",
			max:  1,
			steps: []step{
				{subject: echo, data: announce(t, "echo", "w1", 1, 0, false)},
				{advance: 3 * time.Second, subject: echo, data: announce(t, "echo", "w2", 1, 0, false)},
			},
			want: map[string]presence.Count{"echo": {Workers: 1, Slots: 1}, "other": {}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := &clock{t: time.Unix(1_700_000_000, 0)}
			table := presence.New([]string{"other", "echo"}, presence.Options{MaxWorkers: tt.max, Now: clk.now})
			for _, s := range tt.steps {
				clk.t = clk.t.Add(s.advance)
				if s.subject != "" {
					table.Observe(s.subject, s.data)
				}
			}
			require.Equal(t, tt.want, table.Counts())

			reg := prometheus.NewPedanticRegistry()
			require.NoError(t, reg.Register(table))
			families, err := reg.Gather()
			require.NoError(t, err)
			for _, f := range families {
				switch f.GetName() {
				case "parley_router_workers":
					require.Len(t, f.GetMetric(), len(tt.want))
					for _, m := range f.GetMetric() {
						require.InDelta(t, float64(tt.want[m.GetLabel()[0].GetValue()].Workers), m.GetGauge().GetValue(), 0)
					}
				case "parley_router_presence_ignored_total":
					require.InDelta(t, tt.ignored, f.GetMetric()[0].GetCounter().GetValue(), 0)
				default:
					t.Fatalf("unexpected metric %s", f.GetName())
				}
			}
		})
	}
}

// TestSubscribe: announcements on NATS reach the table until Close.
func TestSubscribe(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	table := presence.New([]string{"echo"}, presence.Options{})
	require.NoError(t, table.Subscribe(natstest.Connect(t, srv)))
	require.NoError(t, nc.Publish(bus.PresenceSubject("echo"), announce(t, "echo", "w1", 4, 1, false)))
	require.NoError(t, nc.Flush())
	require.Eventually(t, func() bool { return table.Counts()["echo"].Workers == 1 }, 10*time.Second, 5*time.Millisecond,
		"the announcement never reached the table")
	require.Equal(t, presence.Count{Workers: 1, Slots: 4, SlotsInUse: 1}, table.Counts()["echo"])
	require.NoError(t, table.Close())
}

// FuzzObserve: any announcement leaves the table within its cap and its slots in use
// within its slots.
func FuzzObserve(f *testing.F) {
	f.Add("echo", announce(f, "echo", "w1", 4, 1, false))
	f.Add("echo", announce(f, "echo", "w1", 4, 1, true))
	f.Add("other", []byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, component string, data []byte) {
		table := presence.New([]string{"echo"}, presence.Options{MaxWorkers: 1})
		table.Observe(bus.PresenceSubject(component), data)
		c := table.Counts()["echo"]
		require.LessOrEqual(t, c.Workers, 1)
		require.LessOrEqual(t, c.SlotsInUse, c.Slots)
		require.Len(t, table.Counts(), 1)
	})
}
