// Package daprapi serves Dapr's Conversation API, alpha1 and alpha2, over HTTP and gRPC
// with Dapr's exact JSON, field names, status codes, error codes and messages.
package daprapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"

	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// Error is a Dapr API error: the same condition has an HTTP status and errorCode on the
// HTTP API and a gRPC code on the gRPC API, with one message.
type Error struct {
	HTTPStatus int
	GRPCCode   connect.Code
	ErrorCode  string
	Message    string
}

func (e *Error) Error() string { return e.Message }

// connectError is the gRPC form: status code and message, no details, as Dapr sends.
func (e *Error) connectError() *connect.Error {
	return connect.NewError(e.GRPCCode, errors.New(e.Message))
}

func errNotFound(name string) *Error {
	return &Error{http.StatusBadRequest, connect.CodeInvalidArgument, "ERR_CONVERSATION_NOT_FOUND",
		"failed finding conversation component " + name}
}

func errMissingInputs(name string) *Error {
	return &Error{http.StatusBadRequest, connect.CodeInvalidArgument, "ERR_CONVERSATION_MISSING_INPUTS",
		fmt.Sprintf("failed conversing with component %s: missing inputs in request", name)}
}

// errInvalidParams uses the message format of Dapr master, without the
// "%!(EXTRA ...)" artefact of Dapr 1.15-1.18.
func errInvalidParams(name, detail string) *Error {
	return &Error{http.StatusBadRequest, connect.CodeInvalidArgument, "ERR_CONVERSATION_INVALID_PARMS",
		fmt.Sprintf("failed conversing with component %s: invalid params: %s", name, detail)}
}

func errInvoke(name string, err error) *Error {
	return &Error{http.StatusInternalServerError, connect.CodeInternal, "ERR_CONVERSATION_INVOKE",
		fmt.Sprintf("failed conversing with component %s: %v", name, err)}
}

func errMalformed(err error) *Error {
	return &Error{http.StatusBadRequest, connect.CodeInvalidArgument, "ERR_MALFORMED_REQUEST",
		"failed deserializing HTTP body: " + err.Error()}
}

func errBodyRead(err error) *Error {
	return &Error{http.StatusBadRequest, connect.CodeInvalidArgument, "ERR_BODY_READ",
		"failed to read request body: " + err.Error()}
}

// fromDomain maps a conversation error to Dapr's by its kind: an unknown component is
// NOT_FOUND, a request breaking a limit INVALID_PARMS, anything else that happened while
// conversing INVOKE (with status 499 when the caller went away). INVOKE carries the
// provider's own message, as Dapr does. It returns nil for errors of Parley's own parts
// (scrubber, audit stream, anything unexpected), which never reach the caller as they are.
func fromDomain(name string, err error) *Error {
	switch conversation.KindOf(err) {
	case conversation.KindComponentNotFound:
		return errNotFound(name)
	case conversation.KindInvalidRequest:
		var ire *conversation.InvalidRequestError
		errors.As(err, &ire)
		return errInvalidParams(name, ire.Detail)
	case conversation.KindCanceled:
		return &Error{499, connect.CodeCanceled, "ERR_CONVERSATION_INVOKE",
			fmt.Sprintf("failed conversing with component %s: %v", name, context.Canceled)}
	case conversation.KindDeadlineExceeded:
		return errInvoke(name, context.DeadlineExceeded)
	case conversation.KindNoWorker, conversation.KindWorkerLost:
		return errInvoke(name, err)
	case conversation.KindProvider:
		var pe *conversation.ProviderError
		errors.As(err, &pe)
		return errInvoke(name, pe)
	default:
		return nil
	}
}

// toDapr is fromDomain for a caller: an internal error becomes INVOKE with an error id,
// and the log line with the cause carries the same id.
func (h *Handler) toDapr(ctx context.Context, name string, err error) *Error {
	if derr := fromDomain(name, err); derr != nil {
		return derr
	}
	id := rpcserver.LogError(ctx, h.logger, "conversation failed", err, "component", name)
	return errInvoke(name, fmt.Errorf("internal error (id %s)", id))
}

// auditCode is the errorCode a Dapr caller gets for err; the audit log records it.
func auditCode(err error) string {
	if derr := fromDomain("", err); derr != nil {
		return derr.ErrorCode
	}
	return "ERR_CONVERSATION_INVOKE"
}
