package bus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/bus"
)

// TestRetryAPI drives RetryAPI with calls that answer as JetStream can: not at all (the
// attempt's deadline), no responders, a cluster still forming, or a final answer.
func TestRetryAPI(t *testing.T) {
	t.Parallel()
	unanswered := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	answer := func(err error) func(context.Context) error {
		return func(context.Context) error { return err }
	}
	notAvail := &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
	noPeers := &jetstream.APIError{Code: 500, ErrorCode: 10005, Description: "no suitable peers for placement"}
	tests := []struct {
		name string
		// first answers the first attempts; every later attempt succeeds.
		first   []func(context.Context) error
		calls   int
		wantErr error
	}{
		{name: "answered", calls: 1},
		{name: "unanswered once", first: []func(context.Context) error{unanswered}, calls: 2},
		{name: "no responders", first: []func(context.Context) error{answer(nats.ErrNoResponders)}, calls: 2},
		{name: "request timeout", first: []func(context.Context) error{answer(nats.ErrTimeout)}, calls: 2},
		{name: "cluster not available, wrapped", first: []func(context.Context) error{answer(fmt.Errorf("look up: %w", notAvail))}, calls: 2},
		{name: "no peers yet, then unanswered", first: []func(context.Context) error{answer(noPeers), unanswered}, calls: 3},
		{name: "stream not found is an answer", first: []func(context.Context) error{answer(jetstream.ErrStreamNotFound)}, calls: 1, wantErr: jetstream.ErrStreamNotFound},
		{name: "bad request is an answer", first: []func(context.Context) error{answer(&jetstream.APIError{Code: 400, ErrorCode: 10003})}, calls: 1, wantErr: &jetstream.APIError{ErrorCode: 10003}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			v, err := bus.RetryAPI(t.Context(), 50*time.Millisecond, func(ctx context.Context) (int, error) {
				calls++
				if calls <= len(tt.first) {
					return 0, tt.first[calls-1](ctx)
				}
				return 7, nil
			})
			require.Equal(t, tt.calls, calls)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, 7, v)
		})
	}
}

// TestRetryAPIStopsWithItsContext: a request that is never answered is made again until
// the caller's context ends, then its error is returned.
func TestRetryAPIStopsWithItsContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	_, err := bus.RetryAPI(ctx, 20*time.Millisecond, func(ctx context.Context) (struct{}, error) {
		calls++
		if calls == 3 {
			cancel()
		}
		<-ctx.Done()
		return struct{}{}, ctx.Err()
	})
	require.True(t, errors.Is(err, context.Canceled), "%v", err)
	require.Equal(t, 3, calls)
}
