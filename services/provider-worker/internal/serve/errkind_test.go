package serve

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// httpFailure is a provider error from an HTTP answer, as provider.Error.
type httpFailure struct {
	code   providerv1.ErrorCode
	status int
}

func (e httpFailure) Error() string                   { return fmt.Sprintf("HTTP %d", e.status) }
func (e httpFailure) ErrorCode() providerv1.ErrorCode { return e.code }
func (e httpFailure) HTTPStatus() int                 { return e.status }

func TestErrorKind(t *testing.T) {
	t.Parallel()
	const (
		unavailable = providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE
		internal    = providerv1.ErrorCode_ERROR_CODE_INTERNAL
		invalid     = providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
	)
	expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	gone, stop := context.WithCancel(t.Context())
	stop()
	tests := []struct {
		name      string
		ctx, actx context.Context
		err       error
		want      string
	}{
		{name: "429", err: httpFailure{unavailable, 429}, want: kindRateLimited},
		{name: "429 out of credit", err: httpFailure{internal, 429}, want: kindQuota},
		{name: "401", err: fmt.Errorf("wrapped: %w", httpFailure{internal, 401}), want: kindAuth},
		{name: "403", err: httpFailure{internal, 403}, want: kindAuth},
		{name: "402", err: httpFailure{internal, 402}, want: kindBilling},
		{name: "404", err: httpFailure{providerv1.ErrorCode_ERROR_CODE_NOT_FOUND, 404}, want: kindNotFound},
		{name: "422", err: httpFailure{invalid, 422}, want: kindBadRequest},
		{name: "408", err: httpFailure{unavailable, 408}, want: kindTimeout},
		{name: "529", err: httpFailure{unavailable, 529}, want: kindServerError},
		{name: "1xx", err: httpFailure{internal, 101}, want: kindOther},
		{name: "transport", err: &codeOnly{unavailable}, want: kindUnavailable},
		{name: "sdk invalid", err: &codeOnly{invalid}, want: kindBadRequest},
		{name: "internal", err: &codeOnly{internal}, want: kindInternal},
		{name: "no response", err: final{errNoResponse}, want: kindEmptyResponse},
		{name: "attempt timeout", actx: expired, err: errors.New("slow"), want: kindTimeout},
		{name: "uncoded", err: errors.New("odd"), want: kindOther},
		{name: "caller gone", ctx: gone, err: httpFailure{unavailable, 503}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, actx := tt.ctx, tt.actx
			if ctx == nil {
				ctx = t.Context()
			}
			if actx == nil {
				actx = ctx
			}
			got := errorKind(ctx, actx, tt.err)
			require.Equal(t, tt.want, got)
			if got != "" {
				require.Contains(t, errorKinds, got)
			}
		})
	}
}

type codeOnly struct{ code providerv1.ErrorCode }

func (e *codeOnly) Error() string                   { return e.code.String() }
func (e *codeOnly) ErrorCode() providerv1.ErrorCode { return e.code }
