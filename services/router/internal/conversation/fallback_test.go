package conversation

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// byComponent answers or fails per component, counting calls.
type byComponent struct {
	errs  map[string]error
	calls []string
}

func (d *byComponent) Dispatch(_ context.Context, req *providerv1.Request) (*Dispatched, error) {
	d.calls = append(d.calls, req.GetComponent())
	if err := d.errs[req.GetComponent()]; err != nil {
		return nil, err
	}
	return &Dispatched{Attempts: 1, Response: &providerv1.Response{
		Choices: []*providerv1.Choice{{FinishReason: "stop", Content: "from " + req.GetComponent()}},
	}}, nil
}

func TestFallbacks(t *testing.T) {
	t.Parallel()
	unavailable := &ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, Message: "circuit breaker is open"}
	invalid := &ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Message: "bad"}
	tests := []struct {
		name          string
		errs          map[string]error
		wantContent   string
		wantErr       error
		wantCalls     []string
		wantFallbacks []string
		wantAttempts  int32
	}{
		{name: "primary answers", wantContent: "from main", wantCalls: []string{"main"}, wantAttempts: 1},
		{name: "no worker: first fallback", errs: map[string]error{"main": ErrNoWorker},
			wantContent: "from fb1", wantCalls: []string{"main", "fb1"}, wantFallbacks: []string{"fb1"}, wantAttempts: 2},
		{name: "circuit open twice: second fallback", errs: map[string]error{"main": unavailable, "fb1": unavailable},
			wantContent: "from fb2", wantCalls: []string{"main", "fb1", "fb2"}, wantFallbacks: []string{"fb1", "fb2"}, wantAttempts: 3},
		{name: "invalid request: no fallback", errs: map[string]error{"main": invalid},
			wantErr: invalid, wantCalls: []string{"main"}, wantAttempts: 1},
		{name: "all fail: the primary's error", errs: map[string]error{"main": ErrWorkerLost, "fb1": ErrNoWorker, "fb2": ErrNoWorker},
			wantErr: ErrWorkerLost, wantCalls: []string{"main", "fb1", "fb2"}, wantFallbacks: []string{"fb1", "fb2"}, wantAttempts: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil, nil, nil, Options{})
			d := &byComponent{errs: tt.errs}
			f.svc.dispatcher = d
			f.svc.components = components{
				"main": {Name: "main", Type: "conversation.openai", CacheTTL: time.Minute, Fallbacks: []string{"fb1", "fb2"}},
				"fb1":  {Name: "fb1", Type: "conversation.anthropic"},
				"fb2":  {Name: "fb2", Type: "conversation.ollama"},
			}
			res, err := f.svc.Converse(t.Context(), request("main", "hi", false, false))
			f.svc.bg.Wait()
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
				require.Equal(t, tt.wantContent, res.Response.GetChoices()[0].GetContent())
			}
			require.Equal(t, tt.wantCalls, d.calls)
			ev := f.audit.events[0]
			require.Equal(t, "main", ev.GetComponent())
			require.Equal(t, tt.wantFallbacks, ev.GetFallbacks())
			require.Equal(t, tt.wantAttempts, ev.GetAttempts())
			if tt.wantErr == nil && len(tt.wantFallbacks) > 0 {
				// A fallback's answer is not cached as the primary's.
				again, err := f.svc.Converse(t.Context(), request("main", "hi", false, false))
				require.NoError(t, err)
				require.False(t, again.CacheHit)
			}
		})
	}
}
