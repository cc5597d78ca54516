package openaiapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// Error types, as OpenAI names them in error.type.
const (
	typeInvalidRequest = "invalid_request_error"
	typeRateLimit      = "rate_limit_error"
	typeServer         = "server_error"
)

// Error is an answer in OpenAI's error shape, {"error":{"message","type","param","code"}},
// with its HTTP status. Param and Code are null when empty.
type Error struct {
	Status  int
	Message string
	Type    string
	Param   string
	Code    string
	// RetryAfter, when positive, is sent as the Retry-After header (whole seconds).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// invalidParam is a 400 naming the offending request field.
func invalidParam(param, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param, Message: fmt.Sprintf(format, args...)}
}

// modelNotFound is OpenAI's 404 for a model that does not exist.
func modelNotFound(model string) *Error {
	return &Error{Status: http.StatusNotFound, Type: typeInvalidRequest, Param: "model", Code: "model_not_found",
		Message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", model)}
}

// Unauthorized is the 401 for a missing or wrong API key, in OpenAI's words.
func Unauthorized(missing bool) *Error {
	if missing {
		return &Error{Status: http.StatusUnauthorized, Type: typeInvalidRequest,
			Message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."}
	}
	return &Error{Status: http.StatusUnauthorized, Type: typeInvalidRequest, Code: "invalid_api_key",
		Message: "Incorrect API key provided."}
}

// errorBody is the JSON of an Error.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// WriteError writes e as the answer.
func WriteError(w http.ResponseWriter, e *Error) {
	b, err := json.Marshal(errorBody{Error: errorObject{Message: e.Message, Type: e.Type, Param: nullable(e.Param), Code: nullable(e.Code)}})
	if err != nil {
		b = []byte(`{"error":{"message":"failed encoding the error","type":"server_error","param":null,"code":null}}`)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(e.RetryAfter.Seconds())), 10))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
}

// statusClientClosed is the status logged and audited for a caller that went away (nginx's
// 499); the caller reads nothing.
const statusClientClosed = 499

// fromDomain maps a conversation error to OpenAI's shape by its kind:
//
//   - an invalid request (a limit broken; the provider refused the request as sent): 400;
//   - an unknown component, or a model the provider does not know: 404 model_not_found;
//   - the provider unavailable with a Retry-After hint (rate limited or overloaded): 429
//     with Retry-After; without a hint (circuit open, overloaded): 503;
//   - no worker serves the component: 503; the worker lost: 502;
//   - the provider failed otherwise (bad key, unexpected answer): 502;
//   - the deadline passed: 504; the caller went away: 499.
//
// It returns nil for errors of Parley's own parts (scrubber, audit stream, anything
// unexpected), which never reach the caller as they are.
func fromDomain(model string, err error) *Error {
	switch conversation.KindOf(err) {
	case conversation.KindComponentNotFound:
		return modelNotFound(model)
	case conversation.KindInvalidRequest:
		var ire *conversation.InvalidRequestError
		errors.As(err, &ire)
		return &Error{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: ire.Detail}
	case conversation.KindCanceled:
		return &Error{Status: statusClientClosed, Type: typeInvalidRequest, Code: "canceled", Message: "The request was cancelled by the client."}
	case conversation.KindDeadlineExceeded:
		return &Error{Status: http.StatusGatewayTimeout, Type: typeServer, Code: "timeout",
			Message: fmt.Sprintf("The model `%s` did not answer in time.", model)}
	case conversation.KindNoWorker:
		return &Error{Status: http.StatusServiceUnavailable, Type: typeServer, Code: "service_unavailable",
			Message: fmt.Sprintf("The model `%s` has no worker serving it right now.", model)}
	case conversation.KindWorkerLost:
		return &Error{Status: http.StatusBadGateway, Type: typeServer, Code: "upstream_error",
			Message: fmt.Sprintf("The model `%s`: %v.", model, err)}
	case conversation.KindProvider:
		var pe *conversation.ProviderError
		errors.As(err, &pe)
		return fromProvider(model, pe)
	default:
		return nil
	}
}

func fromProvider(model string, pe *conversation.ProviderError) *Error {
	msg := fmt.Sprintf("The model `%s`: %s", model, pe.Message)
	switch pe.Code {
	case providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
		return &Error{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: msg}
	case providerv1.ErrorCode_ERROR_CODE_NOT_FOUND:
		return &Error{Status: http.StatusNotFound, Type: typeInvalidRequest, Param: "model", Code: "model_not_found", Message: msg}
	case providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE:
		if pe.RetryAfter > 0 {
			return &Error{Status: http.StatusTooManyRequests, Type: typeRateLimit, Code: "rate_limit_exceeded", Message: msg, RetryAfter: pe.RetryAfter}
		}
		return &Error{Status: http.StatusServiceUnavailable, Type: typeServer, Code: "service_unavailable", Message: msg}
	case providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED:
		return &Error{Status: http.StatusGatewayTimeout, Type: typeServer, Code: "timeout", Message: msg}
	default:
		return &Error{Status: http.StatusBadGateway, Type: typeServer, Code: "upstream_error", Message: msg}
	}
}

// toOpenAI is fromDomain for a caller: an internal error becomes a 503 (the scrubber or the
// audit log unavailable) or a 500 with an error id, and the log line with the cause
// carries the same id.
func (h *Handler) toOpenAI(ctx context.Context, model string, err error) *Error {
	if e := fromDomain(model, err); e != nil {
		return e
	}
	id := rpcserver.LogError(ctx, h.logger, "conversation failed", err, "component", model)
	switch conversation.KindOf(err) {
	case conversation.KindScrub:
		return &Error{Status: http.StatusServiceUnavailable, Type: typeServer, Code: "service_unavailable",
			Message: fmt.Sprintf("PII scrubbing is unavailable; the request was not sent (id %s).", id)}
	case conversation.KindAudit:
		return &Error{Status: http.StatusServiceUnavailable, Type: typeServer, Code: "service_unavailable",
			Message: fmt.Sprintf("The audit log is unavailable; the answer was withheld (id %s).", id)}
	default:
		return &Error{Status: http.StatusInternalServerError, Type: typeServer,
			Message: fmt.Sprintf("The server had an error while processing your request (id %s).", id)}
	}
}

// auditCode is what the audit log records for err: the HTTP status the caller gets and the
// error code, e.g. "429 rate_limit_exceeded".
func auditCode(err error) string {
	e := fromDomain("", err)
	switch {
	case e != nil && e.Code != "":
		return strconv.Itoa(e.Status) + " " + e.Code
	case e != nil:
		return strconv.Itoa(e.Status) + " " + e.Type
	case conversation.KindOf(err) == conversation.KindScrub, conversation.KindOf(err) == conversation.KindAudit:
		return "503 service_unavailable"
	default:
		return "500 server_error"
	}
}
