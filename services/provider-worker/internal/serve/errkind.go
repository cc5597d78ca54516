package serve

import (
	"context"
	"errors"
	"net/http"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// Kinds of provider errors: the label values of parley_worker_provider_errors_total.
const (
	kindRateLimited   = "rate_limited"   // HTTP 429
	kindQuota         = "quota"          // HTTP 429 saying the account is out of credit
	kindAuth          = "auth"           // HTTP 401, 403: the component's key
	kindBilling       = "billing"        // HTTP 402
	kindNotFound      = "not_found"      // HTTP 404, or NOT_FOUND: unknown model or path
	kindBadRequest    = "bad_request"    // other HTTP 4xx, or INVALID_ARGUMENT
	kindServerError   = "server_error"   // HTTP 5xx
	kindTimeout       = "timeout"        // the attempt's timeout, HTTP 408, or DEADLINE_EXCEEDED
	kindUnavailable   = "unavailable"    // UNAVAILABLE without an HTTP answer: network, SDK
	kindEmptyResponse = "empty_response" // neither an answer nor an error
	kindInternal      = "internal"       // INTERNAL without an HTTP answer
	kindOther         = "other"
)

var errorKinds = []string{
	kindRateLimited, kindQuota, kindAuth, kindBilling, kindNotFound, kindBadRequest, kindServerError,
	kindTimeout, kindUnavailable, kindEmptyResponse, kindInternal, kindOther,
}

// httpStatuser is implemented by provider errors that come from an HTTP answer.
type httpStatuser interface{ HTTPStatus() int }

// errorKind classifies a failed attempt for parley_worker_provider_errors_total; "" when
// it is not the provider's failure (the caller went away, the worker is stopping).
func errorKind(ctx, actx context.Context, err error) string {
	if ctx.Err() != nil {
		return ""
	}
	if errors.Is(actx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return kindTimeout
	}
	if errors.Is(err, errNoResponse) {
		return kindEmptyResponse
	}
	var code providerv1.ErrorCode
	var c coder
	if errors.As(err, &c) {
		code = c.ErrorCode()
	}
	var h httpStatuser
	if errors.As(err, &h) && h.HTTPStatus() != 0 {
		status := h.HTTPStatus()
		switch {
		case status == http.StatusTooManyRequests && code == providerv1.ErrorCode_ERROR_CODE_INTERNAL:
			return kindQuota
		case status == http.StatusTooManyRequests:
			return kindRateLimited
		case status == http.StatusUnauthorized, status == http.StatusForbidden:
			return kindAuth
		case status == http.StatusPaymentRequired:
			return kindBilling
		case status == http.StatusNotFound:
			return kindNotFound
		case status == http.StatusRequestTimeout:
			return kindTimeout
		case status >= 500:
			return kindServerError
		case status >= 400:
			return kindBadRequest
		}
		return kindOther
	}
	switch code {
	case providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
		return kindBadRequest
	case providerv1.ErrorCode_ERROR_CODE_NOT_FOUND:
		return kindNotFound
	case providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE:
		return kindUnavailable
	case providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED:
		return kindTimeout
	case providerv1.ErrorCode_ERROR_CODE_INTERNAL:
		return kindInternal
	}
	return kindOther
}
