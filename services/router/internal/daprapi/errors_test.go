package daprapi

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

func TestFromDomain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want Error
	}{
		{conversation.ErrComponentNotFound, Error{400, connect.CodeInvalidArgument, "ERR_CONVERSATION_NOT_FOUND",
			"failed finding conversation component chat"}},
		{conversation.ErrNoWorker, Error{500, connect.CodeInternal, "ERR_CONVERSATION_INVOKE",
			"failed conversing with component chat: no worker serves the component"}},
		{&conversation.ProviderError{Code: providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Message: "too long"},
			Error{500, connect.CodeInternal, "ERR_CONVERSATION_INVOKE", "failed conversing with component chat: too long"}},
		{fmt.Errorf("scrub: %w", context.Canceled), Error{499, connect.CodeCanceled, "ERR_CONVERSATION_INVOKE",
			"failed conversing with component chat: context canceled"}},
		{&conversation.InvalidRequestError{Detail: "too many texts"}, Error{400, connect.CodeInvalidArgument,
			"ERR_CONVERSATION_INVALID_PARMS", "failed conversing with component chat: invalid params: too many texts"}},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, *fromDomain("chat", tt.err), "%v", tt.err)
		require.Equal(t, tt.want.ErrorCode, auditCode(tt.err), "%v", tt.err)
	}
	// Parley's own failures are not the caller's business: toDapr gives them an id.
	for _, err := range []error{errors.New("boom"), &conversation.ScrubError{Err: errors.New("down")}} {
		require.Nil(t, fromDomain("chat", err), "%v", err)
		require.Equal(t, "ERR_CONVERSATION_INVOKE", auditCode(err), "%v", err)
	}
}
