package resiliency_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/resiliency"
)

type retryable bool

func (r retryable) Error() string   { return fmt.Sprintf("retryable=%v", bool(r)) }
func (r retryable) Retryable() bool { return bool(r) }

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	tests := []struct {
		name          string
		give          error
		wantRetryable bool
		wantWait      time.Duration
		wantHint      bool
	}{
		{"nil", nil, false, 0, false},
		{"plain", base, true, 0, false},
		{"permanent", resiliency.Permanent(base), false, 0, false},
		{"wrapped permanent", fmt.Errorf("call: %w", resiliency.Permanent(base)), false, 0, false},
		{"open breaker", resiliency.ErrOpenState, false, 0, false},
		{"half-open overflow", fmt.Errorf("x: %w", resiliency.ErrTooManyRequests), false, 0, false},
		{"Retryable() false", fmt.Errorf("x: %w", retryable(false)), false, 0, false},
		{"Retryable() true", retryable(true), true, 0, false},
		{"retry after", resiliency.RetryAfterHint(base, 3*time.Second), true, 3 * time.Second, true},
		{"negative retry after", fmt.Errorf("x: %w", resiliency.RetryAfterHint(base, -time.Second)), true, 0, true},
		{"permanent with a hint", resiliency.Permanent(resiliency.RetryAfterHint(base, time.Second)), false, time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.wantRetryable, resiliency.IsRetryable(tt.give))
			wait, ok := resiliency.RetryAfter(tt.give)
			require.Equal(t, tt.wantHint, ok)
			require.Equal(t, tt.wantWait, wait)
		})
	}
	require.NoError(t, resiliency.Permanent(nil))
	require.NoError(t, resiliency.RetryAfterHint(nil, time.Second))
	require.Equal(t, "boom", resiliency.Permanent(base).Error())
	require.Equal(t, "boom", resiliency.RetryAfterHint(base, time.Second).Error())
	require.ErrorIs(t, resiliency.Permanent(base), base)
}
