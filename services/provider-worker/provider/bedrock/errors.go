package bedrock

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// callError classifies a failed Converse call:
//
//   - ThrottlingException, ServiceUnavailableException, InternalServerException,
//     ModelNotReadyException, ModelTimeoutException and ServiceQuotaExceededException
//     (which the API documents as "resubmit later"), and any 408, 425, 429 or 5xx:
//     UNAVAILABLE, with the Retry-After hint when the answer carries one;
//   - ValidationException: INVALID_ARGUMENT;
//   - AccessDeniedException, ResourceNotFoundException (model not enabled or unknown),
//     ModelErrorException and the signature and token errors of AWS's authentication:
//     INTERNAL (an operator must act; not retried);
//   - other HTTP answers: provider.CodeForStatus;
//   - a request the SDK validated and refused before sending it: INVALID_ARGUMENT;
//   - a request that never got an answer (connection refused, reset, DNS), or whose answer
//     broke off while being read: UNAVAILABLE;
//   - anything else, such as credentials that cannot be resolved: INTERNAL.
//
// The message holds the exception name and HTTP status only: AWS's free-text message is
// dropped, as provider.HTTPError drops the other providers', because model validation
// errors may quote the request.
func (p *Provider) callError(err error) error {
	var params smithy.InvalidParamsError
	if errors.As(err, &params) {
		return provider.InvalidArgument(fmt.Errorf("bedrock: invalid request: %w", err))
	}
	var send *smithyhttp.RequestSendError
	if errors.As(err, &send) {
		return provider.Unavailable(fmt.Errorf("bedrock: send request: %w", p.redact(send.Err)), 0)
	}
	var apiErr smithy.APIError
	var respErr *smithyhttp.ResponseError
	hasAPI := errors.As(err, &apiErr)
	if !errors.As(err, &respErr) || respErr.Response == nil || respErr.HTTPStatusCode() == 0 {
		if hasAPI {
			return &provider.Error{Code: codeFor(apiErr.ErrorCode(), 0), Err: p.apiError(apiErr, 0)}
		}
		return provider.Internal(fmt.Errorf("bedrock: converse: %w", p.redact(err)))
	}
	status := respErr.HTTPStatusCode()
	var netErr net.Error
	if !hasAPI && (errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF)) {
		// The answer broke off while being read: another try may get a whole one.
		return provider.Unavailable(fmt.Errorf("bedrock: HTTP %d: read response: connection lost", status), 0)
	}
	excName := ""
	if hasAPI {
		excName = apiErr.ErrorCode()
	}
	e := &provider.Error{Code: codeFor(excName, status)}
	if hasAPI {
		e.Err = p.apiError(apiErr, status)
	} else {
		e.Err = fmt.Errorf("bedrock: HTTP %d", status)
	}
	if e.Code == providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		if d, ok := provider.ParseRetryAfter(respErr.Response.Header, p.now()); ok {
			e.RetryAfter = d
		}
	}
	return e
}

// codeFor maps an exception name, then an HTTP status, to the code the router sees.
func codeFor(exception string, status int) providerv1.ErrorCode {
	switch exception {
	case "ThrottlingException", "ServiceUnavailableException", "InternalServerException",
		"ModelNotReadyException", "ModelTimeoutException", "ServiceQuotaExceededException":
		return providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE
	case "ValidationException":
		return providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
	case "AccessDeniedException", "ResourceNotFoundException", "ModelErrorException",
		"UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignature",
		"MissingAuthenticationToken", "ExpiredTokenException", "InvalidClientTokenId":
		return providerv1.ErrorCode_ERROR_CODE_INTERNAL
	}
	if status == 0 {
		return providerv1.ErrorCode_ERROR_CODE_INTERNAL
	}
	return provider.CodeForStatus(status)
}

// apiError renders an AWS exception: its name and the HTTP status.
func (p *Provider) apiError(apiErr smithy.APIError, status int) error {
	var b strings.Builder
	b.WriteString("bedrock: ")
	if status > 0 {
		fmt.Fprintf(&b, "HTTP %d", status)
		if text := http.StatusText(status); text != "" {
			b.WriteString(" " + text)
		}
		b.WriteString(": ")
	}
	b.WriteString(sanitizeName(apiErr.ErrorCode()))
	return errors.New(b.String())
}

// sanitizeName keeps the characters of an exception name; a name from a misbehaving server
// cannot smuggle text through.
func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 64 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == ':' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "UnknownError"
	}
	return b.String()
}

// redact returns err, or an error with the same text minus the component's static
// credentials when they appear in it.
func (p *Provider) redact(err error) error {
	text := err.Error()
	if red := p.redactText(text); red != text {
		return errors.New(red)
	}
	return err
}

func (p *Provider) redactText(s string) string {
	for _, secret := range p.secrets {
		s = strings.ReplaceAll(s, secret, "[REDACTED]")
	}
	return s
}
