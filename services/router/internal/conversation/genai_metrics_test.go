package conversation

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// observations is the number of observations of the histogram name in reg, over every
// series, each of which must carry the GenAI labels of the component "echo".
func observations(t *testing.T, reg prometheus.Gatherer, name string) uint64 {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	var n uint64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		require.Equal(t, dto.MetricType_HISTOGRAM, f.GetType())
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			require.Equal(t, map[string]string{"gen_ai_operation_name": "chat", "gen_ai_system": "echo", "gen_ai_request_model": ""}, labels)
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}

// TestStreamingGenAIMetrics counts the observations of the streaming metrics: time to
// first token for every streamed conversation that succeeded (a cache hit's replay too),
// time per output token only for a provider's answer with more than one output token;
// neither for a unary conversation, a failed stream or one whose caller went away.
func TestStreamingGenAIMetrics(t *testing.T) {
	t.Parallel()
	const (
		ttft     = "gen_ai_server_time_to_first_token_seconds"
		perToken = "gen_ai_server_time_per_output_token_seconds"
	)
	gone := errors.New("client went away")
	tests := []struct {
		name         string
		run          func(t *testing.T, f streamFixture)
		wantTTFT     uint64
		wantPerToken uint64
	}{
		{
			name: "streamed, several output tokens",
			run: func(t *testing.T, f streamFixture) {
				f.disp.cuts, f.disp.output = []int{2, 4}, 3
				_, _, err := collectStream(t, f.svc, request("nocache", "hello world", false, false))
				require.NoError(t, err)
			},
			wantTTFT: 1, wantPerToken: 1,
		},
		{
			name: "streamed, one output token",
			run: func(t *testing.T, f streamFixture) {
				f.disp.output = 1
				_, _, err := collectStream(t, f.svc, request("nocache", "hello", false, false))
				require.NoError(t, err)
			},
			wantTTFT: 1,
		},
		{
			name: "streamed miss, then the same as a cache hit",
			run: func(t *testing.T, f streamFixture) {
				f.disp.cuts, f.disp.output = []int{2}, 5
				for range 2 {
					_, _, err := collectStream(t, f.svc, request("echo", "hello world", false, false))
					require.NoError(t, err)
				}
				require.Equal(t, 1, f.disp.calls, "the second was a hit")
			},
			wantTTFT: 2, wantPerToken: 1,
		},
		{
			name: "unary",
			run: func(t *testing.T, f streamFixture) {
				f.svc.dispatcher = &echoDispatcher{}
				_, err := f.svc.Converse(t.Context(), request("nocache", "hello world", false, false))
				require.NoError(t, err)
			},
		},
		{
			name: "stream fails mid-way",
			run: func(t *testing.T, f streamFixture) {
				f.disp.cuts, f.disp.output, f.disp.failAfter = []int{2, 4}, 3, 1
				_, _, err := collectStream(t, f.svc, request("nocache", "hello world", false, false))
				require.ErrorIs(t, err, ErrWorkerLost)
			},
		},
		{
			name: "caller goes away",
			run: func(t *testing.T, f streamFixture) {
				f.disp.cuts, f.disp.output = []int{2, 4}, 3
				_, err := f.svc.ConverseStream(t.Context(), request("nocache", "hello world", false, false), func(Delta) error { return gone })
				f.svc.bg.Wait()
				require.ErrorIs(t, err, gone)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newStreamFixture(t, Options{})
			tt.run(t, f)
			require.Equal(t, tt.wantTTFT, observations(t, f.reg, ttft), ttft)
			require.Equal(t, tt.wantPerToken, observations(t, f.reg, perToken), perToken)
			// Every conversation, streamed or not, still counts in the request duration.
			require.Equal(t, uint64(len(f.audit.events)), observations(t, f.reg, "gen_ai_server_request_duration_seconds"))
		})
	}
}
